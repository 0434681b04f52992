"""The examples grid: LST output of every (source, target) pair with its confidence."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from matplotlib.patches import Rectangle

from lst_jax.plots.common import new_figure, save_png, to_display


def plot_examples_grid(outputs: np.ndarray, conf: np.ndarray, path,
                       names: Sequence[str] | None = None, title: str | None = None,
                       cell: float = 1.6):
    """Grid figure: row i = target i, column j = source j, cell = LST output of j toward i.

    The cell shows the source-class confidence of its image underneath; the diagonal holds the
    clean images (outlined in red).

    Shape:
        outputs: (K, K, H, W, C) in [0, 1]; conf: (K, K).
    """
    outputs, conf = np.asarray(outputs), np.asarray(conf)
    if outputs.ndim != 5 or outputs.shape[0] != outputs.shape[1]:
        raise ValueError(f"outputs must have shape (K, K, H, W, C), got {outputs.shape}")
    if conf.shape != outputs.shape[:2]:
        raise ValueError(f"conf must have shape {outputs.shape[:2]}, got {conf.shape}")
    k = outputs.shape[0]
    names = list(names) if names is not None else [str(i) for i in range(k)]
    fig = new_figure(cell * k + 1.0, cell * k + 1.2 + (0.3 if title else 0.0))
    axes = fig.subplots(k, k, squeeze=False)
    for i in range(k):
        for j in range(k):
            ax = axes[i, j]
            ax.imshow(to_display(outputs[i, j]), cmap="gray", vmin=0, vmax=1,
                      interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_xlabel(f"p={conf[i, j]:.3f}", fontsize=9, labelpad=2)
            if i == j:
                ax.add_patch(Rectangle((0, 0), 1, 1, transform=ax.transAxes, fill=False,
                                       edgecolor="red", linewidth=3, clip_on=False))
            if i == 0:
                ax.set_title(f"source {names[j]}", fontsize=9)
            if j == 0:
                ax.set_ylabel(f"target {names[i]}", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_png(fig, path)
