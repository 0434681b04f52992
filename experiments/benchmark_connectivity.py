"""Connectivity throughput: the barrier-statistics workload with lst_jax against a PyTorch loop
that follows the authors' code, and path-loss throughput against plain forward passes.

Workload (paper 4.2, Fig. 6; per pair): the paper's targeted optimisation attack from a
digit of another class toward class c (Adam 5e-3, 0.1 MSE + 1e-8 TV, at most 512 steps,
early stop after step 32 once the pre-step CE is below the real endpoint's L(A)), then the
CE of c at the 250 points of the path A -> K'. The pairs are the first `--pairs` real-
adversarial pairs of `lst-jax connectivity barrier` on the digits test set (seed 0).

- lst_jax: `optimization_attack` on all pairs in one batched call (early-stopped rows frozen,
  the running rows compacted into smaller batches), then `path_losses` on all pairs in one
  call (chunks of `--chunk` points);
- PyTorch (the authors' `create_adversarial` + `linear_interpolation` + `compute_losses`):
  one pair at a time, `torch.optim.Adam` on a (1, 3, 32, 32) tensor, then the 250 path
  points in batches of 64 under `no_grad`, with the twin network of
  `experiments/torch_twins.py` and the same weights; `--torch-threads` (default 1: batch-1
  steps on 2 busy cores run fastest on one thread).

The two must agree before a speed is reported: per pair the same number of attack steps
(up to one step where a pre-step CE is within float noise of L(A)) and the same barrier max
(relative 1e-3).

Path-loss throughput: `path_losses` (points built inside each jitted chunk) against the limit
of plain forward passes of the same points (materialised on the device beforehand, one
jitted forward + log-softmax per chunk of the same size), in points per second.

    python experiments/benchmark_connectivity.py                 # 64 pairs, digits ResNet
    python experiments/benchmark_connectivity.py --pairs 16 --reps 1
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from lst_jax.connectivity import (AttackConfig, barrier_stats, model_in_space,  # noqa: E402
                                  optimization_attack, path_losses)
from lst_jax.connectivity.detect import class_losses  # noqa: E402
from lst_jax.connectivity.jobs import plan_barrier_pairs  # noqa: E402
from lst_jax.data.digits import load_digits32  # noqa: E402
from lst_jax.evaluation.rundir import (RunDir, cpu_model_name, markdown_table,  # noqa: E402
                                       package_versions)
from lst_jax.models import load_model  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="digits_resnet-normal")
    p.add_argument("--pairs", type=int, default=64)
    p.add_argument("--points", type=int, default=250)
    p.add_argument("--chunk", type=int, default=64,
                   help="path points per jitted call (the authors' batch of 64)")
    p.add_argument("--reps", type=int, default=3, help="timed JAX repetitions (median)")
    p.add_argument("--torch-threads", type=int, default=1)
    p.add_argument("--no-torch", action="store_true")
    p.add_argument("--out", default="runs/benchmark_connectivity")
    return p.parse_args(argv)


def workload(model: str, n: int):
    loaded = load_model(model)
    fn, space = model_in_space(loaded.model_fn)
    x, y = load_digits32("test")
    plan = plan_barrier_pairs(y, list(range(10)), 7, 0)
    a, k, c = (plan["adv_a"][:n], plan["adv_source"][:n], plan["adv_class"][:n])
    xs = np.asarray(space.from_pixels(x))
    return loaded, fn, xs[a], xs[k], c.astype(np.int32)


def jax_workload(fn, params, a, k, c, points, chunk, min_batch=8):
    stop = class_losses(fn, params, a, c)
    t0 = time.perf_counter()
    res = optimization_attack(fn, params, k, c, stop, AttackConfig(), min_batch=min_batch)
    t1 = time.perf_counter()
    losses = path_losses(fn, params, a, res.x, c, points, chunk_size=chunk)
    t2 = time.perf_counter()
    return {"steps": res.steps, "max": barrier_stats(losses).max, "attack_s": t1 - t0,
            "path_s": t2 - t1, "adv": res.x, "stop": stop}


def torch_workload(net, a, k, c, points, threads):
    """The authors' loop, one pair at a time (NCHW)."""
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(threads)
    nchw = lambda v: torch.from_numpy(np.ascontiguousarray(v.transpose(2, 0, 1)))
    hf = lambda t: ((t[..., :, 1:] - t[..., :, :-1]).abs().sum()
                    + (t[..., 1:, :] - t[..., :-1, :]).abs().sum())
    steps, maxes = [], []
    t_attack = t_path = 0.0
    for i in range(len(a)):
        t0 = time.perf_counter()
        xa = nchw(a[i])[None]
        target = torch.tensor([int(c[i])])
        with torch.no_grad():
            loss1 = F.cross_entropy(net(xa), target).item()
        carrier = nchw(k[i])[None]
        x = carrier.clone().requires_grad_(True)
        opt = torch.optim.Adam([x], lr=0.005)
        n = 0
        for it in range(512):
            opt.zero_grad()
            ce = F.cross_entropy(net(x), target)
            total = ce + 0.1 * torch.mean((x - carrier) ** 2) + 1e-8 * hf(x - carrier)
            total.backward()
            opt.step()
            n += 1
            if it > 32 and ce.item() < loss1:
                break
        t1 = time.perf_counter()
        with torch.no_grad():
            alphas = torch.linspace(0, 1, points)
            pts = torch.stack([(1 - al) * xa[0] + al * x.detach()[0] for al in alphas])
            losses = []
            for s in range(0, points, 64):
                batch = pts[s:s + 64]
                losses.append(F.cross_entropy(net(batch), target.expand(len(batch)),
                                              reduction="none"))
            maxes.append(float(torch.cat(losses).max()))
        t_path += time.perf_counter() - t1
        t_attack += t1 - t0
        steps.append(n)
    return {"steps": np.asarray(steps), "max": np.asarray(maxes), "attack_s": t_attack,
            "path_s": t_path}


