"""`lst-jax examples|pool|full-eval|tables`: argument parsing and dispatch (the work is
`lst_jax.jobs.lst`).

    lst-jax examples [--model digits_resnet-normal] [--data digits|photos|...] [--widths] ...
    lst-jax pool --models A B [--data digits|cifar10|imagenet2012|folder] --out POOL
    lst-jax full-eval --model A --pool POOL --out RUN [--num-samples N] [--rounds 5] ...
    lst-jax tables RUN [RUN ...] --out DIR
"""

from __future__ import annotations

import argparse
import json

from lst_jax.traversal.config import PRESETS, LSTConfig
from lst_jax.utils.cliargs import add_data_options, add_preset_option, set_preset_selector


def _add_lst_args(p: argparse.ArgumentParser):
    g = p.add_argument_group("traversal (defaults: the chosen --preset)")
    g.add_argument("--preset", default="paper", choices=sorted(PRESETS))

    def lst_option(flag, **kwargs):
        field = flag[2:].replace("-", "_")
        add_preset_option(g, flag, default=None, preset_flag="--preset",
                          presets={n: getattr(c, field) for n, c in sorted(PRESETS.items())},
                          **kwargs)

    lst_option("--step-size", type=float, help="eta, fraction of the residual per step")
    lst_option("--iters", type=int, help="number of iterations")
    lst_option("--pthresh", type=float, help="delta, allowed confidence drop")
    lst_option("--adv-pert", action=argparse.BooleanOptionalAction,
               help="confidence-restoring adversarial term")
    lst_option("--adv-step-size", type=float, help="eps of the adversarial term")
    lst_option("--log-step", type=int, help="logging / progress chunk period")
    lst_option("--noise", type=float, help="random-start amplitude")
    set_preset_selector(p, lambda args: args.preset)
    g.add_argument("--bf16", action="store_true", help="opt-in bfloat16 forward/backward "
                   "of the model (for GPU/TPU; slower on CPUs without bfloat16 units)")


def _add_mesh_arg(p: argparse.ArgumentParser):
    g = p.add_argument_group("devices (see docs/scaling.md)")
    g.add_argument("--mesh", default="auto", choices=["auto", "on", "off"],
                   help="auto: data parallel over all devices (and processes) when there are "
                   "several; on: always the sharded path; off: one device")
    return g


def config_from_args(args) -> LSTConfig:
    cfg = PRESETS[args.preset]
    changes = {f: getattr(args, f) for f in ("step_size", "iters", "pthresh", "adv_pert",
                                             "adv_step_size", "log_step", "noise")
               if getattr(args, f, None) is not None}
    return cfg.replace(**changes)


def cmd_examples(args) -> int:
    from lst_jax.jobs.lst.examples import WidthSettings
    from lst_jax.jobs.lst.job import examples_job

    widths = None
    if args.widths:
        widths = WidthSettings(radii=tuple(args.width_distances), num_dirs=args.width_dirs)
    out = examples_job(model=args.model, data=args.data_ref or args.data, k=args.k,
                       config=config_from_args(args), seed=args.seed, out=args.out,
                       classes=args.classes, photos=args.photos, checkpoint=args.checkpoint,
                       compute_dtype="bfloat16" if args.bf16 else None,
                       progress=not args.quiet, widths=widths, plane_grid=args.plane_grid,
                       path_points=args.path_points, pool=args.pool,
                       plane_source=args.plane_source, mesh=args.mesh)
    summary = json.loads((out / "summary.json").read_text())["aggregate"]
    print(json.dumps(summary, indent=2))
    print(f"wrote {out}/summary.md and {out}/figures/ (examples_grid, curves, plane_src-*, "
          f"star_paths{', path_widths' if widths else ''})")
    return 0


def cmd_pool(args) -> int:
    from lst_jax.jobs.lst.job import pool_job

    out = pool_job(args.models, data=args.data_ref, out=args.out, classes=args.classes,
                   min_conf=args.min_conf, checkpoint=args.checkpoint,
                   progress=not args.quiet, scan_seed=args.scan_seed)
    m = json.loads((out / "manifest.json").read_text())
    print(f"wrote {len(m['files'])} target images (classes {m['classes'][:10]}"
          f"{' ...' if len(m['classes']) > 10 else ''}) to {out}")
    return 0


def full_eval_config(args):
    """The `FullEvalConfig` of parsed `full-eval` arguments."""
    from lst_jax.jobs.lst.full_eval import FullEvalConfig

    return FullEvalConfig(lst=config_from_args(args), num_samples=args.num_samples,
                          rounds=args.rounds, batch_size=args.batch_size, seed=args.seed,
                          grid=args.grid, grid_n=args.grid_n, chunk_size=args.chunk_size,
                          distances=args.metrics != "none")


def cmd_full_eval(args) -> int:
    from lst_jax.parallel.distributed import initialize_from_args, is_main_process

    initialize_from_args(args)   # several processes: before anything touches a device
    from lst_jax.jobs.lst.job import full_eval_job

    cfg = full_eval_config(args)
    res = full_eval_job(args.model, pool=args.pool, config=cfg, out=args.out,
                        metrics=args.metrics, checkpoint=args.checkpoint,
                        compute_dtype="bfloat16" if args.bf16 else None,
                        progress=not args.quiet, data=args.data_ref,
                        pool_models=args.pool_models, mesh=args.mesh,
                        memory_budget=args.memory_budget)
    if not is_main_process():
        return 0
    print((res.root / "tables.md").read_text())
    print(f"wrote {res.root}/ (tables.md, table1/2 .md .tex .csv, results.npz, summary.json)")
    return 0


