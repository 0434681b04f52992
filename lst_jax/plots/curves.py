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


def plot_star_paths(t, to_outputs, to_targets, path, names: Sequence[str] | None = None,
                    panel: float = 3.0):
    """Linear paths from each source: to its LST outputs (solid, the "star") and straight to
    the clean targets (dashed). One panel per source j, one colour per target i.

    Shape:
        t: (S,); to_outputs, to_targets: (K, K, S) with [i, j] = path source j -> target i
        (the diagonal is ignored).
    """
    t, a, b = np.asarray(t), np.asarray(to_outputs), np.asarray(to_targets)
    if a.ndim != 3 or a.shape[0] != a.shape[1] or a.shape != b.shape or a.shape[2] != t.size:
        raise ValueError(f"to_outputs and to_targets must have shape (K, K, {t.size}), got "
                         f"{a.shape} and {b.shape}")
    k = a.shape[0]
    names = list(names) if names is not None else [str(i) for i in range(k)]
    fig = new_figure(panel * k, panel + 0.4)
    axes = fig.subplots(1, k, squeeze=False)[0]
    colours = [f"C{i % 10}" for i in range(k)]
    for j, ax in enumerate(axes):
        for i in range(k):
            if i == j:
                continue
            ax.plot(t, a[i, j], "-", color=colours[i], lw=1.4, label=f"to LST output ({names[i]})")
            ax.plot(t, b[i, j], "--", color=colours[i], lw=1.0)
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("t along the line")
        ax.set_title(f"source {names[j]}", fontsize=9)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("source-class confidence")
    axes[0].legend(fontsize=6, loc="lower left", title="solid: to LST output\ndashed: to target",
                   title_fontsize=6)
    fig.tight_layout()
    return save_png(fig, path)
