"""Shared figure helpers."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def save_png(fig: Figure, path, dpi: int = 100) -> Path:
    """Writes `fig` to `path` atomically (temporary file, then rename)."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"figure path must end in .png, got {str(path)!r}")
    if path.is_dir():
        raise ValueError(f"figure path {path} is a directory")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as e:
        raise ValueError(f"cannot write figure {path}: a parent path is not a directory "
                         f"({e})") from e
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        fig.savefig(tmp, dpi=dpi, format="png")
        os.replace(tmp, path)
    except BaseException:   # an interrupt leaves no partial file behind
        tmp.unlink(missing_ok=True)
        raise
    return path


def to_display(img: np.ndarray) -> np.ndarray:
    """(H, W, C) in [0, 1] -> an array imshow displays as-is (grey for C == 1)."""
    img = np.clip(np.asarray(img, np.float32), 0.0, 1.0)
    return img[..., 0] if img.shape[-1] == 1 else img
