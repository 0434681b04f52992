"""Counting XLA compilations: `compile_count()`, a context manager on jax.monitoring's public
compilation events.

Every program JAX builds for a device (a jitted function at a new shape/dtype/static setting, or
an eager op at a new shape) passes through one backend compilation, which JAX reports as the
monitoring event `/jax/core/compile/backend_compile_duration` (also on a persistent-cache hit, so
the count is the number of distinct programs, not of cache misses). The library's guarantee
"compiles once" (docs/scaling.md, "Compile once, stay on the device") is tested with this counter.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass, field

import jax

BACKEND_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"


@dataclass
class CompileCount:
    """Programs compiled inside a `compile_count()` block.

    Attributes:
        names: the module name of each compiled program, in order (e.g. "jit__evaluate_jit").
        seconds: total backend compile time.
    """

    names: list = field(default_factory=list)
    seconds: float = 0.0

    @property
    def total(self) -> int:
        """Number of programs compiled."""
        return len(self.names)

    def matching(self, substring: str) -> int:
        """Number of compiled programs whose module name contains `substring`."""
        return sum(substring in n for n in self.names)


_lock = threading.Lock()


@contextlib.contextmanager
def compile_count():
    """Counts the XLA programs compiled inside the block (all threads).

    >>> with compile_count() as c:
    ...     f(x); f(x)       # a jitted f: one program
    >>> c.total
    1

    Blocks may nest; each counts everything compiled while it is open.
    """
    count = CompileCount()

    def listener(event: str, duration: float, **kwargs) -> None:
        if event == BACKEND_COMPILE_EVENT:
            with _lock:
                count.names.append(str(kwargs.get("fun_name", "?")))
                count.seconds += float(duration)

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        yield count
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)


def ladder_size(n: int) -> int:
    """The smallest size `2**k` or `3 * 2**k` that is >= n (n >= 1): padding a batch to it
    costs at most half again the work and leaves at most 2 log2(N) distinct batch sizes, so
    at most that many compiled programs, for any data up to N rows."""
    if n < 1:
        raise ValueError(f"n must be a positive integer, got {n}")
    p = 1 << (int(n) - 1).bit_length()          # 2**k >= n
    return 3 * p // 4 if p >= 4 and 3 * p // 4 >= n else p
