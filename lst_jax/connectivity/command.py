"""`lst-jax connectivity {barrier,bypass,synthetic,detect}`: argument parsing and dispatch.

    lst-jax connectivity barrier [--models A B] [--root runs/connectivity] [--quick] ...
    lst-jax connectivity bypass [--model A] [--target-class 1] [--mode faithful|exact] ...
    lst-jax connectivity synthetic [--arch resnet18] [--classes 1] [--seeds 0] ...
    lst-jax connectivity detect [--models A B] [--attacks optimization pgd] [--quick] ...
"""

from __future__ import annotations

import argparse
from fractions import Fraction

DIGITS_MODELS = ["digits_resnet-normal", "digits_resnet-linf"]


def _fraction(text: str) -> float:
    """A float or a fraction such as 16/255."""
    try:
        return float(Fraction(text))
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(f"not a number or fraction: {text!r}") from None


def _attack_config(args, **defaults):
    from lst_jax.connectivity.config import AttackConfig

    cfg = AttackConfig(**defaults)
    changes = {k: v for k, v in (("steps", args.attack_steps), ("tv_weight", args.attack_tv),
                                 ("lr", args.attack_lr)) if v is not None}
    return cfg.replace(**changes)


def _add_attack_args(p):
    g = p.add_argument_group("the paper's optimisation attack")
    g.add_argument("--attack-steps", type=int, help="max Adam steps (default 512)")
    g.add_argument("--attack-lr", type=float, help="Adam step size (default 5e-3)")
    g.add_argument("--attack-tv", type=float, help="TV weight (default 1e-8)")


