"""`lst-jax` command line: one console command with subcommands.

    lst-jax examples [--model digits_resnet-normal] [--data digits|photos|...] [--widths] ...
                     [--mesh auto|on|off]
    lst-jax pool --models A B [--data digits|cifar10|imagenet2012|folder] --out POOL
    lst-jax full-eval --model A --pool POOL --out RUN [--num-samples N] [--rounds 5] ...
                      [--mesh auto|on|off] [--memory-budget 2GiB]
                      [--coordinator host:port --num-processes N --process-id I]
    lst-jax tables RUN [RUN ...] --out DIR
    lst-jax iaside --models A [B ...] [--data digits] [--k K] [--bands 8] [--fill random]
    lst-jax models
    lst-jax convert NAME WEIGHTS [--out DIR] [--overwrite]
    lst-jax convert WEIGHTS --arch ARCH [--num-classes N] [--input-size S] [--normalization P]
                    [--labels L] [--name NAME] [--out DIR]
    lst-jax profile [--models A B ...] [--preset quick|paper] [--out DIR]
    lst-jax connectivity {barrier,bypass,synthetic,detect} ...
    lst-jax bench [--suite quick|device|full] [--out DIR] [--budget SECONDS] [--dry-run]
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from lst_jax.traversal.config import PRESETS, LSTConfig
from lst_jax.utils.cliargs import (
    LstParser,
    add_data_options,
    add_preset_option,
    set_preset_selector,
    show_defaults,
)


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


def iaside_config(args):
    """The `IasideConfig` of parsed `iaside` arguments."""
    from lst_jax.jobs.iaside.job import IasideConfig

    return IasideConfig(num_bands=args.bands, fill=args.fill, post=args.post,
                        normalize=args.normalize, group_size=args.group_size, beta=args.beta,
                        seed=args.seed, resample=args.resample, estimator=args.estimator,
                        num_permutations=args.permutations, k=args.k,
                        data=args.data_ref.kind, split=args.data_ref.split)


def cmd_iaside(args) -> int:
    from lst_jax.parallel.distributed import initialize_from_args, is_main_process

    initialize_from_args(args)   # several processes: before anything touches a device
    from lst_jax.jobs.iaside.job import iaside_job

    cfg = iaside_config(args)
    mesh = None
    if args.devices is not None:
        import jax

        from lst_jax.parallel import data_mesh

        if not 1 <= args.devices <= jax.local_device_count():
            raise ValueError(f"--devices must lie in [1, {jax.local_device_count()}], got "
                             f"{args.devices}")
        mesh = data_mesh(jax.local_devices()[:args.devices])
    res = iaside_job(args.models, cfg, args.out, model_root=args.model_root,
                     progress=not args.quiet, checkpoint=args.checkpoint,
                     data=args.data_ref, mesh=mesh,
                     batch_size=args.batch_size, memory_budget=args.memory_budget)
    if not is_main_process():
        return 0
    print((res["out"] / "iaside.md").read_text())
    print(f"wrote {res['out']}/ (iaside.md, iaside.csv, summary.json, "
          "figures/iaside_distributions.png, models/)")
    return 0


def _accuracy_table(rows_meta) -> str:
    from lst_jax.jobs.rundir import markdown_table

    radii = sorted({k for _, meta in rows_meta for k in (meta.get("pgd_ladder") or {})},
                   key=lambda k: float(k.split("/")[0]))
    rows = []
    for name, meta in rows_meta:
        attack = meta.get("train_attack") or {}
        training = (f"PGD-{attack['steps']} AT, eps {round(attack['eps'] * 255)}/255"
                    if attack else meta["training"])
        ladder = meta.get("pgd_ladder") or {}
        rows.append([f"`{name}`", meta["arch"], f"{meta['param_count']:,}", training,
                     f"{100 * meta['test_accuracy']:.1f}%"]
                    + [f"{100 * ladder[r]:.1f}%" if r in ladder else "-" for r in radii]
                    + [f"{meta.get('train_seconds', 0):.0f} s"])
    return markdown_table(["model", "architecture", "params", "training", "clean test acc"]
                          + [f"PGD-20 {r}" for r in radii] + ["train time"], rows)


def cmd_models(args) -> int:
    from lst_jax.models.registry import REGISTRY, checkpoint_metadata, checkpoint_path

    if args.markdown:
        metas = [(n, checkpoint_metadata(n, args.checkpoints)) for n in sorted(REGISTRY)]
        metas = [(n, m) for n, m in metas if m and "test_accuracy" in m]
        # by architecture, then by the training radius (the robustness ladder in order)
        metas.sort(key=lambda nm: (nm[1]["arch"], (nm[1].get("train_attack") or {}).get("eps", 0)))
        print(_accuracy_table(metas), end="")
        return 0
    rows = []
    for name, spec in sorted(REGISTRY.items()):
        meta = checkpoint_metadata(name, args.checkpoints)
        acc = meta.get("test_accuracy") if meta else None
        rows.append((name, spec.arch, spec.dataset, "x".join(map(str, spec.input_size)),
                     "yes" if meta else "no", f"{acc:.3f}" if acc is not None else "-",
                     str(checkpoint_path(name, args.checkpoints))))
    widths = [max(len(r[i]) for r in rows + [("name", "arch", "dataset", "input",
                                               "available", "test acc", "checkpoint")])
              for i in range(7)]
    header = ("name", "arch", "dataset", "input", "available", "test acc", "checkpoint")
    for r in [header] + rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    _print_converted(args.checkpoints)
    if any(r[4] == "no" for r in rows):
        print("\nmissing checkpoints: `lst-jax convert <name> <PyTorch weights file>` "
              "(docs/models.md, 'Model zoo and converters'); checkpoints kept elsewhere: "
              "set LST_JAX_CHECKPOINTS to their root, or pass --checkpoints here and "
              "--checkpoint to the other commands")
    return 0


def _print_converted(root) -> None:
    """The checkpoints under the root that are not registry models (`convert --arch`)."""
    from pathlib import Path

    from lst_jax.models.reference import resolve_model
    from lst_jax.models.registry import REGISTRY, checkpoint_root

    root = Path(root) if root else checkpoint_root()
    dirs = sorted(p for p in root.iterdir() if p.name not in REGISTRY
                  and (p / "metadata.json").is_file()) if root.is_dir() else []
    if not dirs:
        return
    print(f"\ncheckpoint directories under {root} (--model NAME or --model DIR):")
    for p in dirs:
        try:
            spec = resolve_model(str(p)).spec
            print(f"  {p.name}  {spec.arch}  {spec.num_classes} classes "
                  f"({spec.label_set or '-'})  {'x'.join(map(str, spec.input_size))}")
        except ValueError as e:
            print(f"  {p.name}  unusable: {e}")


def cmd_migrate(args) -> int:
    from lst_jax.models.migrate import migrate_checkpoint
    from lst_jax.models.registry import checkpoint_path, get_spec

    spec = get_spec(args.name)
    path = checkpoint_path(args.name, args.checkpoint)
    meta = migrate_checkpoint(path, spec.arch)
    print(f"migrated {path} ({meta['migrated']['from']}) -> the current {spec.arch} layout; "
          f"digest {meta['migrated']['previous_digest'][:12]} -> {meta['digest'][:12]}")
    return 0


def cmd_profile(args) -> int:
    import shlex

    from lst_jax.parallel.distributed import initialize_from_args, is_main_process

    initialize_from_args(args)   # several processes: before anything touches a device
    from lst_jax.jobs.profile import profile_job, profile_preset
    from lst_jax.utils.cliargs import data_options_argv

    changes = {}
    if args.baseline:
        changes["baseline"] = args.baseline
    if args.analyses:
        changes["analyses"] = tuple(args.analyses)
    config = profile_preset(args.preset, **changes)
    if args.num_images is not None:
        config = config.replace(robustness=config.robustness.replace(
            num_images=args.num_images))
    out = args.out or f"runs/profile_{args.preset}"
    parts = ["--models", *args.models, "--preset", args.preset]
    parts += ["--baseline", args.baseline] if args.baseline else []
    parts += ["--analyses", *args.analyses] if args.analyses else []
    parts += ["--num-images", str(args.num_images)] if args.num_images is not None else []
    parts += data_options_argv(args.data_ref)
    command = "lst-jax profile " + " ".join(shlex.quote(a) for a in parts + ["--out", out])
    prof = profile_job(args.models, config, out, progress=not args.quiet, command=command,
                       preset_name=args.preset, data=args.data_ref)
    if not is_main_process():
        return 0
    from pathlib import Path

    print((Path(out) / "report.md").read_text().split("## Figures")[0])
    print(f"wrote {out}/ (report.md, report.html, profile.json, profile.csv, figures/; "
          f"{len(prof['models'])} models)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    import inspect

    from lst_jax.jobs.iaside.job import IasideConfig
    from lst_jax.jobs.lst.examples import WidthSettings
    from lst_jax.jobs.lst.full_eval import FullEvalConfig
    from lst_jax.jobs.lst.job import examples_job, pool_job

    def defaults_of(fn) -> dict:
        return {k: v.default for k, v in inspect.signature(fn).parameters.items()}

    parser = LstParser(prog="lst-jax", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--matmul-precision", default="default",
                        choices=("default", "high", "highest"),
                        help="float32 matmul/convolution precision of every program (JAX's "
                        "jax_default_matmul_precision; 'default': TF32 on recent NVIDIA GPUs, "
                        "bfloat16 passes on TPUs, full float32 on CPUs; 'highest': full float32 "
                        "everywhere, as the parity tests; docs/scaling.md)")
    sub = parser.add_subparsers(dest="command", required=True)

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
    from lst_jax.parallel.distributed import add_distributed_args

    add_distributed_args(p)
    p.set_defaults(func=cmd_full_eval)

    p = sub.add_parser("tables", help="paper-style tables of finished full-eval runs")
    p.add_argument("runs", nargs="+", help="run directories")
    p.add_argument("--out", required=True, help="output directory for the tables")
    p.add_argument("--labels", nargs="+", help="row labels (default from the model names)")
    p.set_defaults(func=cmd_tables)

    p = sub.add_parser("iaside", help="I-ASIDE spectral importance and robustness score "
                       "(resumable)", description="Spectral importance of frequency bands "
                       "(Shapley values over square L-inf bands of the 2-D spectrum) and the "
                       "spectral robustness score, per model, side by side (docs/iaside.md).")
    p.add_argument("--models", nargs="+", required=True,
                   help="registry names or checkpoint directories")
    add_data_options(p)
    p.add_argument("--k", type=int, help="images per coalition (default: all images of the "
                   "split, at most 1000)")
    ia = IasideConfig()
    p.add_argument("--bands", type=int, default=ia.num_bands,
                   help="M, number of frequency bands")
    p.add_argument("--fill", default=ia.fill, choices=["random", "zero", "gaussian"],
                   help="what replaces removed bands (reference: random)")
    p.add_argument("--post", default=ia.post, choices=["abs", "real"],
                   help="inverse-FFT post-processing (reference: abs)")
    p.add_argument("--normalize", default=ia.normalize, choices=["group", "per_image"],
                   help="min-max over each group of --group-size images (reference) or per "
                   "image")
    p.add_argument("--group-size", type=int, default=ia.group_size,
                   help="images per normalisation / random-fill group (reference: 10)")
    p.add_argument("--beta", type=float, default=ia.beta, help="score decay (reference 0.75)")
    p.add_argument("--seed", type=int, default=ia.seed, help="images, pairings, noise")
    p.add_argument("--resample", action="store_true", help="a fresh random image subset "
                   "per coalition, as the reference (default: one fixed sample)")
    p.add_argument("--estimator", default=ia.estimator, choices=["exact", "sampled"],
                   help="exact enumeration of the 2^M coalitions, or antithetic permutation "
                   "sampling (large M)")
    p.add_argument("--permutations", type=int, default=ia.num_permutations,
                   help="permutations of the sampled estimator")
    p.add_argument("--checkpoint", help="checkpoint root (default checkpoints/)")
    p.add_argument("--out", help="run directory (default runs/iaside_<data>)")
    p.add_argument("--model-root", help="where the per-model runs live (default OUT/models; "
                   "finished runs with the same model and config are reused)")
    g = p.add_argument_group("compute (never changes the numbers beyond round-off)")
    g.add_argument("--batch-size", type=int, help="images per device in one model call "
                   "(default 128)")
    g.add_argument("--memory-budget", help="per-device memory of one call, e.g. 2GiB "
                   "(planned from XLA's memory analysis)")
    g.add_argument("--devices", type=int, help="use the first N devices (default all; "
                   "several processes: of this process)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    from lst_jax.parallel.distributed import add_distributed_args

    add_distributed_args(p)
    p.set_defaults(func=cmd_iaside)

    p = sub.add_parser("models", help="list the model registry and checkpoint availability")
    p.add_argument("--checkpoints", help="checkpoint root (default checkpoints/)")
    p.add_argument("--markdown", action="store_true",
                   help="print the accuracy table of the available trained checkpoints")
    p.set_defaults(func=cmd_models)

    from lst_jax.convert.command import add_parser as add_convert_parser

    add_convert_parser(sub)

    p = sub.add_parser("migrate", help="rewrite a checkpoint of an earlier parameter layout "
                       "(the pre-issue-13 digits ViT) into the current one",
                       description="Rewrites, in place and atomically, a checkpoint saved by "
                       "an earlier layout of a registry architecture (see "
                       "lst_jax/models/migrate.py); same numbers, new digest.")
    p.add_argument("name", help="registry name, e.g. digits_vit-normal")
    p.add_argument("--checkpoint", help="checkpoint directory, or a root holding <name>/ "
                   "(default checkpoints/)")
    p.set_defaults(func=cmd_migrate)

    from lst_jax.jobs.profile.analyses import ANALYSES
    from lst_jax.models.registry import DIGITS_LADDER

    p = sub.add_parser("profile", help="one report across all methods for several models "
                       "(robustness, LST, I-ASIDE, connectivity; cached, resumable)")
    p.add_argument("--models", nargs="+", default=list(DIGITS_LADDER),
                   help="registry names or checkpoint directories (default: the digits "
                   "ResNet robustness ladder)")
    p.add_argument("--preset", default="paper", choices=["quick", "paper"],
                   help="quick: a smoke run in minutes; paper: the README report")
    p.add_argument("--baseline", help="mCE baseline model (default digits_resnet-normal on "
                   "the digits, else the first of --models)")
    p.add_argument("--analyses", nargs="+", choices=sorted(ANALYSES),
                   help="run only these analyses (default: all of the preset)")
    p.add_argument("--num-images", type=int,
                   help="test images of the robustness analysis, the first N of the data "
                        "(default: the preset's: quick 64, paper every image; set it on "
                        "ImageNet, whose 50,000 validation images are 30 GB in memory)")
    add_data_options(p)
    p.add_argument("--out", help="report directory (default runs/profile_<preset>); its "
                   "cache/ keeps every finished analysis, so re-running is free")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    add_distributed_args(p)
    p.set_defaults(func=cmd_profile)

    from lst_jax.jobs.connectivity.command import add_parser as add_connectivity_parser

    add_connectivity_parser(sub)

    from lst_jax.bench.runner import add_arguments as add_bench_arguments

    p = sub.add_parser("bench", help="lst_jax vs PyTorch side by side on the devices found "
                       "(LST, I-ASIDE, connectivity, hull grid; bench.json, bench.md)")
    add_bench_arguments(p)
    p.set_defaults(func=cmd_bench)

    show_defaults(parser)
    return parser


def cmd_bench(args) -> int:
    from lst_jax.bench.runner import run

    return run(args)


def check_output_dirs(args) -> None:
    """Refuses an output directory option (`--out`, `--root`, `--model-root`) that names an
    existing file, before any work."""
    for dest in ("out", "root", "model_root"):
        path = getattr(args, dest, None)
        if path and os.path.exists(path) and not os.path.isdir(path):
            flag = "--" + dest.replace("_", "-")
            raise ValueError(f"{flag} {path} is a file, not a directory; give a directory "
                             "(it is created if missing)")


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def interrupted_line(command: str) -> str:
    """The one line printed when Ctrl-C or SIGTERM stops `command`: what is kept and where
    (the outermost run directories the process opened), and how to resume."""
    from pathlib import Path

    from lst_jax.jobs.rundir import opened_run_dirs

    dirs = opened_run_dirs()
    tops = [d for d in dirs if not any(o != d and o in d.parents for o in dirs)]
    if not tops:
        return (f"lst-jax {command}: interrupted before any result was written; rerun the "
                "same command to start again")
    where = Path(os.path.commonpath(tops)) if len(tops) > 1 else tops[0]
    try:
        where = where.relative_to(Path.cwd())
    except ValueError:
        pass
    return (f"lst-jax {command}: interrupted; every finished step is kept in {where} (only "
            "complete files are written); rerun the same command to resume")


def main(argv=None) -> int:
    import signal
    import threading

    from lst_jax.jobs.rundir import forget_opened_run_dirs

    args = build_parser().parse_args(argv)
    if args.matmul_precision != "default":
        import jax

        jax.config.update("jax_default_matmul_precision", args.matmul_precision)
    forget_opened_run_dirs()
    main_thread = threading.current_thread() is threading.main_thread()
    if main_thread:   # SIGTERM (kill, a job scheduler) stops a command like Ctrl-C
        previous = signal.signal(signal.SIGTERM, _raise_interrupt)
        previous_int = signal.getsignal(signal.SIGINT)
    try:
        check_output_dirs(args)
        return args.func(args)
    except KeyboardInterrupt:
        if main_thread:   # a second Ctrl-C while the line is printed changes nothing
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        sys.stdout.flush()
        print(interrupted_line(args.command), file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError) as e:
        print(f"lst-jax {args.command}: error: {e}", file=sys.stderr)
        return 2
    except RuntimeError as e:
        from lst_jax.parallel.distributed import ProcessFailure

        if not isinstance(e, ProcessFailure):
            raise
        print(f"lst-jax {args.command}: error: {e}", file=sys.stderr)
        # Exit now: JAX's shutdown barrier at interpreter exit would wait for the dead
        # process and then abort with a stack trace.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(3)
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)
            signal.signal(signal.SIGINT, previous_int)


if __name__ == "__main__":
    sys.exit(main())
