"""Hull-grid throughput: lst_jax's sharded evaluator against the limit of one batched forward
pass of the same size, and against a straightforward PyTorch loop (same weights).

The workload is Table 2 of the full evaluation: for S sources and R rounds, every triangle
(source, output r1, output r2) of the R(R-1)/2 round pairs on the reference's 64-point grid,
the source-class confidence at every point (S * 10 * 64 points for R = 5). Test digits stand in
for the LST outputs (the cost does not depend on what the vertices are).

    python experiments/benchmark_hull.py                       # all devices (here: 1 CPU)
    python experiments/benchmark_hull.py --fake-devices 2      # XLA:CPU split into 2 devices

Measured rows (best of --reps timed runs after a warm-up run, points per second):
- `lst_jax ShardedEvaluator`: `multi_hull_confidences(..., evaluate_fn=ShardedEvaluator(
  data_mesh(), per_device_chunk=C))`: probes built on the devices from the vertices, chunks of
  C probes per device, padded to a device multiple, results back on the host;
- `lst_jax evaluate_in_chunks`: the one-device default evaluator (jitted `lax.map` over chunks
  of 64 probes, the reference's per-triangle batch);
- `limit: one forward pass`: one jitted forward pass + softmax over all N probe images,
  materialised on the device beforehand (no probe construction, no chunking, no transfer);
- `PyTorch loop`: the reference's way, `torch.no_grad()`, for each source and each triangle
  build the 64 probes and run the twin model on them (NCHW float32, default thread count).

The PyTorch twin of the digits ResNet is written here from `lst_jax/models/digits.py`
(`experiments/torch_twins.py` from the `perf` branch has the same model; this file does not
depend on it). Its logits are checked against lst_jax before timing.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="digits_resnet-normal")
    p.add_argument("--sources", type=int, default=8, help="S sources")
    p.add_argument("--rounds", type=int, default=5, help="R rounds (R(R-1)/2 triangles each)")
    p.add_argument("--per-device-chunk", type=int, default=64,
                   help="probes per device per sharded call")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--fake-devices", type=int, help="split XLA:CPU into N devices")
    p.add_argument("--no-torch", action="store_true", help="skip the PyTorch loop")
    return p.parse_args(argv)


ARGS = parse_args()
if ARGS.fake_devices:   # must happen before jax is imported
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                               f" --xla_force_host_platform_device_count={ARGS.fake_devices}")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from lst_jax.data.digits import load_digits32  # noqa: E402
from lst_jax.geometry import multi_hull_confidences, round_pairs, triangle_grid  # noqa: E402
from lst_jax.geometry.hull import pair_weights  # noqa: E402
from lst_jax.geometry.probes import default_evaluator  # noqa: E402
from lst_jax.models import load_model  # noqa: E402
from lst_jax.parallel import ShardedEvaluator, data_mesh  # noqa: E402


def torch_hull_loop(net, src, outs, labels, grid, pairs):
    """The reference's loop: per source, per triangle, one batch of the grid's probes."""
    import torch

    w = torch.from_numpy(grid.weights)                       # (P, 3)
    src_t = torch.from_numpy(src).permute(0, 3, 1, 2)
    outs_t = torch.from_numpy(outs).permute(0, 1, 4, 2, 3)
    conf = np.zeros((len(src), len(pairs), grid.num_points), np.float32)
    with torch.no_grad():
        for i in range(len(src)):
            for t, (r1, r2) in enumerate(pairs):
                probes = (w[:, 0, None, None, None] * src_t[i] + w[:, 1, None, None, None]
                          * outs_t[r1, i] + w[:, 2, None, None, None] * outs_t[r2, i])
                p = torch.softmax(net(probes), dim=-1)
                conf[i, t] = p[:, int(labels[i])].numpy()
    return conf


def best_time(fn, reps):
    fn()                                                     # warm-up (compilation)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> int:
    args = ARGS
    m = load_model(args.model)
    x, y = load_digits32("test")
    s, r = args.sources, args.rounds
    if len(x) < s * (r + 1):
        raise SystemExit(f"need {s * (r + 1)} test digits, have {len(x)}")
    src, labels = x[:s], y[:s].astype(np.int32)
    outs = np.stack([x[s * (k + 1):s * (k + 2)] for k in range(r)])   # stand-in outputs
    grid, pairs = triangle_grid(), round_pairs(r)
    n = s * len(pairs) * grid.num_points
    mesh = data_mesh()
    d = mesh.shape["data"]
    print(f"{args.model}: {s} sources x {len(pairs)} triangles x {grid.num_points} points = "
          f"{n} probes of 32x32x3; {d} {jax.default_backend()} device(s); jax {jax.__version__}")

    rows = {}
    ev = ShardedEvaluator(mesh, per_device_chunk=args.per_device_chunk)
    conf_sh = np.asarray(multi_hull_confidences(m.model_fn, m.params, src, outs, labels, grid,
                                                evaluate_fn=ev))
    rows["lst_jax ShardedEvaluator"] = best_time(
        lambda: multi_hull_confidences(m.model_fn, m.params, src, outs, labels, grid,
                                       evaluate_fn=ev), args.reps)
    one = default_evaluator(64)
    conf_1 = np.asarray(multi_hull_confidences(m.model_fn, m.params, src, outs, labels, grid,
                                               evaluate_fn=one))
    rows["lst_jax evaluate_in_chunks (1 device, 64/call)"] = best_time(
        lambda: jax.block_until_ready(multi_hull_confidences(
            m.model_fn, m.params, src, outs, labels, grid, evaluate_fn=one)), args.reps)

    # The limit: all probe images materialised on the device, one forward pass.
    vertices = np.concatenate([src[None], outs])                        # (V, S, H, W, C)
    w = pair_weights(grid, pairs, r)                                    # (T * P, V)
    probes = np.einsum("pv,vshwc->sphwc", w, vertices).reshape((n,) + src.shape[1:])
    probe_labels = np.repeat(labels, len(pairs) * grid.num_points)
    fwd = jax.jit(lambda p, im, lab: jnp.take_along_axis(
        jax.nn.softmax(m.model_fn(p, im), -1), lab[:, None], -1)[:, 0])
    dev_args = jax.device_put((m.params, jnp.asarray(probes), jnp.asarray(probe_labels)))
    conf_lim = np.asarray(fwd(*dev_args))
    rows["limit: one forward pass"] = best_time(
        lambda: jax.block_until_ready(fwd(*dev_args)), args.reps)
    # The same with the evaluator's chunk size: pure model compute at that batch size.
    c = min(args.per_device_chunk * d, n)
    n_pad = -(-n // c) * c
    pad = lambda a: np.concatenate([a, np.repeat(a[-1:], n_pad - n, 0)])
    fwd_chunks = jax.jit(lambda p, im, lab: jax.lax.map(
        lambda t: fwd(p, *t), (im.reshape((-1, c) + im.shape[1:]), lab.reshape(-1, c))))
    dev_chunks = jax.device_put((m.params, jnp.asarray(pad(probes)),
                                 jnp.asarray(pad(probe_labels))))
    rows[f"limit: forward passes of {c} pre-built probes"] = best_time(
        lambda: jax.block_until_ready(fwd_chunks(*dev_chunks)), args.reps)
    checks = {"sharded vs 1 device": float(np.max(np.abs(conf_sh - conf_1))),
              "sharded vs limit": float(np.max(np.abs(conf_sh.reshape(-1) - conf_lim)))}

    if not args.no_torch:
        try:
            import torch
        except ImportError:
            print("torch not installed: PyTorch loop skipped")
        else:
            from benchmark import TorchNormalized  # experiments/: the LST benchmark's wrapper
            from torch_twins import digits_twin

            net = TorchNormalized(digits_twin(m.model_fn.module, m.params),
                                  m.model_fn.normalization).eval()
            with torch.no_grad():
                lt = net(torch.from_numpy(src).permute(0, 3, 1, 2)).numpy()
            checks["torch twin logits"] = float(np.max(np.abs(
                lt - np.asarray(m.model_fn(m.params, jnp.asarray(src))))))
            conf_t = torch_hull_loop(net, src, outs, labels, grid, pairs)
            checks["sharded vs PyTorch"] = float(np.max(np.abs(conf_sh - conf_t)))
            rows[f"PyTorch loop ({torch.get_num_threads()} threads, 64/call)"] = best_time(
                lambda: torch_hull_loop(net, src, outs, labels, grid, pairs), args.reps)

    limit = rows["limit: one forward pass"]
    print(f"\n| method | seconds | points/s | time vs limit | lst_jax sharded speed-up |")
    print("|---|---|---|---|---|")
    sh = rows["lst_jax ShardedEvaluator"]
    for name, t in rows.items():
        print(f"| {name} | {t:.3f} | {n / t:,.0f} | {t / limit:.2f}x | {t / sh:.2f}x |")
    print("\nmax |difference| of confidences / logits:",
          ", ".join(f"{k} {v:.1e}" for k, v in checks.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
