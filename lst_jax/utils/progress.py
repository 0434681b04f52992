"""A dependency-free progress bar with rate and ETA, written to stderr."""

from __future__ import annotations

import sys
import time


def _fmt_time(seconds: float) -> str:
    if seconds != seconds or seconds == float("inf"):
        return "?"
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h:d}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


class Progress:
    """Progress over `total` units: `update(n)` after each chunk of finished work.

    Prints `desc  42% |#####     | 168/400 it [00:03<00:04, 52.1 it/s]`. Disabled bars cost nothing.
    """

    def __init__(self, total: int, desc: str = "", unit: str = "it", enabled: bool = True,
                 stream=None, width: int = 24):
        self.total, self.desc, self.unit, self.enabled = int(total), desc, unit, enabled
        self.stream = stream if stream is not None else sys.stderr
        self.width = width
        self.done = 0
        self.start = time.perf_counter()
        self._tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self._last_print = 0.0

    def __enter__(self):
        self._render(force=True)
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def rate(self) -> float:
        elapsed = time.perf_counter() - self.start
        return self.done / elapsed if elapsed > 0 else float("nan")

    def update(self, n: int = 1):
        self.done += n
        self._render()

    def _render(self, force: bool = False):
        if not self.enabled:
            return
        now = time.perf_counter()
        # Non-interactive streams (logs, CI) get a line at most every 5 s, plus the last one.
        if not self._tty and not force and self.done < self.total and now - self._last_print < 5.0:
            return
        self._last_print = now
        elapsed = now - self.start
        frac = self.done / self.total if self.total else 1.0
        filled = int(self.width * frac)
        rate = self.done / elapsed if elapsed > 0 and self.done else float("nan")
        eta = (self.total - self.done) / rate if rate == rate and rate > 0 else float("nan")
        rate_s = f"{rate:.1f}" if rate == rate else "?"
        line = (f"{self.desc} {100 * frac:3.0f}% |{'#' * filled}{' ' * (self.width - filled)}| "
                f"{self.done}/{self.total} {self.unit} [{_fmt_time(elapsed)}<{_fmt_time(eta)}, "
                f"{rate_s} {self.unit}/s]")
        end = "\r" if self._tty and self.done < self.total else "\n"
        self.stream.write(line + end)
        self.stream.flush()

    def close(self):
        if self.enabled and self._tty and self.done < self.total:
            self.stream.write("\n")
            self.stream.flush()
