"""`lst-jax bench`: argument parsing and dispatch (the work is `lst_jax.bench.runner`)."""

from __future__ import annotations


def cmd_bench(args) -> int:
    from lst_jax.bench.runner import run

    return run(args)


def add_parser(sub) -> None:
    """Adds `bench` to the `lst-jax` subparsers."""
    from lst_jax.bench.runner import add_arguments as add_bench_arguments

    p = sub.add_parser("bench", help="lst_jax vs PyTorch side by side on the devices found "
                       "(LST, I-ASIDE, connectivity, hull grid; bench.json, bench.md)")
    add_bench_arguments(p)
    p.set_defaults(func=cmd_bench)
