"""`lst-jax convert`: argument parsing and dispatch (the work is `lst_jax.convert.job`).

    lst-jax convert NAME WEIGHTS [--out DIR] [--overwrite]
    lst-jax convert WEIGHTS --arch ARCH [--num-classes N] [--input-size S]
                    [--normalization imagenet|cifar10|none | --mean a,b,c --std a,b,c]
                    [--labels imagenet|cifar10|digits|FILE] [--name NAME] [--layout L]
                    [--transform-input/--no-transform-input] [--out DIR] [--overwrite]
"""

from __future__ import annotations

import argparse

SHAPE_OPTIONS = ("num_classes", "input_size", "normalization", "mean", "std", "labels",
                 "name_", "layout", "transform_input")


def cmd_convert(args) -> int:
    import shlex

    from lst_jax.convert.job import convert_arch_file, convert_file

    given = [a for a in SHAPE_OPTIONS if getattr(args, a) is not None]
    if args.arch is None:
        if args.weights is None:
            raise ValueError("give a registry NAME and the WEIGHTS file (`lst-jax convert "
                             "resnet18-normal r18.pth`), or WEIGHTS with --arch ARCH for weights "
                             "the registry does not name (`lst-jax convert r18.pth --arch "
                             "resnet18 --num-classes 10`)")
        if given:
            raise ValueError(f"--{given[0].strip('_').replace('_', '-')} describes a model of "
                             "your own: "
                             "it needs --arch (a registry NAME fixes the model's shape)")
        command = " ".join(["lst-jax convert", shlex.quote(args.name),
                            shlex.quote(args.weights)]
                           + (["--out", shlex.quote(args.out)] if args.out else []))
        print(convert_file(args.name, args.weights, args.out, overwrite=args.overwrite,
                           command=command))
        return 0
    if args.weights is not None:
        raise ValueError(f"with --arch give only the WEIGHTS file, not a registry name too "
                         f"(got {args.name!r} and {args.weights!r})")
    parts = ["lst-jax", "convert", args.name, "--arch", args.arch]
    for a in SHAPE_OPTIONS + ("out",):
        value, flag = getattr(args, a), f"--{a.strip('_').replace('_', '-')}"
        if isinstance(value, bool):
            parts.append(flag if value else f"--no-{flag[2:]}")
        elif value is not None:
            parts += [flag, str(value)]
    summary = convert_arch_file(args.name, args.arch, **convert_shape_options(args),
                                out=args.out, overwrite=args.overwrite,
                                command=shlex.join(parts))
    print(summary)
    print(f"use it as --model {summary.path} (every command), or as --model {summary.name} "
          "while it lies under the checkpoint root")
    return 0


def convert_shape_options(args) -> dict:
    """The keyword arguments of `convert_arch_file` from parsed `convert --arch` options."""
    from lst_jax.convert.shapes import parse_channels
    from lst_jax.models.wrapper import Normalization

    normalization = args.normalization
    if (args.mean is None) != (args.std is None):
        raise ValueError("--mean and --std go together")
    if args.mean is not None:
        if normalization is not None:
            raise ValueError("give --normalization or --mean/--std, not both")
        std = parse_channels(args.std, "--std")
        if min(std) <= 0:
            raise ValueError(f"--std must be positive, got {args.std}")
        normalization = Normalization(parse_channels(args.mean, "--mean"), std)
    return dict(num_classes=args.num_classes, input_size=args.input_size,
                normalization=normalization, labels=args.labels, name=args.name_,
                layout=args.layout or "", transform_input=args.transform_input)


def add_parser(sub) -> None:
    """Adds `convert` to the `lst-jax` subparsers."""
    from lst_jax.convert.shapes import CONVERTIBLE, LABEL_PRESETS, NORMALIZATIONS

    p = sub.add_parser("convert", help="convert PyTorch weights to an orbax checkpoint",
                       description="Convert a PyTorch weights file (.safetensors, or .pth/.pt "
                       "read with torch.load(weights_only=True)) into an orbax checkpoint "
                       "with metadata.json; prints the parameter count and a logits check on "
                       "a fixed photo. Two forms: `convert NAME WEIGHTS` for a registry model, "
                       "`convert WEIGHTS --arch ARCH [--num-classes N] [--input-size S] ...` "
                       "for weights of a zoo architecture the registry does not name (the "
                       "checkpoint directory is then a --model of every command).",
                       usage="lst-jax convert NAME WEIGHTS [--out DIR] [--overwrite]\n"
                             "       lst-jax convert WEIGHTS --arch ARCH [--num-classes N] "
                             "[--input-size S] [--normalization P | --mean M --std S] "
                             "[--labels L] [--name NAME] [--out DIR] [--overwrite]")
    p.add_argument("name", metavar="NAME|WEIGHTS",
                   help="registry name (see `lst-jax models`), or with --arch the weights file")
    p.add_argument("weights", nargs="?", metavar="WEIGHTS", help="PyTorch weights file")
    p.add_argument("--out", help="checkpoint directory (default <checkpoints>/<name>)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing checkpoint")
    g = p.add_argument_group("a model the registry does not name (--arch)")
    g.add_argument("--arch", choices=CONVERTIBLE, help="zoo architecture of the weights")
    g.add_argument("--num-classes", type=int, help="classifier outputs (default: read from "
                   "the weights; must agree with them)")
    g.add_argument("--input-size", type=int, help="side of the square input (default 224; "
                   "32 for wrn*)")
    g.add_argument("--normalization", choices=sorted(NORMALIZATIONS),
                   help="input normalisation preset (default: the file's own normaliser, else "
                   "imagenet; none for wrn*)")
    g.add_argument("--mean", help="per-channel mean, e.g. 0.5,0.5,0.5 (with --std)")
    g.add_argument("--std", help="per-channel std, e.g. 0.5,0.5,0.5 (with --mean)")
    g.add_argument("--labels", help=f"label set: {', '.join(LABEL_PRESETS)}, or a file of "
                   "class names (one a line, or a JSON list); default imagenet for 1000 "
                   "classes, cifar10 for 10 classes at 32x32, else the class indices")
    g.add_argument("--name", dest="name_", metavar="NAME", help="the model's name in runs "
                   "and tables (default: the weights file's name without extension)")
    g.add_argument("--layout", choices=["timm", "torchvision"],
                   help="state-dict layout of a ViT file (default timm)")
    g.add_argument("--transform-input", action=argparse.BooleanOptionalAction,
                   help="googlenet: torchvision's transform_input (default on, as its "
                   "pretrained weights; off for a googlenet(num_classes=N) of your own)")
    p.set_defaults(func=cmd_convert)
