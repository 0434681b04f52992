"""`lst-jax connectivity {barrier,bypass,synthetic,detect}`: argument parsing and dispatch.

    lst-jax connectivity barrier [--models A B] [--root runs/connectivity] [--quick] ...
    lst-jax connectivity bypass [--model A] [--target-class 1] [--mode faithful|exact] ...
    lst-jax connectivity synthetic [--arch resnet18] [--classes 1] [--seeds 0] ...
    lst-jax connectivity detect [--models A B] [--attacks optimization pgd] [--quick] ...

barrier, detect and bypass take any model (registry name or checkpoint directory written by
`lst-jax convert`) whose input shape fits --data; class flags are checked against the
model's class count; --memory-budget plans the batches of path points and attack rows.
"""

from __future__ import annotations

import argparse
import sys
from fractions import Fraction

from lst_jax.utils.cliargs import add_data_options, add_preset_option, set_preset_selector

DIGITS_MODELS = ["digits_resnet-normal", "digits_resnet-linf"]

# What `--quick` sets (a smoke test in minutes on a CPU); explicit flags keep their values.
QUICK = {
    "barrier": dict(pairs_per_class=1, drop_per_class=0, points=21, attack_steps=40),
    "detect": dict(num_samples=40, points=21, attack_steps=40, pgd_steps=3),
    "bypass": dict(bypass_steps=20, points=21, attack_steps=40),
    "synthetic": dict(fvo_steps=30, free_steps=30, points=21),
}


def _fraction(text: str) -> float:
    """A float or a fraction such as 16/255."""
    try:
        return float(Fraction(text))
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(f"not a number or fraction: {text!r}") from None


def _attack_config(args, base):
    """`base` (the run config's default `AttackConfig`) with the parsed attack options."""
    return base.replace(steps=args.attack_steps, lr=args.attack_lr, tv_weight=args.attack_tv)


def _add_attack_args(p, base, mode):
    """The attack options, defaults from `base` (the run config's `AttackConfig`)."""
    g = p.add_argument_group("the paper's optimisation attack")
    _quick_option(g, mode, "--attack-steps", base.steps, type=int, help="max Adam steps")
    g.add_argument("--attack-lr", type=float, default=base.lr, help="Adam step size")
    g.add_argument("--attack-tv", type=float, default=base.tv_weight, help="TV weight")


def _quick_option(p, mode, flag, default, **kwargs):
    """An option that `--quick` sets (`QUICK[mode]`) unless it is given."""
    dest = flag[2:].replace("-", "_")
    return add_preset_option(p, flag, default=default, presets={"quick": QUICK[mode][dest]},
                             **kwargs)


def _quick_flag(p):
    p.add_argument("--quick", action="store_true",
                   help="tiny settings for a smoke test (minutes on a CPU): sets the options "
                        "marked '--quick' that are not given")
    set_preset_selector(p, lambda args: "quick" if args.quick else None)


def _common(p, models=True):
    if models:
        p.add_argument("--models", nargs="+", default=DIGITS_MODELS,
                       help="registry names or checkpoint directories")
        p.add_argument("--root", default="runs/connectivity",
                       help="directory of the per-model run directories and the combined "
                            "tables / figures (a finished run is reused, a partial one "
                            "resumed)")
    p.add_argument("--checkpoint", help="checkpoint root (default checkpoints/)")
    p.add_argument("--space", default="normalized", choices=["normalized", "pixel"],
                   help="where paths and optimisations live (authors: the model's normalised "
                        "tensor space)")
    if models:
        p.add_argument("--seed", type=int, default=0, help="pairs, attack targets, CV folds")
    p.add_argument("--memory-budget", help="per-device memory of one call of the path losses "
                   "and the optimisations, e.g. 2GiB (path points and attack rows planned "
                   "from XLA's memory analysis; default: fixed batches)")
    add_data_options(p)
    _quick_flag(p)
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _check_budget(args):
    if args.memory_budget is not None:
        from lst_jax.parallel.sharded import parse_bytes

        try:
            parse_bytes(args.memory_budget)
        except ValueError as e:
            raise ValueError(str(e).replace("memory_budget", "--memory-budget")) from None


