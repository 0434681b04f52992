"""Connectivity statistics (paper 4.2): the targeted optimisation attack from a digit of another
class toward class c, then the CE of c at the points of the path A -> K', for every pair.

lst_jax: `optimization_attack` on all pairs in one batched call (early-stopped rows frozen,
running rows compacted), then `path_losses` on all pairs in one call. PyTorch: the authors'
loop, one pair at a time (`torch_procedures.torch_connectivity`). They must agree before a
speed is reported: per pair the same number of attack steps (up to one step, where a
pre-step CE is within float noise of L(A)) and the same barrier max (median relative
difference < 1e-3). Path-loss efficiency: `path_losses` against plain jitted forward passes of
the same points materialised on the device beforehand.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np

from lst_jax.bench.timing import median, timed
from lst_jax.connectivity import (
    AttackConfig,
    barrier_stats,
    model_in_space,
    optimization_attack,
    path_losses,
)
from lst_jax.connectivity.detect import class_losses
from lst_jax.jobs.connectivity.job import plan_barrier_pairs


def pairs_of(case, n: int):
    """The first `n` real-adversarial pairs of `lst-jax connectivity barrier` (seed 0) on the
    digits test set, in the model's input space."""
    from lst_jax.data.digits import load_digits32

    fn, space = model_in_space(case.model_fn)
    x, y = load_digits32("test")
    plan = plan_barrier_pairs(y, list(range(10)), 7, 0)
    a, k, c = plan["adv_a"][:n], plan["adv_source"][:n], plan["adv_class"][:n]
    xs = np.asarray(space.from_pixels(x))
    return fn, xs[a], xs[k], c.astype(np.int32)


def jax_workload(fn, params, a, k, c, points, chunk, attack: AttackConfig):
    stop = class_losses(fn, params, a, c)
    t0 = time.perf_counter()
    res = optimization_attack(fn, params, k, c, stop_loss=stop, config=attack)
    t1 = time.perf_counter()
    losses = path_losses(fn, params, a, res.x, c, num_points=points, batch_size=chunk)
    t2 = time.perf_counter()
    return {"steps": np.asarray(res.steps), "max": np.asarray(barrier_stats(losses).max),
            "attack_s": t1 - t0, "path_s": t2 - t1, "adv": res.x}


def path_limit(fn, params, a, b, c, points, chunk):
    """A jitted function of plain forward passes over the same path points, prebuilt on the
    device, in chunks of `chunk`; returns (run, number of points)."""
    n = len(a) * points
    t = np.arange(points) / (points - 1)
    pts = ((1 - t)[None, :, None, None, None] * a[:, None]
           + t[None, :, None, None, None] * np.asarray(b)[:, None]).astype(np.float32)
    pts = pts.reshape((n,) + a.shape[1:])
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

    return (lambda: jax.block_until_ready(forward(params, dev, lab))), n


def run(w, case, ctx) -> dict:
    p = w.params
    npairs, points, chunk, reps = p["pairs"], p["points"], p.get("chunk", 64), p["reps"]
    attack = AttackConfig(steps=p.get("steps", 512))
    fn, a, k, c = pairs_of(case, npairs)
    params = case.params
    res = {"pairs": len(a), "points": points, "attack_steps_max": attack.steps,
           "weights": case.weights, "compile_s": {}}
    t_first, warm = timed(lambda: jax_workload(fn, params, a, k, c, points, chunk, attack))
    t_second, jr = timed(lambda: jax_workload(fn, params, a, k, c, points, chunk, attack))
    res["compile_s"]["jax_attack_and_paths (first call - second call)"] = max(
        0.0, t_first - t_second)
    res["attack_steps"] = {"median": float(np.median(jr["steps"])),
                           "max": int(jr["steps"].max()), "sum": int(jr["steps"].sum())}
    ctx.log(f"    JAX first call {t_first:.1f} s, second {t_second:.2f} s; attack steps median "
            f"{res['attack_steps']['median']:.0f}, max {res['attack_steps']['max']}")
    jax_runs = [jr]
    if ctx.torch_device is None:
        res["torch_skipped"] = "torch is not installed"
    else:
        from lst_jax.bench.torch_procedures import torch_connectivity

        net = case.make_torch(ctx.torch_device)
        tr = torch_connectivity(net, a, k, c, points, steps=attack.steps,
                                min_step=attack.min_step, lr=attack.lr,
                                mse_weight=attack.mse_weight, tv_weight=attack.tv_weight,
                                device=ctx.torch_device)
        dsteps = np.abs(tr["steps"] - jr["steps"])
        rel = np.abs(tr["max"] - jr["max"]) / np.maximum(np.abs(tr["max"]), 1e-6)
        agree = {"steps_equal": float(np.mean(dsteps == 0)), "steps_max_diff": int(dsteps.max()),
                 "barrier_max_rel_diff_median": float(np.median(rel)),
                 "barrier_max_rel_diff_max": float(rel.max()),
                 "ok": bool(dsteps.max() <= 1 and np.median(rel) < 1e-3)}
        res["agreement"] = agree
        res["torch"] = {"total_s": tr["attack_s"] + tr["path_s"], "attack_s": tr["attack_s"],
                        "path_s": tr["path_s"]}
        ctx.log(f"    PyTorch loop {res['torch']['total_s']:.1f} s; steps equal "
                f"{100 * agree['steps_equal']:.0f}%, barrier max rel. diff median "
                f"{agree['barrier_max_rel_diff_median']:.1e} "
                f"({'ok' if agree['ok'] else 'DISAGREE'})")
        if not agree["ok"]:
            res["speed_reported"] = False
            return res
    limit, n_points = path_limit(fn, params, a, warm["adv"], c, points, chunk)
    limit()
    extra = ctx.budget.reps(max(reps - 1, 0), t_second)
    jax_runs += [jax_workload(fn, params, a, k, c, points, chunk, attack) for _ in range(extra)]
    t_limit = median([timed(limit)[0] for _ in range(max(1, extra + 1))])
    total = median([r["attack_s"] + r["path_s"] for r in jax_runs])
    path_s = median([r["path_s"] for r in jax_runs])
    res.update({"reps": len(jax_runs), "speed_reported": True,
                "jax": {"total_s": total, "attack_s": median([r["attack_s"] for r in jax_runs]),
                        "path_s": path_s},
                "path_points_per_s": n_points / path_s,
                "forward_points_per_s": n_points / t_limit,
                "path_efficiency": t_limit / path_s})
    if "torch" in res:
        res["torch_over_jax"] = res["torch"]["total_s"] / total
        res["attack_torch_over_jax"] = res["torch"]["attack_s"] / res["jax"]["attack_s"]
        res["path_torch_over_jax"] = res["torch"]["path_s"] / path_s
    return res