def path_throughput(fn, params, a, b, c, points, chunk, reps):
    """Points/s of `path_losses` and of plain jitted forward passes of the same points."""
    n = len(a) * points
    t = np.arange(points) / (points - 1)
    w = np.stack([1 - t, t], 1).astype(np.float32)
    pts = (w[None, :, 0, None, None, None] * a[:, None] + w[None, :, 1, None, None, None]
           * b[:, None]).reshape((n,) + a.shape[1:])
    labels = np.repeat(c, points)
    pad = -n % chunk
    dev = jax.device_put(np.concatenate([pts, pts[:pad]]).reshape((-1, chunk) + a.shape[1:]))
    lab = jax.device_put(np.concatenate([labels, labels[:pad]]).reshape(-1, chunk))

    @jax.jit
    def forward(params, xs, ys):
        def one(args):
            x, y = args
            logp = jax.nn.log_softmax(fn(params, x), -1)
            return -jnp.take_along_axis(logp, y[:, None], -1)[:, 0]

        return jax.lax.map(one, (xs, ys))

    jax.block_until_ready(forward(params, dev, lab))
    path_losses(fn, params, a, b, c, points, chunk_size=chunk)
    tp, tf = [], []
    for _ in range(reps):
        s = time.perf_counter()
        path_losses(fn, params, a, b, c, points, chunk_size=chunk)
        tp.append(time.perf_counter() - s)
        s = time.perf_counter()
        jax.block_until_ready(forward(params, dev, lab))
        tf.append(time.perf_counter() - s)
    return {"points": n, "path_points_per_s": n / np.median(tp),
            "forward_points_per_s": n / np.median(tf),
            "efficiency": float(np.median(tf) / np.median(tp))}