def _common(p, models=True):
    if models:
        p.add_argument("--models", nargs="+", default=DIGITS_MODELS, help="registry names")
        p.add_argument("--root", default="runs/connectivity",
                       help="directory of the per-model run directories and the combined "
                            "tables / figures (a finished run is reused, a partial one "
                            "resumed)")
    p.add_argument("--checkpoint", help="checkpoint root (default checkpoints/)")
    p.add_argument("--space", default="normalized", choices=["normalized", "pixel"],
                   help="where paths and optimisations live (authors: the model's normalised "
                        "tensor space)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true",
                   help="tiny settings for a smoke test (minutes on a CPU)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _run_models(args, unit, config, table_fn, name):
    """Runs (or reuses) the per-model unit for every model; writes `<name>.md/json`.
    Several processes: every process shares the work, process 0 alone writes (the others
    get None)."""
    from lst_jax.evaluation.rundir import RunDir
    from lst_jax.parallel.distributed import initialize_from_args, is_main_process

    initialize_from_args(args)   # several processes: before anything touches a device
    main = is_main_process()
    summaries = {m: unit(m, config, args.root, checkpoint=args.checkpoint,
                         progress=not args.quiet and main) for m in args.models}
    if not main:
        return None
    root = RunDir(args.root)
    table = table_fn(summaries)
    root.write_text(f"{name}.md", table)
    root.write_json(f"{name}.json", summaries)
    return summaries, root, table


def barrier_config(args):
    """The `BarrierRunConfig` of parsed `connectivity barrier` arguments."""
    from lst_jax.connectivity.jobs import BarrierRunConfig

    quick = dict(pairs_per_class=1, drop_per_class=0, points=21) if args.quick else {}
    return BarrierRunConfig(**{**dict(pairs_per_class=args.pairs_per_class,
                                      drop_per_class=args.drop_per_class, points=args.points,
                                      classes=tuple(args.classes) if args.classes else None,
                                      batch_size=args.batch_size), **quick},
                            attack=_attack_config(args, **({"steps": 40} if args.quick
                                                           else {})),
                            space=args.space, seed=args.seed)


def cmd_barrier(args) -> int:
    from lst_jax.connectivity.jobs import barrier_box_data, barrier_model_run, barrier_table
    from lst_jax.plots.connectivity import barrier_boxplots

    done = _run_models(args, barrier_model_run, barrier_config(args), barrier_table,
                       "barrier")
    if done is None:             # not process 0 of a multi-process run
        return 0
    summaries, root, table = done
    barrier_boxplots({m: barrier_box_data(s["run_dir"]) for m, s in summaries.items()},
                     root.path("figures/barrier_boxplots.png"),
                     title="Barrier max and gap: real-real vs real-adversarial")
    print(table)
    print(f"wrote {root.root}/barrier.md, barrier.json, figures/barrier_boxplots.png; "
          f"per model: {', '.join(s['run_dir'] for s in summaries.values())}")
    return 0


def detect_config(args):
    """The `DetectRunConfig` of parsed `connectivity detect` arguments."""
    from lst_jax.connectivity.config import PGDConfig
    from lst_jax.connectivity.detect import DetectorConfig
    from lst_jax.connectivity.jobs import DetectRunConfig

    pgd = PGDConfig(eps=args.pgd_eps, steps=args.pgd_steps,
                    step_size=args.pgd_step_size or args.pgd_eps / 4)
    quick = dict(num_samples=40, points=21) if args.quick else {}
    return DetectRunConfig(**{**dict(num_samples=args.num_samples, points=args.points,
                                     batch_size=args.batch_size), **quick},
                           attacks=tuple(args.attacks),
                           attack=_attack_config(args, **({"steps": 40} if args.quick
                                                          else {})),
                           pgd=pgd.replace(steps=3) if args.quick else pgd,
                           detector=DetectorConfig(folds=args.folds), features=args.features,
                           space=args.space, seed=args.seed)


def cmd_detect(args) -> int:
    from lst_jax.connectivity.jobs import detect_model_run, detect_table
    from lst_jax.evaluation.rundir import RunDir
    from lst_jax.plots.connectivity import roc_curves

    done = _run_models(args, detect_model_run, detect_config(args), detect_table, "detect")
    if done is None:             # not process 0 of a multi-process run
        return 0
    summaries, root, table = done
    curves = {}
    for m, s in summaries.items():
        run = RunDir(s["run_dir"])
        for name, e in s["attacks"].items():
            if e.get("auroc") is not None:
                z = run.load_npz(f"detector_{name}.npz")
                curves[f"{m}, {name}"] = (z["fpr"], z["tpr"], e["auroc"])
    if curves:
        roc_curves(curves, root.path("figures/detect_roc.png"))
    print(table)
    print(f"wrote {root.root}/detect.md, detect.json, figures/detect_roc.png")
    return 0


def cmd_bypass(args) -> int:
    from lst_jax.connectivity.config import BypassConfig
    from lst_jax.connectivity.demo_jobs import BypassRunConfig, bypass_job

    bp = BypassConfig(mode=args.mode, steps=20 if args.quick else args.bypass_steps)
    cfg = BypassRunConfig(target_class=args.target_class, source_class=args.source_class,
                          candidates=args.candidates, selection=args.selection,
                          points=21 if args.quick else args.points,
                          segment_points=args.segment_points, threshold=args.threshold,
                          max_depth=args.max_depth, bypass=bp,
                          attack=_attack_config(args, steps=40 if args.quick else 1024,
                                                tv_weight=1e-7),
                          space=args.space)
    out = bypass_job(args.model, cfg, args.out, checkpoint=args.checkpoint,
                     progress=not args.quiet)
    print((out / "summary.md").read_text())
    print(f"wrote {out}/ (summary.md/json, results.npz, figures/profiles.png, paths.png, "
          f"difference_*.png)")
    return 0


def cmd_synthetic(args) -> int:
    from lst_jax.connectivity.config import FreeConfig, FVOConfig
    from lst_jax.connectivity.demo_jobs import SyntheticRunConfig, synthetic_job

    fvo = FVOConfig(steps=30 if args.quick else args.fvo_steps, threshold=args.fvo_threshold)
    free = FreeConfig(steps=30 if args.quick else args.free_steps)
    cfg = SyntheticRunConfig(arch=args.arch, init_seed=args.init_seed,
                             classes=tuple(args.classes), seeds=tuple(args.seeds), fvo=fvo,
                             free=free, points=21 if args.quick else args.points,
                             segment_points=21 if args.quick else args.points,
                             threshold=args.threshold, max_depth=args.max_depth)
    out = synthetic_job(cfg, args.out, progress=not args.quiet)
    print((out / "rounds.md").read_text())
    print(f"wrote {out}/ (rounds.md, summary.json, fvo.npz, results.npz, figures/rounds_*.png)")
    return 0


def add_parser(sub) -> None:
    """Adds `connectivity` and its modes to the `lst-jax` subparsers."""
    from lst_jax.parallel.distributed import add_distributed_args

    p = sub.add_parser("connectivity", help="input-space mode connectivity (Vrabel et al.)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    modes = p.add_subparsers(dest="mode", required=True)

    q = modes.add_parser("barrier", help="barrier statistics, real-real vs real-adversarial")
    _common(q)
    q.add_argument("--classes", type=int, nargs="+", help="classes (default all)")
    q.add_argument("--pairs-per-class", type=int, default=7)
    q.add_argument("--drop-per-class", type=int, default=2,
                   help="pairs dropped per class by |L(A) - L(C)| (the authors' 2)")
    q.add_argument("--points", type=int, default=250, help="points per path")
    q.add_argument("--batch-size", type=int, default=64, help="pairs per attack batch")
    _add_attack_args(q)
    add_distributed_args(q)
    q.set_defaults(func=cmd_barrier)

    q = modes.add_parser("detect", help="attack + loss-curve detector -> AUROC, ROC")
    _common(q)
    q.add_argument("--attacks", nargs="+", default=["optimization", "pgd"],
                   choices=["optimization", "pgd"])
    q.add_argument("--num-samples", type=int, help="clean test images (default all correct)")
    q.add_argument("--points", type=int, default=250, help="points on the curve r -> x")
    q.add_argument("--features", default="curve+logits", choices=["curve+logits", "curve",
                                                                  "logits"])
    q.add_argument("--folds", type=int, default=5, help="stratified CV folds")
    q.add_argument("--batch-size", type=int, default=64)
    q.add_argument("--pgd-eps", type=_fraction, default=16 / 255,
                   help="PGD L-inf radius in pixels (default 16/255, the shipped digits "
                        "models' threat model; the spec's ImageNet value is 4/255)")
    q.add_argument("--pgd-steps", type=int, default=10)
    q.add_argument("--pgd-step-size", type=_fraction, help="default eps / 4")
    _add_attack_args(q)
    add_distributed_args(q)
    q.set_defaults(func=cmd_detect)

    q = modes.add_parser("bypass", help="bypass the barrier of a real and an adversarial pair")
    _common(q, models=False)
    q.add_argument("--model", default="digits_resnet-normal")
    q.add_argument("--out", help="run directory (default runs/connectivity/bypass_<model>)")
    q.add_argument("--target-class", type=int, default=1)
    q.add_argument("--source-class", type=int, default=0,
                   help="class of the image the adversarial endpoint is made from")
    q.add_argument("--candidates", type=int, default=8, help="first test images of the class")
    q.add_argument("--selection", default="largest_gap", choices=["largest_gap",
                                                                  "lowest_loss"])
    q.add_argument("--points", type=int, default=1000, help="points on the primary path")
    q.add_argument("--segment-points", type=int, help="points per later segment "
                   "(default points // 2)")
    q.add_argument("--threshold", type=float, default=1e-3, help="connectivity threshold")
    q.add_argument("--max-depth", type=int, default=2, help="bypass rounds")
    q.add_argument("--mode", default="faithful", choices=["faithful", "exact"])
    q.add_argument("--bypass-steps", type=int, default=1024)
    _add_attack_args(q)
    q.set_defaults(func=cmd_bypass)

    q = modes.add_parser("synthetic", help="FVO inputs of an untrained network, bypass rounds")
    q.add_argument("--arch", default="resnet18", choices=["resnet18", "digits_resnet"])
    q.add_argument("--init-seed", type=int, default=0, help="seed of the random network")
    q.add_argument("--classes", type=int, nargs="+", default=[1])
    q.add_argument("--seeds", type=int, nargs="+", default=[0], help="FVO seeds per class")
    q.add_argument("--fvo-steps", type=int, default=8192)
    q.add_argument("--fvo-threshold", type=float, default=5e-4)
    q.add_argument("--free-steps", type=int, default=4096)
    q.add_argument("--points", type=int, default=200)
    q.add_argument("--threshold", type=float, default=0.0,
                   help="bypass segments with a gap above this (0: always, the authors' two "
                        "unconditional rounds)")
    q.add_argument("--max-depth", type=int, default=2)
    q.add_argument("--out", help="run directory (default runs/connectivity/synthetic_<arch>)")
    q.add_argument("--quick", action="store_true")
    q.add_argument("--quiet", action="store_true")
    q.set_defaults(func=cmd_synthetic)

