"""`lst-jax bench`: the suite runner (budget, per-workload error capture, reports, signals)."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
import traceback

from lst_jax.bench.plan import SUITES, format_plan, suite
from lst_jax.bench.timing import Budget, BudgetExhausted

DEFAULT_BUDGET = {"quick": None, "device": 360.0, "full": None}
# Seconds of budget a workload needs before it starts on an accelerator (compilation of the
# ImageNet-size programs dominates); on the CPU the quick suite starts whatever fits.
MIN_START_S = {"resnet50": 60.0, "deit_small": 60.0, "wrn28_10": 45.0, "connectivity": 90.0}
MIN_START_DEFAULT_S = 20.0


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--suite", default="quick", choices=SUITES,
                   help="quick: tiny, tens of seconds on a CPU; device: a short GPU/TPU loan "
                        "under --budget, most important first; full: everything at full size")
    p.add_argument("--out", default=None, help="report directory (bench.json, bench.md; "
                   "default runs/bench_<suite>)")
    p.add_argument("--budget", type=float, default=None,
                   help="wall-clock seconds for the whole suite, compilation included "
                        "(default: 360 for --suite device, none otherwise)")
    p.add_argument("--dry-run", action="store_true",
                   help="print the plan (workloads, sizes, batch sizes, reps) and exit")
    p.add_argument("--only", nargs="+", metavar="TEXT",
                   help="run only the workloads whose name (e.g. 'lst resnet50 float32') "
                        "contains one of these")
    p.add_argument("--tf32", action="store_true",
                   help="allow TF32 float32 matmuls/convolutions on both sides (default: "
                        "full float32 on both)")
    p.add_argument("--torch-threads", type=int, help="PyTorch CPU threads (default: torch's)")


class _Terminated(BaseException):
    pass


def _on_sigterm(signum, frame):
    raise _Terminated("SIGTERM")


def _disagrees(r: dict) -> bool:
    return any(isinstance(v, dict) and v.get("ok") is False
               for k, v in r.items() if k.endswith("agreement"))


def _headline(r: dict) -> str:
    for k in ("jax_over_torch", "torch_over_jax", "speedup_over_float32", "efficiency"):
        if r.get(k) is not None:
            return f"{k} {r[k]:.2f}"
    return ""


def _release_torch_memory(dev) -> None:
    """Returns PyTorch's cached CUDA blocks, so that JAX (which allocates on demand here) can
    use them in the next workload."""
    if dev is not None and dev.type == "cuda":
        import gc

        import torch

        gc.collect()
        torch.cuda.empty_cache()


def run(args, log=None) -> int:
    """Runs `args.suite`; returns the exit status (0 ok, 1 a disagreement or an error)."""
    log = log or (lambda s: print(s, flush=True))
    # JAX and PyTorch share the accelerator: no preallocation of 75% of its memory by JAX
    # (read when the backend starts, i.e. at the first device query below).
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    from lst_jax.bench.environment import machine_info, set_precision, summary_line, torch_device

    machine = machine_info()
    log(summary_line(machine))
    budget_s = args.budget if args.budget is not None else DEFAULT_BUDGET[args.suite]
    if budget_s is not None and budget_s <= 0:
        raise ValueError(f"--budget must be positive, got {budget_s}")
    memory = machine["jax_device_memory_bytes"]
    accel = machine["jax_backend"] != "cpu"
    plan = [w.resolved(memory) for w in suite(args.suite)]
    if args.only:
        plan = [(w, why) for w, why in plan if any(t in w.name for t in args.only)]
        if not plan:
            raise ValueError(f"--only {' '.join(args.only)} matches no workload of the "
                             f"{args.suite} suite (dry-run lists them)")
    log(format_plan(plan, budget_s, machine["jax_backend"]))
    if args.dry_run:
        return 0

    from lst_jax.bench.cases import make_case
    from lst_jax.bench.report import Writer
    from lst_jax.bench.workloads import connectivity, hull, iaside, lst
    from lst_jax.bench.workloads.common import Context

    runners = {"lst": lst.run, "iaside": iaside.run, "connectivity": connectivity.run,
               "hull": hull.run}
    precision = set_precision(args.tf32)
    dev = torch_device()
    if dev is not None and args.torch_threads:
        import torch

        torch.set_num_threads(args.torch_threads)
        machine["torch_threads"] = args.torch_threads
    out = args.out or os.path.join("runs", f"bench_{args.suite}")
    writer = Writer(out)
    budget = Budget(budget_s)
    ctx = Context(budget=budget, log=log, torch_device=dev, memory_bytes=memory)
    report = {"suite": args.suite, "budget_s": budget_s, "status": "running",
              "machine": machine, "precision": precision,
              "plan": [{"name": w.name, "sizes": w.sizes(), "batch_reason": why,
                        "params": w.params} for w, why in plan],
              "results": [], "elapsed_s": 0.0}

    def save(status=None):
        if status:
            report["status"] = status
        report["elapsed_s"] = budget.elapsed()
        writer.write(report)

    save()
    old = signal.signal(signal.SIGTERM, _on_sigterm)
    old_int = signal.signal(signal.SIGINT, signal.default_int_handler)   # also when inherited
    # as ignored (a background job): Ctrl-C / SIGINT writes the partial reports too
    cases = {}
    r, t0 = {}, time.perf_counter()
    try:
        for i, (w, why) in enumerate(plan, 1):
            r = {"name": w.name, "kind": w.kind, "model": w.model, "dtype": w.dtype,
                 "batch_reason": why}
            need = (MIN_START_S.get(w.model, MIN_START_S.get(w.kind, MIN_START_DEFAULT_S))
                    if accel else 0.0)
            t0 = time.perf_counter()
            try:
                budget.check(max(need, 1e-9), "start")
                log(f"[{i}/{len(plan)}] {w.name}: {w.sizes()}")
                if w.model not in cases:
                    cases[w.model] = make_case(w.model)
                r.update(runners[w.kind](w, cases[w.model], ctx))
                r["status"] = ("DISAGREE" if _disagrees(r) else
                               "ok" if r.get("speed_reported") else "skipped")
            except BudgetExhausted as e:
                r.update(status="skipped", skipped=f"budget: {e}")
            except Exception as e:   # recorded; the suite goes on
                tb = traceback.format_exc().strip().splitlines()
                r.update(status="error", error={"type": type(e).__name__,
                                                "message": str(e)[:2000],
                                                "traceback": tb[-12:]})
            r["seconds"] = time.perf_counter() - t0
            _release_torch_memory(dev)
            report["results"].append(r)
            save()
            detail = (r.get("skipped") if r["status"] == "skipped" else
                      f"{r['error']['type']}: {r['error']['message'][:200]}"
                      if r["status"] == "error" else _headline(r))
            log(f"[{i}/{len(plan)}] {w.name}: {r['status']} {detail} ({r['seconds']:.0f} s; "
                f"budget left {budget.remaining():.0f} s)")
        save("done")
    except (KeyboardInterrupt, _Terminated) as e:
        why = "SIGTERM" if isinstance(e, _Terminated) else "SIGINT"
        if r.get("name") and not any(x is r for x in report["results"]):   # in progress
            report["results"].append({**r, "status": "interrupted",
                                      "seconds": time.perf_counter() - t0})
        save(f"interrupted ({why})")
        log(f"interrupted: partial reports in {out}")
        return 130 if isinstance(e, KeyboardInterrupt) else 143
    finally:
        signal.signal(signal.SIGTERM, old)
        signal.signal(signal.SIGINT, old_int)
    log(f"wrote {os.path.join(out, 'bench.json')} and bench.md")
    bad = [r["name"] for r in report["results"] if r["status"] in ("DISAGREE", "error")]
    if bad:
        log(f"bench: {len(bad)} workload(s) disagreed or failed: {', '.join(bad)}")
        return 1
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="lst-jax bench")
    add_arguments(p)
    try:
        return run(p.parse_args(argv))
    except ValueError as e:
        print(f"lst-jax bench: error: {e}", file=sys.stderr)
        return 2
