"""Figures of a model profile: every metric against a robustness measure; corruption curves."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from lst_jax.plots.common import new_figure, save_png


def _axis_range(values, errors, unit: bool):
    """Limits that state the scale: from 0 (every metric here is non-negative; below 0 only if
    a value is) to 1 for metrics on the unit interval, else to the largest value plus its
    error with 15% headroom. Small differences stay small: no auto-zoom onto the spread."""
    v = np.asarray(values, np.float64)
    e = np.nan_to_num(np.asarray(errors, np.float64))
    lo = min(0.0, float(np.min(v - e)))
    hi = float(np.max(v + e))
    hi = 1.0 if unit and hi <= 1.0 else (hi if hi > 0 else 1.0) * 1.15
    pad = 0.03 * (hi - lo)                  # markers on the bounds stay whole
    return lo - pad, hi + pad


def _place_labels(ax, xs, ys, texts, fontsize=7):
    """Point labels inside the axes, none on top of another: for each point (left to right)
    the first of 16 offsets whose text box lies inside the axes and clear of the markers and
    the labels already placed; the offset with the least overlap where none is clear."""
    fig = ax.figure
    renderer = fig.canvas.get_renderer()
    box = ax.get_window_extent(renderer)
    from matplotlib.transforms import Bbox

    r = 4 * fig.dpi / 72                                    # the markers, ~8 points wide
    placed = [Bbox([[px - r, py - r], [px + r, py + r]])
              for px, py in ax.transData.transform(np.c_[xs, ys])]
    offsets = [(4, 3, "left", "bottom"), (4, -3, "left", "top"), (-4, 3, "right", "bottom"),
               (-4, -3, "right", "top")]
    offsets += [(sx * 4, sy * d, "left" if sx > 0 else "right", "bottom" if sy > 0 else "top")
                for d in (11, 19, 27) for sy in (1, -1) for sx in (1, -1)]

    def overlap(a, b):
        w = min(a.x1, b.x1) - max(a.x0, b.x0)
        h = min(a.y1, b.y1) - max(a.y0, b.y0)
        return max(w, 0) * max(h, 0)

    for k in np.argsort(xs, kind="stable"):
        best = None
        for dx, dy, ha, va in offsets:
            ann = ax.annotate(texts[k], (xs[k], ys[k]), xytext=(dx, dy),
                              textcoords="offset points", ha=ha, va=va, fontsize=fontsize,
                              annotation_clip=True)
            bb = ann.get_window_extent(renderer)
            outside = ((max(box.x0 - bb.x0, 0) + max(bb.x1 - box.x1, 0)) * bb.height
                       + (max(box.y0 - bb.y0, 0) + max(bb.y1 - box.y1, 0)) * bb.width)
            cost = outside * 10 + sum(overlap(bb, o) for o in placed)
            if best is None or cost < best[0]:
                if best is not None:
                    best[1].remove()
                best = (cost, ann, bb)
            else:
                ann.remove()
            if cost == 0:
                break
        placed.append(best[2])


def plot_metrics_against(table: dict, models: Sequence[str], metrics: Sequence[str], x: str,
                         path, *, labels: dict | None = None, title: str = "",
                         errors: dict | None = None, unit_interval=()):
    """One panel per metric: its value (y) against `x` for every model, points labelled by
    model; models of one architecture (the name before "-") are joined in the given order
    (e.g. the robustness ladder), one marker per architecture. Error bars (± 1 SE) where
    `errors` has one; every axis starts at 0 (metrics in `unit_interval` end at 1), so a
    difference looks as large as it is, and each panel's subtitle gives the spread of its values.

    Args:
        table: model -> {metric: float}; labels: metric -> axis label.
        errors: model -> {metric: standard error} (`lst_jax.jobs.profile.report.metric_errors`).
        unit_interval: metrics whose values lie in [0, 1] by definition.
    """
    labels, errors, unit = labels or {}, errors or {}, set(unit_interval)
    metrics = [m for m in metrics if all(table[k].get(m) is not None
                                         and np.isscalar(table[k][m]) for k in models)]
    if not metrics:
        raise ValueError("no metric is available for every model")
    cols = 3 if len(metrics) in (3, 6, 9) else min(4, len(metrics))
    rows = math.ceil(len(metrics) / cols)
    fig = new_figure(3.6 * cols, 3.1 * rows + (0.4 if title else 0))
    axes = np.atleast_1d(fig.subplots(rows, cols)).reshape(-1)
    xs = np.array([table[k][x] for k in models], np.float64)
    xe = np.array([errors.get(k, {}).get(x, np.nan) for k in models], np.float64)
    archs = list(dict.fromkeys(k.split("-", 1)[0] for k in models))
    markers = "osD^v<>"
    for ax, metric in zip(axes, metrics):
        ys = np.array([table[k][metric] for k in models], np.float64)
        ye = np.array([errors.get(k, {}).get(metric, np.nan) for k in models], np.float64)
        if np.any(np.isfinite(ye)) or np.any(np.isfinite(xe)):
            ax.errorbar(xs, ys, yerr=np.nan_to_num(ye), xerr=np.nan_to_num(xe), fmt="none",
                        ecolor="0.45", elinewidth=0.8, capsize=2, zorder=1.5)
        for a_i, arch in enumerate(archs):
            sel = np.array([k.split("-", 1)[0] == arch for k in models])
            ax.plot(xs[sel], ys[sel], "-", color="0.7", lw=1, zorder=1)
            ax.scatter(xs[sel], ys[sel], c=np.flatnonzero(sel), cmap="viridis", vmin=0,
                       vmax=max(len(models) - 1, 1), marker=markers[a_i % len(markers)],
                       zorder=2, s=28, label=arch)
        ax.set_ylim(*_axis_range(ys, ye, metric in unit))
        ax.set_xlim(*_axis_range(xs, xe, x in unit))
        ax.set_xlabel(labels.get(x, x), fontsize=8)
        spread = f"values {np.min(ys):.3g} to {np.max(ys):.3g}"
        if np.any(np.isfinite(ye)):
            spread += f"; SE up to {np.nanmax(ye):.2g}"
        ax.set_title(f"{labels.get(metric, metric)}\n({spread})", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in axes[len(metrics):]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    texts = [k.split("-", 1)[-1] if len(archs) == 1 else k.replace("digits_", "") for k in models]
    for ax, metric in zip(axes, metrics):
        ys = np.array([table[k][metric] for k in models], np.float64)
        _place_labels(ax, xs, ys, texts)
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