def _run_models(args, unit, config, table_fn, name):
    """Runs (or reuses) the per-model unit for every model; writes `<name>.md/json`."""
    from lst_jax.data.reference import check_data_shape
    from lst_jax.jobs.connectivity.job import check_classes
    from lst_jax.jobs.rundir import RunDir
    from lst_jax.models.reference import resolve_model
    from lst_jax.parallel.distributed import initialize_from_args, is_main_process

    # every model (registry name or checkpoint directory) checked before the first one runs
    refs = [resolve_model(m, args.checkpoint) for m in args.models]
    for r in refs:
        check_data_shape(config.data, r.spec.input_size)
        if getattr(config, "classes", None) is not None:
            check_classes("--classes", config.classes, r.spec.num_classes)
    _check_budget(args)
    names = [r.name for r in refs]
    if len(set(names)) != len(names):
        raise ValueError(f"--models names a model twice: {args.models} are the models {names}")

    initialize_from_args(args)   # several processes: before anything touches a device
    main = is_main_process()
    summaries = {r.name: unit(r, config, args.root, checkpoint=args.checkpoint,
                              progress=not args.quiet and main,
                              memory_budget=args.memory_budget) for r in refs}
    if not main:
        return None
    root = RunDir(args.root)
    table = table_fn(summaries)
    root.write_text(f"{name}.md", table)
    root.write_json(f"{name}.json", summaries)
    return summaries, root, table


def barrier_config(args):
    """The `BarrierRunConfig` of parsed `connectivity barrier` arguments."""
    from lst_jax.jobs.connectivity.job import BarrierRunConfig

    return BarrierRunConfig(data=args.data_ref, split=args.data_ref.split,
                            pairs_per_class=args.pairs_per_class,
                            drop_per_class=args.drop_per_class, points=args.points,
                            classes=tuple(args.classes) if args.classes else None,
                            batch_size=args.batch_size,
                            attack=_attack_config(args, BarrierRunConfig().attack),
                            space=args.space, seed=args.seed)


def cmd_barrier(args) -> int:
    from lst_jax.jobs.connectivity.job import barrier_box_data, barrier_model_run, barrier_table
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
    from lst_jax.jobs.connectivity.job import DetectRunConfig

    pgd = PGDConfig(eps=args.pgd_eps, steps=args.pgd_steps,
                    step_size=args.pgd_step_size or args.pgd_eps / 4)
    return DetectRunConfig(data=args.data_ref, split=args.data_ref.split,
                           reference_split=args.reference_split,
                           num_samples=args.num_samples, points=args.points,
                           batch_size=args.batch_size, attacks=tuple(args.attacks),
                           attack=_attack_config(args, DetectRunConfig().attack), pgd=pgd,
                           detector=DetectorConfig(folds=args.folds), features=args.features,
                           space=args.space, seed=args.seed)


def cmd_detect(args) -> int:
    from lst_jax.jobs.connectivity.job import detect_model_run, detect_table
    from lst_jax.jobs.rundir import RunDir
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
    print(table)
    if not curves:
        notes = "; ".join(f"{m}, {name}: {e['note']}" for m, s in summaries.items()
                          for name, e in s["attacks"].items() if e.get("note"))
        print(f"wrote {root.root}/detect.md, detect.json; no detector was trained, so there "
              f"is no ROC figure ({notes or 'no attack succeeded'})")
        root.path("figures/detect_roc.png").unlink(missing_ok=True)   # an earlier run's
        print("lst-jax connectivity detect: error: no attack gave enough examples for the "
              "detector; raise --num-samples or lower --folds", file=sys.stderr)
        return 1
    roc_curves(curves, root.path("figures/detect_roc.png"))
    print(f"wrote {root.root}/detect.md, detect.json, figures/detect_roc.png")
    return 0


def bypass_config(args):
    """The `BypassRunConfig` of parsed `connectivity bypass` arguments."""
    from lst_jax.jobs.connectivity.demos import BypassRunConfig

    base = BypassRunConfig()
    return BypassRunConfig(target_class=args.target_class, source_class=args.source_class,
                           candidates=args.candidates, selection=args.selection,
                           points=args.points, segment_points=args.segment_points,
                           threshold=args.threshold, max_depth=args.max_depth,
                           bypass=base.bypass.replace(mode=args.mode, steps=args.bypass_steps),
                           attack=_attack_config(args, base.attack), space=args.space)


