"""`lst-jax profile`: argument parsing and dispatch (the work is `lst_jax.jobs.profile`).

    lst-jax profile [--models A B ...] [--preset quick|paper] [--baseline NAME]
                    [--analyses ...] [--num-images N] [DATA] [--out DIR]
"""

from __future__ import annotations

from lst_jax.utils.cliargs import add_data_options


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


def add_parser(sub) -> None:
    """Adds `profile` to the `lst-jax` subparsers."""
    from lst_jax.jobs.profile.analyses import ANALYSES
    from lst_jax.models.registry import DIGITS_LADDER
    from lst_jax.parallel.distributed import add_distributed_args

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
