"""Progress bars with rate and ETA: a thin wrapper over `tqdm.auto` (notebook widgets in
Jupyter, a text bar on stderr elsewhere)."""

from __future__ import annotations

import sys

from tqdm import auto as _tqdm_auto

# Logs and CI (stderr not a terminal): a line at most every 5 s, plus the last one.
NON_INTERACTIVE_INTERVAL = 5.0


def _interactive(stream) -> bool:
    """A terminal, or a Jupyter kernel (where `tqdm.auto` draws a widget)."""
    notebook = sys.modules.get("tqdm.notebook")
    if notebook is not None and issubclass(_tqdm_auto.tqdm, notebook.tqdm_notebook):
        return True
    return bool(getattr(stream, "isatty", None) and stream.isatty())


class Progress:
    """Progress over `total` units: `update(n)` after each chunk of finished work.

    Prints tqdm's `desc:  42%|####      | 168/400 [00:03<00:04, 52.1it/s]` (elapsed<ETA,
    rate) to `stream` (default stderr). A disabled bar prints nothing.
    """

    def __init__(self, total: int, desc: str = "", unit: str = "it", enabled: bool = True,
                 stream=None):
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.bar = _tqdm_auto.tqdm(
            total=int(total), desc=desc or None, unit=unit, disable=not enabled,
            file=self.stream,
            mininterval=0.1 if _interactive(self.stream) else NON_INTERACTIVE_INTERVAL)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def update(self, n: int = 1):
        self.bar.update(n)

    def write(self, text: str):
        """Prints a line without breaking the bar (nothing when the bar is disabled)."""
        if self.enabled:
            self.bar.write(text, file=self.stream)

    def close(self):
        self.bar.close()
