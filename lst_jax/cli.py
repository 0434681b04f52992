"""`lst-jax` command line: one console command with subcommands.

    lst-jax examples [--model digits_resnet-normal] [--data digits|photos] [--out DIR] ...
    lst-jax models
    lst-jax convert NAME WEIGHTS [--out DIR] [--overwrite]
"""

from __future__ import annotations

import argparse
import json
import sys

from lst_jax.traversal.config import PRESETS, LSTConfig


def _add_lst_args(p: argparse.ArgumentParser):
    g = p.add_argument_group("traversal (defaults: the chosen --preset)")
    g.add_argument("--preset", default="paper", choices=sorted(PRESETS))
    g.add_argument("--step-size", type=float, help="eta, fraction of the residual per step")
    g.add_argument("--iters", type=int, help="number of iterations")
    g.add_argument("--pthresh", type=float, help="delta, allowed confidence drop")
    g.add_argument("--adv-pert", action=argparse.BooleanOptionalAction, default=None,
                   help="confidence-restoring adversarial term")
    g.add_argument("--adv-step-size", type=float, help="eps of the adversarial term")
    g.add_argument("--log-step", type=int, help="logging / progress chunk period")
    g.add_argument("--noise", type=float, help="random-start amplitude (default 2/255)")


def config_from_args(args) -> LSTConfig:
    cfg = PRESETS[args.preset]
    changes = {f: getattr(args, f) for f in ("step_size", "iters", "pthresh", "adv_pert",
                                             "adv_step_size", "log_step", "noise")
               if getattr(args, f, None) is not None}
    return cfg.replace(**changes)


def cmd_examples(args) -> int:
    from lst_jax.evaluation.jobs import examples_job

    out = examples_job(model=args.model, data=args.data, k=args.k,
                       config=config_from_args(args), seed=args.seed, out=args.out,
                       classes=args.classes, photos=args.photos, checkpoint=args.checkpoint,
                       progress=not args.quiet)
    summary = json.loads((out / "summary.json").read_text())["aggregate"]
    print(json.dumps(summary, indent=2))
    print(f"wrote {out}/summary.md and {out}/figures/examples_grid.png")
    return 0


def cmd_models(args) -> int:
    from lst_jax.models.registry import REGISTRY, checkpoint_metadata, checkpoint_path

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
    if any(r[4] == "no" for r in rows):
        print("\nmissing checkpoints: `lst-jax convert <name> <PyTorch weights file>` "
              "(README, 'Model zoo and converters')")
    return 0


def cmd_convert(args) -> int:
    import shlex

    from lst_jax.convert.job import convert_file

    command = " ".join(["lst-jax convert", shlex.quote(args.name), shlex.quote(args.weights)]
                       + (["--out", shlex.quote(args.out)] if args.out else []))
    print(convert_file(args.name, args.weights, args.out, overwrite=args.overwrite,
                       command=command))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lst-jax", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("examples", help="K x K LST examples grid (the main job)")
    p.add_argument("--model", default="digits_resnet-normal", help="registry name")
    p.add_argument("--data", default="digits", choices=["digits", "photos"])
    p.add_argument("--k", type=int, default=5, help="number of images (sources = targets)")
    p.add_argument("--classes", type=int, nargs="+", help="digits classes (default 0..k-1)")
    p.add_argument("--photos", nargs="+", help="sample photo names (with --data photos)")
    p.add_argument("--checkpoint", help="checkpoint directory or root (default checkpoints/)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="run directory (default runs/examples_<model>_<data>)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_lst_args(p)
    p.set_defaults(func=cmd_examples)

    p = sub.add_parser("models", help="list the model registry and checkpoint availability")
    p.add_argument("--checkpoints", help="checkpoint root (default checkpoints/)")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("convert", help="convert PyTorch weights to an orbax checkpoint",
                       description="Convert a PyTorch weights file (.safetensors, or .pth/.pt "
                       "read with torch.load(weights_only=True)) for a registry model into an "
                       "orbax checkpoint with metadata.json; prints the parameter count and "
                       "a logits check on a fixed photo.")
    p.add_argument("name", help="registry name (see `lst-jax models`)")
    p.add_argument("weights", help="PyTorch weights file")
    p.add_argument("--out", help="checkpoint directory (default <checkpoints>/<name>)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing checkpoint")
    p.set_defaults(func=cmd_convert)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as e:
        print(f"lst-jax {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
