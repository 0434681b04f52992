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
import os
import sys

from lst_jax.utils.cliargs import LstParser, show_defaults


def build_parser() -> argparse.ArgumentParser:
    """The `lst-jax` parser: each subcommand's options come from its own command module
    (`lst_jax/jobs/<method>/command.py`, `lst_jax/models/command.py`,
    `lst_jax/convert/command.py`, `lst_jax/bench/command.py`)."""
    from lst_jax.bench import command as bench
    from lst_jax.convert import command as convert
    from lst_jax.jobs.connectivity import command as connectivity
    from lst_jax.jobs.iaside import command as iaside
    from lst_jax.jobs.lst import command as lst
    from lst_jax.jobs.profile import command as profile
    from lst_jax.models import command as models

    parser = LstParser(prog="lst-jax", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--matmul-precision", default="default",
                        choices=("default", "high", "highest"),
                        help="float32 matmul/convolution precision of every program (JAX's "
                        "jax_default_matmul_precision; 'default': TF32 on recent NVIDIA GPUs, "
                        "bfloat16 passes on TPUs, full float32 on CPUs; 'highest': full float32 "
                        "everywhere, as the parity tests; docs/scaling.md)")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (lst.add_parser, iaside.add_parser, models.add_parser, convert.add_parser,
                models.add_migrate_parser, profile.add_parser, connectivity.add_parser,
                bench.add_parser):
        add(sub)
    show_defaults(parser)
    return parser


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


def run() -> None:
    """The `lst-jax` program: `main`, then exit with its status. After an interrupt (status
    130) the process ends without the interpreter's teardown, as after a `ProcessFailure`:
    every result is already on disk (atomic files) and the run directory's lock goes with
    the process, while tearing down XLA's runtime with an interrupted program's buffers
    still referenced can crash (a segmentation fault, exit 139, seen when Ctrl-C stops
    `profile` inside its robustness analysis)."""
    status = main()
    if status == 130:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    sys.exit(status)


if __name__ == "__main__":
    run()
