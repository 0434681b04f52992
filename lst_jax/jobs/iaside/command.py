"""`lst-jax iaside`: argument parsing and dispatch (the work is `lst_jax.jobs.iaside.job`).

    lst-jax iaside --models A [B ...] [--data digits] [--k K] [--bands 8] [--fill random]
"""

from __future__ import annotations

from lst_jax.utils.cliargs import add_data_options


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


def add_parser(sub) -> None:
    """Adds `iaside` to the `lst-jax` subparsers (defaults: `IasideConfig`'s)."""
    from lst_jax.jobs.iaside.job import IasideConfig
    from lst_jax.parallel.distributed import add_distributed_args

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
    add_distributed_args(p)
    p.set_defaults(func=cmd_iaside)
