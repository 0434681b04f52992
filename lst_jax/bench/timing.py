"""Timing for `lst-jax bench`: a wall-clock budget kept as the suite goes, synchronised
timers, interleaved repetitions with per-repetition ratios."""

from __future__ import annotations

import statistics
import time


class BudgetExhausted(Exception):
    """Raised inside a workload when the remaining budget cannot pay for its next phase."""


class Budget:
    """Seconds left of `total` since construction (None: unlimited).

    `check(need, what)` raises `BudgetExhausted` when fewer than `need` seconds remain, so a
    workload stops before a phase it cannot finish; the reason is recorded as a skip.
    """

    def __init__(self, total: float | None):
        self.total = total
        self.start = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def remaining(self) -> float:
        return float("inf") if self.total is None else self.total - self.elapsed()

    def check(self, need: float, what: str) -> None:
        left = self.remaining()
        if left < need:
            raise BudgetExhausted(f"{what}: needs ~{need:.0f} s, {max(left, 0):.0f} s of the "
                                  f"budget left")

    def reps(self, planned: int, seconds_per_rep: float, reserve: float = 0.0) -> int:
        """How many of `planned` repetitions of `seconds_per_rep` fit (at least 1 if one
        fits, else 0)."""
        left = self.remaining() - reserve
        if self.total is None or seconds_per_rep <= 0:
            return planned
        return max(0, min(planned, int(left // seconds_per_rep)))


def timed(fn, sync=None):
    """(seconds, result) of `fn()`; `sync(result)` (e.g. `jax.block_until_ready` or
    `torch.cuda.synchronize`) runs inside the timed region so queued device work counts."""
    t = time.perf_counter()
    out = fn()
    if sync is not None:
        sync(out)
    return time.perf_counter() - t, out


def median(values):
    v = [x for x in values if x is not None]
    return statistics.median(v) if v else None


def interleave(jobs: dict, reps: int, log=None) -> dict:
    """Times every job of `{name: fn}` once per repetition, alternating the order between
    repetitions (so that slow drifts of a shared machine's load cancel in the ratios).
    `fn()` must return after its device work finished (synchronise inside).

    Returns {name: [seconds per repetition]}.
    """
    names = list(jobs)
    times = {k: [] for k in names}
    for r in range(reps):
        for k in (names if r % 2 == 0 else names[::-1]):
            times[k].append(timed(jobs[k])[0])
        if log is not None:
            log(f"    rep {r + 1}/{reps}: " + ", ".join(f"{k} {v[-1]:.3f} s"
                                                       for k, v in times.items()))
    return times


def ratio(times: dict, a: str, b: str):
    """Median over repetitions of times[a] / times[b] (b's speed over a's)."""
    return median([ta / tb for ta, tb in zip(times[a], times[b])])