def cmd_bypass(args) -> int:
    from lst_jax.jobs.connectivity.demos import bypass_job

    cfg = bypass_config(args)
    _check_budget(args)
    out = bypass_job(args.model, cfg, args.out, checkpoint=args.checkpoint,
                     progress=not args.quiet, data=args.data_ref,
                     memory_budget=args.memory_budget)
    print((out / "summary.md").read_text())
    print(f"wrote {out}/ (summary.md/json, results.npz, figures/profiles.png, paths.png, "
          f"difference_*.png)")
    return 0


def synthetic_config(args):
    """The `SyntheticRunConfig` of parsed `connectivity synthetic` arguments."""
    from lst_jax.jobs.connectivity.demos import SyntheticRunConfig

    base = SyntheticRunConfig()
    return SyntheticRunConfig(arch=args.arch, init_seed=args.init_seed,
                              classes=tuple(args.classes), seeds=tuple(args.seeds),
                              fvo=base.fvo.replace(steps=args.fvo_steps,
                                                   threshold=args.fvo_threshold),
                              free=base.free.replace(steps=args.free_steps),
                              points=args.points, segment_points=args.points,
                              threshold=args.threshold, max_depth=args.max_depth)


def cmd_synthetic(args) -> int:
    from lst_jax.jobs.connectivity.demos import synthetic_job

    cfg = synthetic_config(args)
    out = synthetic_job(cfg, args.out, progress=not args.quiet)
    print((out / "rounds.md").read_text())
    print(f"wrote {out}/ (rounds.md, summary.json, fvo.npz, results.npz, figures/rounds_*.png)")
    return 0


