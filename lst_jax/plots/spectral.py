"""I-ASIDE figure: the spectral importance distributions of several models side by side."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from lst_jax.plots.common import new_figure, save_png


def plot_importance(rows: Sequence[tuple], path, title: str = ""):
    """Grouped bars: one group per frequency band (low to high), one bar per model.

    Args:
        rows: `(label, distribution, score)` per model; the legend shows the score.

    Shape:
        distribution: (M,) for every row (the same M).
    """
    if not rows:
        raise ValueError("rows must hold at least one model")
    dists = [np.asarray(d, np.float64) for _, d, _ in rows]
    m = dists[0].shape[0]
    if any(d.shape != (m,) for d in dists):
        raise ValueError(f"all distributions must have shape ({m},), got "
                         f"{[d.shape for d in dists]}")
    n = len(rows)
    width = 0.8 / n
    fig = new_figure(max(6.0, 0.9 * m + 2.5), 3.8)
    ax = fig.subplots()
    x = np.arange(m)
    for i, ((label, _, score), d) in enumerate(zip(rows, dists)):
        ax.bar(x - 0.4 + width * (i + 0.5), d, width, label=f"{label} (score {score:.3f})")
    ax.set_xticks(x)
    ax.set_xticklabels([str(i) for i in x])
    ax.set_xlabel("frequency band (0 = lowest)")
    ax.set_ylabel("spectral importance")
    ax.set_ylim(0, max(float(max(d.max() for d in dists)) * 1.15, 1e-3))
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return save_png(fig, path)


__all__ = ["plot_importance"]
