"""Per-iteration curves of a traversal: confidence held, distance to the target shrinking."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from lst_jax.plots.common import new_figure, save_png


def plot_traversal_curves(conf_source: np.ndarray, conf_target: np.ndarray,
                          dist_target: np.ndarray, path, labels: Sequence[str] | None = None):
    """Three panels over iterations: source-class confidence, target-class confidence,
    L2 distance to the target, one line per pair.

    Shape:
        conf_source, conf_target, dist_target: (T, P) for T iterations, P pairs.
    """
    cs, ct, d = (np.asarray(a) for a in (conf_source, conf_target, dist_target))
    if not (cs.shape == ct.shape == d.shape) or cs.ndim != 2:
        raise ValueError(f"curves need equal (T, P) arrays, got {cs.shape}, {ct.shape}, {d.shape}")
    fig = new_figure(12, 3.4)
    axes = fig.subplots(1, 3)
    it = np.arange(1, cs.shape[0] + 1)
    for p in range(cs.shape[1]):
        lab = labels[p] if labels is not None else None
        axes[0].plot(it, cs[:, p], lw=1, label=lab)
        axes[1].plot(it, ct[:, p], lw=1)
        axes[2].plot(it, d[:, p], lw=1)
    for ax, t in zip(axes, ["source-class confidence", "target-class confidence",
                            "L2 distance to target"]):
        ax.set_xlabel("iteration")
        ax.set_title(t, fontsize=10)
        ax.grid(alpha=0.3)
    axes[0].set_ylim(-0.02, 1.02)
    axes[1].set_ylim(-0.02, 1.02)
    fig.tight_layout()
    return save_png(fig, path)