def add_parser(sub) -> None:
    """Adds `connectivity` and its modes to the `lst-jax` subparsers (defaults: the run
    configs' own)."""
    from lst_jax.jobs.connectivity.demos import BypassRunConfig, SyntheticRunConfig
    from lst_jax.jobs.connectivity.job import BarrierRunConfig, DetectRunConfig
    from lst_jax.parallel.distributed import add_distributed_args

    p = sub.add_parser("connectivity", help="input-space mode connectivity (Vrabel et al.)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    modes = p.add_subparsers(dest="mode", required=True)

    cfg = BarrierRunConfig()
    q = modes.add_parser("barrier", help="barrier statistics, real-real vs real-adversarial")
    _common(q)
    q.add_argument("--classes", type=int, nargs="+",
                   help="classes of the model, 0..N-1 (default every class in the data)")
    _quick_option(q, "barrier", "--pairs-per-class", cfg.pairs_per_class, type=int,
                  help="real-real and real-adversarial pairs per class")
    _quick_option(q, "barrier", "--drop-per-class", cfg.drop_per_class, type=int,
                  help="pairs dropped per class by |L(A) - L(C)| (the authors' 2)")
    _quick_option(q, "barrier", "--points", cfg.points, type=int, help="points per path")
    q.add_argument("--batch-size", type=int, default=cfg.batch_size,
                   help="pairs per attack batch")
    _add_attack_args(q, cfg.attack, "barrier")
    add_distributed_args(q)
    q.set_defaults(func=cmd_barrier)

    cfg = DetectRunConfig()
    q = modes.add_parser("detect", help="attack + loss-curve detector -> AUROC, ROC")
    _common(q)
    q.add_argument("--attacks", nargs="+", default=list(cfg.attacks),
                   choices=["optimization", "pgd"])
    _quick_option(q, "detect", "--num-samples", cfg.num_samples, type=int,
                  help="clean test images (default all correct)")
    _quick_option(q, "detect", "--points", cfg.points, type=int,
                  help="points on the curve r -> x")
    q.add_argument("--reference-split",
                   help="split of the per-class references, the lowest-loss correct image "
                        "of each class (default: train where the data has splits; a "
                        "folder's own images otherwise)")
    q.add_argument("--features", default=cfg.features, choices=["curve+logits", "curve",
                                                                "logits"])
    q.add_argument("--folds", type=int, default=cfg.detector.folds,
                   help="stratified CV folds")
    q.add_argument("--batch-size", type=int, default=cfg.batch_size)
    q.add_argument("--pgd-eps", type=_fraction, default=cfg.pgd.eps,
                   help="PGD L-inf radius in pixels (the shipped digits models' threat "
                        "model; the spec's ImageNet value is 4/255)")
    _quick_option(q, "detect", "--pgd-steps", cfg.pgd.steps, type=int, help="PGD steps")
    q.add_argument("--pgd-step-size", type=_fraction, help="default eps / 4")
    _add_attack_args(q, cfg.attack, "detect")
    add_distributed_args(q)
    q.set_defaults(func=cmd_detect)

    cfg = BypassRunConfig()
    q = modes.add_parser("bypass", help="bypass the barrier of a real and an adversarial pair")
    _common(q, models=False)
    q.add_argument("--model", default="digits_resnet-normal",
                   help="registry name or checkpoint directory")
    q.add_argument("--out", help="run directory (default runs/connectivity/bypass_<model>)")
    q.add_argument("--target-class", type=int, default=cfg.target_class,
                   help="class of the pair, 0..N-1 for a model of N classes")
    q.add_argument("--source-class", type=int, default=cfg.source_class,
                   help="class of the image the adversarial endpoint is made from")
    q.add_argument("--candidates", type=int, default=cfg.candidates,
                   help="first images of the class scored; not given: 8 on the digits, "
                        "else the authors' 9 = 3N for N = 3")
    q.add_argument("--selection", default=cfg.selection, choices=["largest_gap",
                                                                   "lowest_loss"],
                   help="the real pair: largest linear barrier gap or the two lowest-loss "
                        "candidates (the authors'); not given: largest_gap on the digits, "
                        "lowest_loss elsewhere")
    _quick_option(q, "bypass", "--points", cfg.points, type=int,
                  help="points on the primary path")
    q.add_argument("--segment-points", type=int, help="points per later segment "
                   "(default points // 2)")
    q.add_argument("--threshold", type=float, default=cfg.threshold,
                   help="connectivity threshold")
    q.add_argument("--max-depth", type=int, default=cfg.max_depth, help="bypass rounds")
    q.add_argument("--mode", default=cfg.bypass.mode, choices=["faithful", "exact"])
    _quick_option(q, "bypass", "--bypass-steps", cfg.bypass.steps, type=int,
                  help="Adam steps of each bypass optimisation")
    _add_attack_args(q, cfg.attack, "bypass")
    q.set_defaults(func=cmd_bypass)

    cfg = SyntheticRunConfig()
    q = modes.add_parser("synthetic", help="FVO inputs of an untrained network, bypass rounds")
    q.add_argument("--arch", default=cfg.arch, choices=["resnet18", "digits_resnet"])
    q.add_argument("--init-seed", type=int, default=cfg.init_seed,
                   help="seed of the random network")
    q.add_argument("--classes", type=int, nargs="+", default=list(cfg.classes))
    q.add_argument("--seeds", type=int, nargs="+", default=list(cfg.seeds),
                   help="FVO seeds per class")
    _quick_option(q, "synthetic", "--fvo-steps", cfg.fvo.steps, type=int,
                  help="max Adam steps of feature visualisation")
    q.add_argument("--fvo-threshold", type=float, default=cfg.fvo.threshold,
                   help="FVO stops below this CE")
    _quick_option(q, "synthetic", "--free-steps", cfg.free.steps, type=int,
                  help="max Adam steps of a free barrier-point optimisation")
    _quick_option(q, "synthetic", "--points", cfg.points, type=int,
                  help="points per path and per bypass segment")
    q.add_argument("--threshold", type=float, default=cfg.threshold,
                   help="bypass segments with a gap above this (0: always, the authors' two "
                        "unconditional rounds)")
    q.add_argument("--max-depth", type=int, default=cfg.max_depth, help="bypass rounds")
    q.add_argument("--out", help="run directory (default runs/connectivity/synthetic_<arch>)")
    _quick_flag(q)
    q.add_argument("--quiet", action="store_true", help="no progress bars")
    q.set_defaults(func=cmd_synthetic)
