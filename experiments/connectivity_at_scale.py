"""Connectivity at ImageNet size: path losses and the paper's attack on a ResNet-50 at 224x224
against their limits, with the batch sizes planned from a memory budget (issue 18).

- path losses (`path_losses(..., memory_budget=B)`) vs the plain jitted forward pass of the
  same number of images at the same batch (the forward limit);
- the optimisation attack (`optimization_attack(..., memory_budget=B)`, every row running all
  its steps) vs a jitted loop of forward + input-gradient passes at the same batch (the
  forward+backward limit);
- the batch sizes each plans from the budget (`plan_chunk_size` on the path evaluation,
  `rows_per_call` on the optimiser).

Random weights (numpy-drawn, `lst_jax.bench.cases.random_variables`), random images labelled
by the model. Medians of `--reps` timed runs after a warm-up (compilation excluded), measured
side by side in one process. Prints a Markdown table and writes `--out` (JSON).

    python experiments/connectivity_at_scale.py --pairs 2 --points 16 --steps 4 --reps 2
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from lst_jax.bench.cases import random_variables
from lst_jax.connectivity import AttackConfig, optimization_attack, path_losses
from lst_jax.connectivity.optimize import LoopSpec, rows_per_call
from lst_jax.models.registry import ARCHITECTURES
from lst_jax.models.wrapper import IMAGENET_NORMALIZATION, Classifier
from lst_jax.parallel.sharded import parse_bytes


def _median(fn, reps: int) -> float:
    fn()                                                   # warm-up (compiles)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", default="resnet50")
    p.add_argument("--pairs", type=int, default=2)
    p.add_argument("--points", type=int, default=16, help="points of each path")
    p.add_argument("--steps", type=int, default=4, help="attack steps (all rows run all)")
    p.add_argument("--memory-budget", default="2GiB", help="bytes per device")
    p.add_argument("--reps", type=int, default=2)
    p.add_argument("--out", default="runs/connectivity_at_scale.json")
    args = p.parse_args(argv)

    shape = (224, 224, 3)
    model_fn = Classifier(ARCHITECTURES[args.arch](), IMAGENET_NORMALIZATION)
    params = random_variables(model_fn, shape)
    rng = np.random.default_rng(0)
    a = rng.uniform(size=(args.pairs,) + shape).astype(np.float32)
    b = rng.uniform(size=(args.pairs,) + shape).astype(np.float32)
    fwd = jax.jit(model_fn)
    labels = np.asarray(fwd(params, a)).argmax(-1).astype(np.int32)
    budget = parse_bytes(args.memory_budget)

    # ---- path losses vs the forward limit (same images, same batch)
    from lst_jax.parallel import data_mesh, plan_chunk_size

    n_img = args.pairs * args.points
    probe = jnp.zeros((n_img,) + shape, jnp.float32)
    path_batch = plan_chunk_size(model_fn, params, probe, data_mesh(jax.devices()[:1]),
                                 memory_budget=budget)
    t_path = _median(lambda: jax.block_until_ready(path_losses(
        model_fn, params, a, b, labels, num_points=args.points, memory_budget=budget)),
        args.reps)
    xs = jnp.asarray(rng.uniform(size=(path_batch,) + shape), jnp.float32)
    calls = -(-n_img // path_batch)
    t_fwd = _median(lambda: [jax.block_until_ready(fwd(params, xs)) for _ in range(calls)],
                    args.reps)

    # ---- the attack vs the forward+backward limit (same rows, same steps)
    cfg = AttackConfig(steps=args.steps, min_step=args.steps)
    rows = rows_per_call(None, None, memory_budget=budget, model_fn=model_fn, params=params,
                         image_shape=shape, spec=LoopSpec(args.steps, stop="none", min_step=0))
    target = (labels + 1) % 1000
    t_att = _median(lambda: jax.block_until_ready(optimization_attack(
        model_fn, params, a, target, config=cfg, memory_budget=budget).x), args.reps)

    def loss(x, y):
        logp = jax.nn.log_softmax(model_fn(params, x), -1)
        return -jnp.sum(jnp.take_along_axis(logp, y[:, None], -1))

    @jax.jit
    def fb_loop(x, y):
        return jax.lax.fori_loop(0, args.steps, lambda i, x: x - 1e-3 * jax.grad(loss)(x, y), x)

    xa, ya = jnp.asarray(a), jnp.asarray(target)
    t_fb = _median(lambda: jax.block_until_ready(fb_loop(xa, ya)), args.reps)

    res = {
        "arch": args.arch, "input": "224x224x3", "memory_budget": args.memory_budget,
        "pairs": args.pairs, "points": args.points, "attack_steps": args.steps,
        "path_batch_planned": int(path_batch), "attack_rows_planned": rows,
        "path_s": t_path, "forward_limit_s": t_fwd, "path_efficiency": t_fwd / t_path,
        "attack_s": t_att, "fwd_bwd_limit_s": t_fb, "attack_efficiency": t_fb / t_att,
        "device": str(jax.devices()[0]), "jax": jax.__version__,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=2) + "\n")
    print("| workload | images | planned batch | lst_jax s | limit s | efficiency |")
    print("|---|---|---|---|---|---|")
    print(f"| path losses | {n_img} | {path_batch} | {t_path:.2f} | {t_fwd:.2f} | "
          f"{t_fwd / t_path:.2f} |")
    print(f"| attack ({args.steps} steps) | {args.pairs} rows | {rows} rows | {t_att:.2f} | "
          f"{t_fb:.2f} | {t_fb / t_att:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
