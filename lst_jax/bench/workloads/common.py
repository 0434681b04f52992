"""What every workload shares: the run context, compiled-program memory, batch fitting."""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp

from lst_jax.bench.timing import Budget, interleave, timed


@dataclasses.dataclass
class Context:
    """State of one suite run.

    Attributes:
        budget: the suite's time budget.
        log: progress printer.
        torch_device: PyTorch device (None without torch).
        memory_bytes: the JAX device's memory limit (None on the CPU).
        cache: programs and results shared between workloads (keyed by workload kind,
            model, batch, dtype), so that a bfloat16 variant reuses the float32 program.
        torch_compile_estimate_s: budget needed before starting a `torch.compile`.
    """

    budget: Budget
    log: Callable[[str], None]
    torch_device: Any = None
    memory_bytes: int | None = None
    cache: dict = dataclasses.field(default_factory=dict)
    torch_compile_estimate_s: float = 90.0


def with_dtype(model_fn, dtype: str):
    """`model_fn` computing in `dtype` ("float32" / "bfloat16")."""
    if dtype == "float32":
        return model_fn
    return dataclasses.replace(model_fn, compute_dtype=jnp.dtype(dtype))


def memory_profile(compiled) -> dict:
    """XLA's buffer assignment of a compiled program, in bytes (empty if unknown)."""
    try:
        ma = compiled.memory_analysis()
    except Exception:   # backends without memory analysis
        return {}
    if ma is None:
        return {}
    out = {k: int(getattr(ma, f"{k}_size_in_bytes", 0)) for k in
           ("argument", "output", "temp", "alias", "generated_code")}
    out["peak"] = out["argument"] + out["output"] + out["temp"] - out["alias"]
    return out


def aot(fn, *args, **kw):
    """(compiled, seconds): `fn.lower(*args, **kw).compile()` of a jitted function."""
    t = time.perf_counter()
    compiled = fn.lower(*args, **kw).compile()
    return compiled, time.perf_counter() - t


def block(x):
    return jax.block_until_ready(x)


def time_jobs(ctx: Context, jobs: dict, reps: int, res: dict, *, unwarmed=(),
              unwarmed_s: float = 0.0):
    """Warms every job up (one untimed call; `unwarmed` jobs excepted, their time given as
    `unwarmed_s`), then times as many of `reps` interleaved repetitions as the budget allows.

    Records `reps`, `times_s` and `speed_reported` in `res`; returns the times ({name:
    [seconds]}) or None when not one repetition fits (`res["skipped"]` says so).
    """
    one = unwarmed_s + sum(timed(f)[0] for k, f in jobs.items() if k not in unwarmed)
    n = ctx.budget.reps(reps, one)
    res["reps"] = n
    if n == 0:
        res.update(speed_reported=False, skipped="budget: no time for one timed repetition")
        return None
    times = interleave(jobs, n, ctx.log)
    res.update(times_s=times, speed_reported=True)
    return times