def cmd_tables(args) -> int:
    from lst_jax.jobs.lst.full_eval import tables_for_runs

    res = tables_for_runs(args.runs, args.out, labels=args.labels)
    print(res["table1"])
    print(res["table2"])
    print(f"wrote {args.out}/ (tables.md, table1/2 .md .tex .csv, tables.json)")
    return 0


def add_parser(sub) -> None:
    """Adds `examples`, `pool`, `full-eval` and `tables` to the `lst-jax` subparsers
    (defaults: the jobs' and configs' own)."""
    import inspect

    from lst_jax.jobs.lst.examples import WidthSettings
    from lst_jax.jobs.lst.full_eval import FullEvalConfig
    from lst_jax.jobs.lst.job import examples_job, pool_job
    from lst_jax.parallel.distributed import add_distributed_args

    def defaults_of(fn) -> dict:
        return {k: v.default for k, v in inspect.signature(fn).parameters.items()}

    ex, widths = defaults_of(examples_job), WidthSettings()

    p = sub.add_parser("examples", help="K x K LST examples grid (the main job)")
    p.add_argument("--model", default=ex["model"],
                   help="registry name or checkpoint directory (`lst-jax convert --arch`)")
    p.add_argument("--k", type=int, default=ex["k"], help="number of images (sources = "
                   "targets)")
    p.add_argument("--classes", type=int, nargs="+", help="classes (default 0..k-1; ImageNet: "
                   "99 199 299 400 499)")
    p.add_argument("--photos", nargs="+", help="sample photo names (with --data photos; "
                   "default: the first K)")
    add_data_options(p, extra_kinds=("pool",), default=ex["data"])
    p.add_argument("--pool", help="target pool directory (with --data pool)")
    p.add_argument("--checkpoint", help="checkpoint directory or root (default checkpoints/)")
    p.add_argument("--seed", type=int, default=ex["seed"])
    p.add_argument("--out", help="run directory (default runs/examples_<model>_<data>)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    g = p.add_argument_group("geometry figures")
    g.add_argument("--widths", action="store_true", help="also measure path widths")
    g.add_argument("--width-distances", type=float, nargs="+", default=list(widths.radii),
                   help="L2 radii of the width probes")
    g.add_argument("--width-dirs", type=int, default=widths.num_dirs,
                   help="random directions per point")
    g.add_argument("--plane-grid", type=int, default=ex["plane_grid"],
                   help="triangle grid divisions (10: the reference's 64 points)")
    g.add_argument("--path-points", type=int, default=ex["path_points"],
                   help="points on each star path")
    g.add_argument("--plane-source", type=int, default=ex["plane_source"],
                   help="source image of the triangle figure (reference: 0)")
    _add_lst_args(p)
    _add_mesh_arg(p)
    p.set_defaults(func=cmd_examples)

    p = sub.add_parser("pool", help="build a target pool (one image per class, PNG + manifest)")
    p.add_argument("--models", nargs="+", default=["digits_resnet-normal", "digits_resnet-linf"],
                   help="every model (registry name or checkpoint directory) must classify "
                   "each pool image correctly")
    p.add_argument("--classes", type=int, nargs="+", help="classes (default: all)")
    p.add_argument("--min-conf", type=float, default=defaults_of(pool_job)["min_conf"],
                   help="confidence threshold (> value)")
    p.add_argument("--scan-seed", type=int, help="scan the data in a seeded random order "
                   "(default: natural order)")
    add_data_options(p)
    p.add_argument("--checkpoint", help="checkpoint root (default checkpoints/)")
    p.add_argument("--out", help="pool directory (default runs/pool_<data>)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_pool)

    p = sub.add_parser("full-eval", help="full evaluation: Table 1 and Table 2 (resumable)")
    p.add_argument("--model", default="digits_resnet-normal",
                   help="registry name or checkpoint directory (`lst-jax convert --arch`)")
    p.add_argument("--pool", help="target pool directory (`lst-jax pool`); default: build "
                   "one from --data with --pool-models into OUT/pool")
    p.add_argument("--pool-models", nargs="+", help="models selecting the pool (default: "
                   "--model)")
    add_data_options(p)
    fe = FullEvalConfig()
    p.add_argument("--num-samples", type=int, default=fe.num_samples, help="sources (first "
                   "kept pool images)")
    p.add_argument("--rounds", type=int, default=fe.rounds, help="targets per source")
    p.add_argument("--batch-size", type=int, default=fe.batch_size)
    p.add_argument("--grid", default=fe.grid, choices=["reference", "exact"],
                   help="Table-2 grid: the reference's 64 points or all 66")
    p.add_argument("--grid-n", type=int, default=fe.grid_n, help="grid divisions per edge")
    p.add_argument("--chunk-size", type=int, default=fe.chunk_size,
                   help="hull probes per model call")
    p.add_argument("--metrics", default="all", choices=["all", "basic", "none"],
                   help="Table 1: all four metrics, RMSE + L-inf only, or none")
    p.add_argument("--checkpoint", help="checkpoint directory or root (default checkpoints/)")
    p.add_argument("--seed", type=int, default=fe.seed)
    p.add_argument("--out", help="run directory (default runs/full_eval_<model>); re-run the "
                   "same command to resume")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_lst_args(p)
    g = _add_mesh_arg(p)
    g.add_argument("--memory-budget", help="per-device memory for one chunk of hull probes, "
                   "e.g. 2GiB (replaces --chunk-size; planned from XLA's memory analysis)")
    add_distributed_args(p)
    p.set_defaults(func=cmd_full_eval)

    p = sub.add_parser("tables", help="paper-style tables of finished full-eval runs")
    p.add_argument("runs", nargs="+", help="run directories")
    p.add_argument("--out", required=True, help="output directory for the tables")
    p.add_argument("--labels", nargs="+", help="row labels (default from the model names)")
    p.set_defaults(func=cmd_tables)
