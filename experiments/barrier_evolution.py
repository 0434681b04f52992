"""Barrier evolution over the first training steps (paper App. F.1) on the digits data.

A randomly initialised network is trained with Adam (lr 1e-3, batch 512, random
translations of up to 4 pixels: the digits' stand-in for the authors' CIFAR flip + crop).
At batch 0 (untrained) and after each of the first `--batches` training batches, for every
class and run two synthetic inputs are made by FVO (4096 steps, stop at CE < 5e-3, TV
2.5e-7 for input A, none for C; batched over all classes and runs in one call) and the CE
of the class is measured on the 200-point linear path between them. The figure shows the
mean +- std primary curves at five checkpoints and the barrier max against the batch.

    python experiments/barrier_evolution.py --preset quick     # 5 batches, 3 classes x 1 run
    python experiments/barrier_evolution.py --preset full      # 30 batches, 10 classes x 5 runs
    python experiments/barrier_evolution.py                    # default: 30 batches, 10 x 2

Resumable: one `batch_<i>.npz` per checkpoint in `--out`; the training is replayed
deterministically (it is cheap), finished checkpoints are not measured again.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import jax  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from lst_jax.connectivity import (  # noqa: E402
    FVOConfig,
    feature_visualization,
    model_in_space,
    noise_inputs,
    path_losses,
    untrained_model,
)
from lst_jax.data.digits import load_digits32  # noqa: E402
from lst_jax.jobs.rundir import RunDir, markdown_table  # noqa: E402
from lst_jax.utils.progress import Progress  # noqa: E402

PRESETS = {"quick": dict(batches=5, runs=1, classes=3),
           "default": dict(batches=30, runs=2, classes=10),
           "full": dict(batches=30, runs=5, classes=10)}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="default", choices=sorted(PRESETS))
    p.add_argument("--arch", default="digits_resnet", choices=["digits_resnet", "resnet18"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fvo-steps", type=int, default=4096)
    p.add_argument("--fvo-threshold", type=float, default=5e-3)
    p.add_argument("--points", type=int, default=200)
    p.add_argument("--out", default="runs/barrier_evolution")
    p.add_argument("--figure", help="also write the figure here (e.g. docs/figures/...png)")
    return p.parse_args(argv)


def training_states(model, params, batches: int, seed: int):
    """Yields (batch index, variables) at batch 0 and after each training batch."""
    from train_digits import make_train_step

    x, y = load_digits32("train")
    tx = optax.adam(1e-3)
    step = make_train_step(model, tx, adversarial=False)
    state = (params["params"], params.get("batch_stats", {}), tx.init(params["params"]))
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(x))
    key = jax.random.key(seed)
    yield 0, params
    pos = 0
    for b in range(1, batches + 1):
        if pos + 512 > len(order):
            order, pos = rng.permutation(len(x)), 0
        idx = order[pos:pos + 512]
        pos += 512
        state, _, _ = step(state, x[idx], y[idx], jax.random.fold_in(key, b), 1.0)
        variables = {"params": state[0], **({"batch_stats": state[1]} if state[1] else {})}
        yield b, variables


def measure(fn, variables, classes, runs, seed, batch, cfg, points):
    """FVO pairs (A with TV 2.5e-7, C without) per class and run, and their primary curves."""
    labels = np.repeat(np.arange(classes), runs)
    key = jax.random.fold_in(jax.random.key(seed + 1), batch)
    x0 = noise_inputs(key=key, num=2 * len(labels), image_shape=(32, 32, 3),
                      scale=cfg.init_scale)
    fvo = feature_visualization(fn, variables, x0, np.repeat(labels, 2),
                                config=cfg.replace(tv_weight=(2.5e-7, 0.0) * len(labels)))
    curves = path_losses(fn, variables, fvo.x[0::2], fvo.x[1::2], labels, num_points=points)
    return {"curves": curves, "labels": labels, "fvo_ce": fvo.ce, "fvo_steps": fvo.steps}


def main(argv=None):
    from lst_jax.plots.connectivity import barrier_evolution

    args = parse_args(argv)
    preset = PRESETS[args.preset]
    model, params = untrained_model(args.arch, key=jax.random.key(args.seed))
    fn, _ = model_in_space(model, space="normalized")
    run = RunDir(args.out)
    config = {"preset": args.preset, **preset, "arch": args.arch, "seed": args.seed,
              "fvo_steps": args.fvo_steps, "fvo_threshold": args.fvo_threshold,
              "points": args.points, "train": "Adam 1e-3, batch 512, translations <= 4 px"}
    run.ensure_manifest(config, mode="barrier evolution (App. F.1)")
    cfg = FVOConfig(steps=args.fvo_steps, threshold=args.fvo_threshold)
    with Progress(preset["batches"] + 1, desc="checkpoints", unit="ckpt") as bar:
        for b, variables in training_states(model, params, preset["batches"], args.seed):
            name = f"batch_{b:03d}.npz"
            if not run.exists(name):
                run.save_npz(name, **measure(fn, variables, preset["classes"], preset["runs"],
                                             args.seed, b, cfg, args.points))
            bar.update(1)
    data = [run.load_npz(f"batch_{b:03d}.npz") for b in range(preset["batches"] + 1)]
    curves = np.stack([d["curves"] for d in data])
    ids = np.arange(preset["batches"] + 1)
    fig = barrier_evolution(ids, curves, run.path("figures/barrier_evolution.png"),
                            title=f"Barrier evolution in training ({args.arch}, digits)")
    if args.figure:
        barrier_evolution(ids, curves, args.figure,
                          title=f"Barrier evolution in training ({args.arch}, digits)")
    mx = curves.max(-1)
    rows = [[b, f"{mx[b].mean():.3g}", f"{mx[b].std():.3g}", f"{np.median(mx[b]):.3g}",
             f"{data[b]['fvo_ce'].max():.2g}", f"{data[b]['fvo_steps'].mean():.0f}"]
            for b in ids]
    table = markdown_table(["batch", "barrier max mean", "std", "median", "worst FVO CE",
                            "mean FVO steps"], rows)
    run.write_text("evolution.md", table)
    print(table)
    print(f"wrote {run.root}/ (batch_*.npz, evolution.md, figures/barrier_evolution.png)"
          + (f" and {args.figure}" if args.figure else ""))
    return fig


if __name__ == "__main__":
    main()
