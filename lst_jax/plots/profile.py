"""Figures of a model profile: every metric against a robustness measure; corruption curves."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from lst_jax.plots.common import new_figure, save_png


def plot_metrics_against(table: dict, models: Sequence[str], metrics: Sequence[str], x: str,
                         path, *, labels: dict | None = None, title: str = ""):
    """One panel per metric: its value (y) against `x` for every model, points labelled by
    model; models of one architecture (the name before "-") are joined in the given order
    (e.g. the robustness ladder), one marker per architecture.

    Args:
        table: model -> {metric: float}; labels: metric -> axis label.
    """
    labels = labels or {}
    metrics = [m for m in metrics if all(table[k].get(m) is not None
                                         and np.isscalar(table[k][m]) for k in models)]
    if not metrics:
        raise ValueError("no metric is available for every model")
    cols = 3 if len(metrics) in (3, 6, 9) else min(4, len(metrics))
    rows = math.ceil(len(metrics) / cols)
    fig = new_figure(3.4 * cols, 2.9 * rows + (0.4 if title else 0))
    axes = np.atleast_1d(fig.subplots(rows, cols)).reshape(-1)
    xs = np.array([table[k][x] for k in models], np.float64)
    archs = list(dict.fromkeys(k.split("-", 1)[0] for k in models))
    markers = "osD^v<>"
    for ax, metric in zip(axes, metrics):
        ys = np.array([table[k][metric] for k in models], np.float64)
        for a_i, arch in enumerate(archs):
            sel = np.array([k.split("-", 1)[0] == arch for k in models])
            ax.plot(xs[sel], ys[sel], "-", color="0.7", lw=1, zorder=1)
            ax.scatter(xs[sel], ys[sel], c=np.flatnonzero(sel), cmap="viridis", vmin=0,
                       vmax=max(len(models) - 1, 1), marker=markers[a_i % len(markers)],
                       zorder=2, s=28, label=arch)
        for k, xi, yi in zip(models, xs, ys):
            label = k.split("-", 1)[-1] if len(archs) == 1 else k.replace("digits_", "")
            ax.annotate(label, (xi, yi), fontsize=7, xytext=(3, 3),
                        textcoords="offset points")
        ax.set_xlabel(labels.get(x, x), fontsize=8)
        ax.set_title(labels.get(metric, metric), fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in axes[len(metrics):]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_png(fig, path)


def plot_corruption_curves(results: dict, models: Sequence[str], path):
    """Accuracy against severity (0 = clean), averaged over corruptions, one line per model;
    and per corruption at the highest severity (bars).

    Args:
        results: model -> robustness result (`clean_accuracy`, `corruption_accuracy` (C, S),
            `corruptions`, `severities`).
    """
    fig = new_figure(11, 3.4)
    ax1, ax2 = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.6]})
    first = results[models[0]]
    sev = [0] + list(first["severities"])
    names = first["corruptions"]
    width = 0.8 / len(models)
    for i, k in enumerate(models):
        r = results[k]
        acc = np.asarray(r["corruption_accuracy"])
        ax1.plot(sev, [r["clean_accuracy"]] + list(acc.mean(0)), "o-", ms=3, label=k)
        ax2.bar(np.arange(len(names)) + (i - (len(models) - 1) / 2) * width, acc[:, -1],
                width, label=k)
    ax1.set_xlabel("severity (0: clean)")
    ax1.set_ylabel("accuracy (mean over corruptions)")
    ax1.set_ylim(0, 1.02)
    ax1.grid(alpha=0.3)
    ax1.legend(fontsize=7)
    ax2.set_xticks(np.arange(len(names)))
    ax2.set_xticklabels(names, rotation=30, ha="right", fontsize=7)
    ax2.set_ylabel(f"accuracy at severity {sev[-1]}")
    ax2.set_ylim(0, 1.02)
    ax2.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    return save_png(fig, path)


__all__ = ["plot_metrics_against", "plot_corruption_curves"]
