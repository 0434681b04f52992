"""Figures of the input-space connectivity method: barrier boxplots, linear vs bypassed loss
profiles, images along the paths, the B' - B pattern, bypass rounds, ROC curves."""

from __future__ import annotations

import numpy as np

from lst_jax.plots.common import new_figure, save_png, to_display

REAL, ADV = "#4169e1", "#b22222"      # the authors' royalblue / firebrick


def barrier_boxplots(stats: dict, path, title: str = "Barrier statistics"):
    """Boxplots of barrier max and gap, real-real vs real-adversarial, one panel per model
    (symmetric-log axis: the gaps include zeros).

    Args:
        stats: model label -> {"real": {"max": (n,), "gap": (n,)}, "adversarial": {...}}.
    """
    n = len(stats)
    cols = min(n, 2)
    rows = -(-n // cols)
    fig = new_figure(4.6 * cols, 3.9 * rows)
    for i, (label, groups) in enumerate(stats.items()):
        ax = fig.add_subplot(rows, cols, i + 1)
        data = [groups["real"]["max"], groups["adversarial"]["max"],
                groups["real"]["gap"], groups["adversarial"]["gap"]]
        bp = ax.boxplot(data, positions=[1, 1.5, 2.2, 2.7], widths=0.35, patch_artist=True)
        for box, c in zip(bp["boxes"], [REAL, ADV, REAL, ADV]):
            box.set(facecolor=c, edgecolor="black")
        for med in bp["medians"]:
            med.set(color="black")
        ax.set_xticks([1.25, 2.45])
        ax.set_xticklabels(["barrier max", "barrier gap"])
        ax.set_ylabel("cross-entropy (symlog)")
        ax.set_yscale("symlog", linthresh=1e-3)      # medians ~1e-2, outliers ~10
        top = max([float(np.max(d)) for d in data if len(d)] + [1e-3])
        ax.set_ylim(0, 2 * top)
        ax.set_title(label, fontsize=10)
    from matplotlib.patches import Patch

    fig.suptitle(title)
    # the legend in a strip of its own below the panels: it covers no title and no data
    strip = 0.35 / fig.get_figheight()
    fig.tight_layout(rect=(0, strip, 1, 0.95))
    fig.legend(handles=[Patch(facecolor=REAL, edgecolor="black", label="real-real"),
                        Patch(facecolor=ADV, edgecolor="black", label="real-adversarial")],
               fontsize=8, loc="lower center", ncols=2, frameon=False)
    return save_png(fig, path)


def piecewise_curve(segment_losses, vertex_alpha, num_vertices):
    """(x, y) of a piecewise path's profile, x = position on the primary path.

    Shape:
        segment_losses: (S, n); vertex_alpha: (S + 1,) -> x, y: (num_segments * n,).
    """
    xs, ys = [], []
    for j in range(int(num_vertices) - 1):
        n = segment_losses.shape[1]
        xs.append(np.linspace(vertex_alpha[j], vertex_alpha[j + 1], n))
        ys.append(segment_losses[j])
    return np.concatenate(xs), np.concatenate(ys)


def bypass_profiles(rows, path, title: str = ""):
    """Linear vs bypassed loss profile, one panel pair per row.

    Args:
        rows: list of (label, primary (N,), segment_losses (S, n), vertex_alpha (S + 1,),
            num_vertices).
    """
    fig = new_figure(9.5, 3.0 * len(rows))
    for i, (label, primary, seg, alpha, nv) in enumerate(rows):
        ax = fig.add_subplot(len(rows), 2, 2 * i + 1)
        ax.plot(np.linspace(0, 1, len(primary)), primary, color=REAL)
        ax.set_title(f"{label}: linear A -> C (max {np.max(primary):.3g})", fontsize=9)
        ax.set_xlabel("alpha")
        ax.set_ylabel("cross-entropy")
        ax = fig.add_subplot(len(rows), 2, 2 * i + 2)
        colors = ["tab:green", "tab:red", "tab:purple", "tab:orange", "tab:brown",
                  "tab:pink", "tab:olive", "tab:cyan"]
        n = seg.shape[1]
        for j in range(int(nv) - 1):
            ax.plot(np.linspace(alpha[j], alpha[j + 1], n), seg[j],
                    color=colors[j % len(colors)])
        for a in alpha[1:int(nv) - 1]:
            ax.axvline(a, color="grey", lw=0.6, ls=":")
        ax.set_title(f"bypassed, {int(nv) - 2} bypass point(s) (max "
                     f"{np.nanmax(seg[:int(nv) - 1]):.3g})", fontsize=9)
        ax.set_xlabel("position on the primary path")
        ax.set_ylim(bottom=0)                  # each round's scale from 0: its max in the title
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return save_png(fig, path)


def path_images(rows, path, title: str = ""):
    """Image strips along paths (pixels, clipped for display).

    Args:
        rows: list of (label, images (n, H, W, C) in pixel space, captions (n,)).
    """
    cols = max(len(r[1]) for r in rows)
    fig = new_figure(1.3 * cols + 0.6, 1.5 * len(rows) + 0.4)
    for i, (label, images, captions) in enumerate(rows):
        for j, (img, cap) in enumerate(zip(images, captions)):
            ax = fig.add_subplot(len(rows), cols, i * cols + j + 1)
            ax.imshow(to_display(img), cmap="gray" if img.shape[-1] == 1 else None,
                      interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(cap, fontsize=7)
            if j == 0:
                ax.set_ylabel(label, fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_png(fig, path)


def difference_pattern(b, b_prime, path, title: str = ""):
    """B, B' and the difference pattern B' - B (rescaled to [0, 1] for display), with the
    ratio of its largest magnitude to B's (paper Fig. 1: 1-5%).

    Shape:
        b, b_prime: (H, W, C) in pixel space.
    """
    d = np.asarray(b_prime) - np.asarray(b)
    ratio = np.abs(d).max() / max(np.abs(b).max(), 1e-12)
    span = max(np.abs(d).max(), 1e-12)
    fig = new_figure(7.5, 2.8)
    for j, (img, cap) in enumerate([(b, "B (barrier)"), (b_prime, "B' (bypass)"),
                                    (0.5 + 0.5 * d / span,
                                     f"B' - B (max |.| = {100 * ratio:.1f}% of max |B|)")]):
        ax = fig.add_subplot(1, 3, j + 1)
        ax.imshow(to_display(img), interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(cap, fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_png(fig, path), float(ratio)


def round_profiles(primary, round_curves, path, title: str = ""):
    """The loss curves of every bypass round (paper Fig. 7: primary, secondary, tertiary).

    Args:
        primary: (N,) primary curve.
        round_curves: list over rounds >= 1 of (segment_losses (S, n), segment boundaries
            (S + 1,)); rows of NaN (segments not measured in that round) are skipped.
    """
    # rounds in which no segment was measured (nothing left to bypass) get no empty panel
    rounds = [r for r, (seg, _) in enumerate(round_curves)
              if np.any(np.all(np.isfinite(np.asarray(seg)), axis=-1))]
    k = 1 + len(rounds)
    fig = new_figure(4.2 * k, 3.2)
    ax = fig.add_subplot(1, k, 1)
    ax.plot(np.linspace(0, 1, len(primary)), primary, color=REAL)
    ax.set_title(f"primary (max {np.max(primary):.3g})", fontsize=9)
    ax.set_ylim(bottom=0)
    ax.set_xlabel("alpha")
    ax.set_ylabel("cross-entropy")
    names = ["secondary", "tertiary", "quaternary"]
    for i, r in enumerate(rounds):
        seg, alpha = round_curves[r]
        ax = fig.add_subplot(1, k, i + 2)
        n = seg.shape[1]
        for j in range(len(seg)):
            if np.all(np.isfinite(seg[j])):        # measured in this round
                ax.plot(np.linspace(alpha[j], alpha[j + 1], n), seg[j])
        top = np.nanmax(seg)
        ax.set_title(f"{names[r] if r < len(names) else f'round {r + 1}'} "
                     f"(max {top:.3g})", fontsize=9)
        ax.set_xlabel("position on the primary path")
        ax.set_ylim(bottom=0)                  # each round's scale from 0: its max in the title
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_png(fig, path)


def roc_curves(curves: dict, path, title: str = "Adversarial detection (ROC)"):
    """ROC curves: label -> (fpr, tpr, auroc)."""
    fig = new_figure(4.6, 4.4)
    ax = fig.add_subplot(1, 1, 1)
    for label, (fpr, tpr, auc) in curves.items():
        ax.plot(fpr, tpr, label=f"{label} (AUROC {auc:.3f})")
    ax.plot([0, 1], [0, 1], color="grey", ls=":", lw=0.8)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return save_png(fig, path)


def barrier_evolution(batch_ids, curves, path, title: str = "Barrier evolution in training"):
    """App. F.1 figure: mean +- std primary curves at a few checkpoints, and the max loss
    (mean +- std over pairs) against the training batch.

    Shape:
        batch_ids: (T,); curves: (T, P, n) primary curves of P pairs per checkpoint.
    """
    curves = np.asarray(curves)
    fig = new_figure(10, 3.8)
    ax = fig.add_subplot(1, 2, 1)
    pick = np.unique(np.linspace(0, len(batch_ids) - 1, min(5, len(batch_ids))).astype(int))
    xs = np.linspace(0, 1, curves.shape[-1])
    for i in pick:
        m, s = curves[i].mean(0), curves[i].std(0)
        line, = ax.plot(xs, m, label=f"batch {batch_ids[i]}")
        ax.fill_between(xs, np.maximum(m - s, 0), m + s, alpha=0.12, color=line.get_color())
    ax.set_xlabel("alpha")
    ax.set_ylabel("cross-entropy")
    ax.set_title("primary loss curves (mean +- std)", fontsize=9)
    ax.legend(fontsize=7)
    ax = fig.add_subplot(1, 2, 2)
    mx = curves.max(-1)
    ax.errorbar(batch_ids, mx.mean(1), yerr=mx.std(1), fmt="-o", capsize=3, ms=3)
    ax.set_xlabel("training batch")
    ax.set_ylabel("max loss on the path")
    ax.set_title("barrier max vs training batch", fontsize=9)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_png(fig, path)
