"""Command-line helpers shared by every `lst-jax` subcommand: defaults shown in `--help`,
presets that fill only what the user did not give, and the closest names of a typo.

Presets (`--quick`, `--preset NAME`): an option that a preset changes is added with
`add_preset_option`, whose argparse default is None (= not given); `LstParser` fills every
such None after parsing, from the active preset when one is and the option has a value in it,
else from the base default. An explicit flag is never replaced. The `--help` text of such an
option shows its base default and each preset's value, derived from the same numbers.
"""

from __future__ import annotations

import argparse
import difflib
import re
from fractions import Fraction

_PRESETS = "_preset_options"      # namespace key: {dest: (base, {preset: value})}
_SELECTOR = "_active_preset"      # namespace key: callable(args) -> preset name or None


def format_default(value) -> str:
    """A default as a user would type it: `1e-07`, `16/255`, `0.5 1.0`, `on` / `off`."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        short = f"{value:g}"
        if float(short) == value:
            return short
        frac = Fraction(value).limit_denominator(10_000)
        if float(frac) == value:
            return f"{frac.numerator}/{frac.denominator}"
        return repr(value)
    if isinstance(value, (list, tuple)):
        return " ".join(format_default(v) for v in value)
    return str(value)


def add_preset_option(p, *flags, default, presets: dict, preset_flag: str = "--quick",
                      help: str = "", **kwargs):
    """Adds an option that presets may set: given -> kept; else the active preset's value,
    else `default`. `presets` maps preset names to values; `preset_flag` names the flag that
    selects them in the help text (`--quick`, or `--preset` for named presets)."""
    action = p.add_argument(*flags, default=None, help=help, **kwargs)
    table = p.get_default(_PRESETS)
    if table is None:
        table = {}
        p.set_defaults(**{_PRESETS: table})
    table[action.dest] = (default, dict(presets))
    shown = [f"default: {format_default(default)}" if default is not None else ""]
    if preset_flag == "--quick":
        shown += [f"--quick: {format_default(v)}" for v in presets.values()]
    else:
        shown += ["default: from " + preset_flag + ", " + ", ".join(
            f"{k} {format_default(v)}" for k, v in presets.items())]
    shown = "; ".join(s for s in shown if s)
    if shown:
        action.help = f"{help} ({shown})".strip().replace("%", "%%")
    return action


def set_preset_selector(p, selector) -> None:
    """`selector(args)` names the active preset of the parsed `args` (None: no preset)."""
    p.set_defaults(**{_SELECTOR: selector})


def resolve_presets(args):
    """Fills every preset option left None (not given) from the active preset or the base
    default; idempotent."""
    table = getattr(args, _PRESETS, None) or {}
    selector = getattr(args, _SELECTOR, None)
    active = selector(args) if selector else None
    for dest, (base, presets) in table.items():
        if getattr(args, dest, None) is None:
            setattr(args, dest, presets.get(active, base) if active else base)
    return args


def _walk(parser):
    yield parser
    for a in parser._actions:
        if isinstance(a, argparse._SubParsersAction):
            for sub in dict.fromkeys(a.choices.values()):
                yield from _walk(sub)


def option_actions(parser):
    """(subparser, action) of every optional argument that takes a value or is an on/off
    switch (`--x/--no-x`), all subcommands."""
    for p in _walk(parser):
        for a in p._actions:
            if a.option_strings and a.dest != "help" and (
                    a.nargs != 0 or isinstance(a, argparse.BooleanOptionalAction)):
                yield p, a


_STATES_DEFAULT = re.compile(r"\(default[: ]", re.I)


def show_defaults(parser) -> None:
    """Appends `(default: X)` to the help of every option (all subcommands) whose help does
    not already state its default; X is the argparse default, formatted as typed."""
    for p in _walk(parser):
        for a in p._actions:
            if not a.option_strings or a.dest == "help" or a.default is argparse.SUPPRESS:
                continue
            if a.nargs == 0 and not isinstance(a, argparse.BooleanOptionalAction):
                continue                      # store_true flags: off unless given
            help_text = a.help or ""
            if _STATES_DEFAULT.search(help_text) or a.default is None:
                continue
            shown = format_default(a.default).replace("%", "%%")
            a.help = f"{help_text} (default: {shown})".strip()


def closest(name: str, choices, n: int = 3) -> list[str]:
    """The names in `choices` closest to `name`: by spelling, and by their `_`/`-` separated
    words in any order (`resnet_digits` -> `digits_resnet-*`)."""
    choices = list(choices)

    def words(s):
        return " ".join(sorted(re.split(r"[_\-\s]+", s.lower())))

    def score(c):
        full = difflib.SequenceMatcher(None, name.lower(), c.lower()).ratio()
        mine, theirs = set(words(name).split()), set(words(c).split())
        overlap = len(mine & theirs) / max(len(mine), 1)
        return max(full, overlap * (0.6 + 0.4 * len(mine & theirs) / len(theirs)))

    ranked = sorted(choices, key=lambda c: -score(c))
    return [c for c in ranked if score(c) >= 0.6][:n]


class LstParser(argparse.ArgumentParser):
    """`argparse.ArgumentParser` whose parsed namespace has its presets resolved
    (`resolve_presets`) and its data options turned into `data_ref` (`add_data_options`),
    and whose subparsers are of the same class."""

    def parse_known_args(self, args=None, namespace=None):
        ns, rest = super().parse_known_args(args, namespace)
        if hasattr(ns, _DATA) and not hasattr(ns, "data_ref"):
            try:
                ns.data_ref = data_ref_from_args(ns)
            except ValueError as e:
                self.error(str(e))
        return resolve_presets(ns), rest


# --------------------------------------------------------------------------------- data
_DATA = "_data_options"           # namespace key: the extra --data choices of a command


def add_data_options(p, *, extra_kinds: tuple = (), default: str = "digits"):
    """The data options of every command that reads images (`--data`, `--folder`,
    `--data-dir`, `--split`, `--interpolation`, `--class-index`, `--label`); the parsed
    namespace gets `data_ref`, their `lst_jax.data.reference.DataRef` (None for an
    `extra_kinds` choice such as examples' `pool`), built once by `LstParser`."""
    from lst_jax.data.reference import DATA_KINDS, DEFAULT_SPLITS, INTERPOLATIONS

    g = p.add_argument_group("data (docs/data.md)")
    g.add_argument("--data", default=default, choices=list(DATA_KINDS) + list(extra_kinds),
                   help="digits: the shipped 32x32 digits; photos: scikit-image sample "
                   "photos (no labels); folder: --folder; cifar10, imagenet2012: prepared "
                   "tensorflow-datasets splits (--data-dir)")
    g.add_argument("--folder", help="image folder (with --data folder): one subfolder per "
                   "class (torchvision ImageFolder), or flat with --label")
    g.add_argument("--class-index", help="JSON {subfolder name: class} of an ImageFolder, "
                   "e.g. ImageNet's wnid -> index (default: sorted subfolder names, or their "
                   "integer names)")
    g.add_argument("--label", type=int, help="the class of every image of a flat --folder")
    g.add_argument("--data-dir", help="tensorflow-datasets data directory (cifar10, "
                   "imagenet2012; prepared data only, never downloaded)")
    g.add_argument("--split", help="data split (default: " + ", ".join(
        f"{k} {v}" for k, v in DEFAULT_SPLITS.items()) + ")")
    g.add_argument("--interpolation", default="bilinear", choices=list(INTERPOLATIONS),
                   help="resize filter of folder / imagenet2012 images (reference: bilinear)")
    p.set_defaults(**{_DATA: tuple(extra_kinds)})
    return g


def data_ref_from_args(args):
    """The `DataRef` of parsed data options (None when `--data` is an extra choice)."""
    from lst_jax.data.reference import DataRef

    if args.data in getattr(args, _DATA, ()):
        given = [f for f, v in (("--folder", args.folder), ("--class-index", args.class_index),
                                ("--label", args.label), ("--data-dir", args.data_dir),
                                ("--split", args.split)) if v is not None]
        if given:
            raise ValueError(f"{', '.join(given)} do not apply to --data {args.data}")
        return None
    return DataRef(kind=args.data, folder=args.folder, data_dir=args.data_dir,
                   split=args.split, interpolation=args.interpolation,
                   class_index=args.class_index, label=args.label)


def data_options_argv(ref) -> list[str]:
    """The command-line options that give `ref` (a `DataRef`; nothing for the defaults), for
    the command lines that reports print."""
    import dataclasses

    out = []
    for f in dataclasses.fields(ref):
        v = getattr(ref, f.name)
        if v != f.default:
            out += [("--data" if f.name == "kind" else "--" + f.name.replace("_", "-")), str(v)]
    return out