def main(argv=None):
    args = parse_args(argv)
    loaded, fn, a, k, c = workload(args.model, args.pairs)
    params = loaded.params
    log = lambda s: print(s, flush=True)
    log(f"{args.model}: {len(a)} pairs, {args.points}-point paths")
    t = time.perf_counter()
    warm = jax_workload(fn, params, a, k, c, args.points, args.chunk)
    log(f"JAX warm-up (compiles) {time.perf_counter() - t:.1f} s; attack steps: median "
        f"{np.median(warm['steps']):.0f}, max {warm['steps'].max()}, sum {warm['steps'].sum()}")
    runs = [jax_workload(fn, params, a, k, c, args.points, args.chunk) for _ in range(args.reps)]
    jax_total = float(np.median([r["attack_s"] + r["path_s"] for r in runs]))
    jr = runs[0]
    result = {"model": args.model, "pairs": len(a), "points": args.points,
              "attack_steps": {"median": float(np.median(jr["steps"])),
                               "mean": float(np.mean(jr["steps"])),
                               "max": int(jr["steps"].max()), "sum": int(jr["steps"].sum())},
              "jax": {"total_s": jax_total,
                      "attack_s": float(np.median([r["attack_s"] for r in runs])),
                      "path_s": float(np.median([r["path_s"] for r in runs]))}}
    log(f"JAX: {jax_total:.2f} s (attack {result['jax']['attack_s']:.2f} s, paths "
        f"{result['jax']['path_s']:.2f} s)")
    jax_workload(fn, params, a, k, c, args.points, args.chunk, min_batch=None)   # compile
    fixed = [jax_workload(fn, params, a, k, c, args.points, args.chunk, min_batch=None)
             for _ in range(args.reps)]
    result["jax_fixed_batch"] = {"attack_s": float(np.median([r["attack_s"] for r in fixed]))}
    log(f"JAX without compaction: attack {result['jax_fixed_batch']['attack_s']:.2f} s")
    if not args.no_torch:
        try:
            import torch  # noqa: F401
        except ImportError:
            log("torch is not installed: PyTorch columns skipped")
            args.no_torch = True
    if not args.no_torch:
        from torch_twins import digits_twin

        net = digits_twin(loaded.model_fn.module, params)
        tr = torch_workload(net, a, k, c, args.points, args.torch_threads)
        dsteps = np.abs(tr["steps"] - jr["steps"])
        rel = np.abs(tr["max"] - jr["max"]) / np.maximum(np.abs(tr["max"]), 1e-6)
        agree = {"steps_equal": float(np.mean(dsteps == 0)),
                 "steps_max_diff": int(dsteps.max()),
                 "barrier_max_rel_diff_median": float(np.median(rel)),
                 "barrier_max_rel_diff_max": float(rel.max()),
                 "ok": bool(np.mean(dsteps <= 1) == 1.0 and np.median(rel) < 1e-3)}
        result["torch"] = {"total_s": tr["attack_s"] + tr["path_s"], "attack_s": tr["attack_s"],
                           "path_s": tr["path_s"], "threads": args.torch_threads,
                           "agreement": agree}
        if agree["ok"]:
            result["torch_over_jax"] = result["torch"]["total_s"] / jax_total
            result["attack_torch_over_jax"] = tr["attack_s"] / result["jax"]["attack_s"]
            result["path_torch_over_jax"] = tr["path_s"] / result["jax"]["path_s"]
        log(f"PyTorch ({args.torch_threads} thread(s)): {result['torch']['total_s']:.2f} s "
            f"(attack {tr['attack_s']:.2f} s, paths {tr['path_s']:.2f} s); agreement {agree}")
    result["path_throughput"] = path_throughput(fn, params, a, warm["adv"], c, args.points,
                                                args.chunk, args.reps)
    result["machine"] = {"cpu": cpu_model_name(), "cores": os.cpu_count(),
                         "platform": platform.platform(), "versions": package_versions()}
    rows = [["lst_jax (batched, compacted)", f"{result['jax']['total_s']:.2f}",
             f"{result['jax']['attack_s']:.2f}", f"{result['jax']['path_s']:.3f}", "1.00"],
            ["lst_jax, fixed batch (no compaction)", "-",
             f"{result['jax_fixed_batch']['attack_s']:.2f}", "-", "-"]]
    if "torch" in result:
        t = result["torch"]
        rows.append([f"PyTorch loop ({t['threads']} thread)", f"{t['total_s']:.2f}",
                     f"{t['attack_s']:.2f}", f"{t['path_s']:.3f}",
                     f"{result.get('torch_over_jax', float('nan')):.2f}"])
    pt = result["path_throughput"]
    md = (f"{args.model}, {len(a)} pairs, attack <= 512 steps with early stop (steps: median "
          f"{result['attack_steps']['median']:.0f}, max {result['attack_steps']['max']}, "
          f"sum {result['attack_steps']['sum']}), {args.points}-point paths\n\n"
          + markdown_table(["implementation", "total s", "attack s", "paths s",
                            "time / lst_jax time"], rows)
          + f"\npath losses: {pt['path_points_per_s']:.0f} points/s; plain forward passes of "
            f"the same points: {pt['forward_points_per_s']:.0f} points/s; efficiency "
            f"{pt['efficiency']:.2f}\n")
    out = RunDir(args.out)
    out.write_json("benchmark.json", result)
    out.write_text("benchmark.md", md)
    print(md)
    return result


if __name__ == "__main__":
    main()
