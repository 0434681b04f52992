"""Examples mode: K images as both sources and targets, K x (K - 1) traversals, a grid figure.

Follows the reference `--examples` mode (`../spec/lst.md` section 3.5) with explicit index
bookkeeping: the diagonal (source = target) is not traversed and shows the clean image, and a
source that fails the argmax filter is reported instead of shifting the grid.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Sequence

import jax
import numpy as np

from lst_jax.evaluation.rundir import RunDir, markdown_table
from lst_jax.traversal import LSTConfig, level_set_traversal


@dataclasses.dataclass
class ExamplesResult:
    """Shape: K images; outputs (K, K, H, W, C) with row i = target i, column j = source j.

    conf (K, K): source-class confidence p_{y_j} of each cell (diagonal: clean image).
    target_conf (K, K): confidence of the target's class; dist (K, K): L2 to the target.
    valid (K,): source j passed the argmax filter. curves: (T, K(K-1)) per-iteration arrays
    for the off-diagonal pairs in `pairs` order.
    """

    outputs: np.ndarray
    conf: np.ndarray
    clean_conf: np.ndarray
    target_conf: np.ndarray
    dist: np.ndarray
    start_dist: np.ndarray
    accepted_frac: np.ndarray
    valid: np.ndarray
    pairs: np.ndarray
    curves: dict
    seconds: float


def off_diagonal_pairs(k: int) -> np.ndarray:
    """(K(K-1), 2) array of (target i, source j) with i != j, row-major in i."""
    return np.array([(i, j) for i in range(k) for j in range(k) if i != j], np.int64)


def run_examples(model_fn, params, images, labels, config: LSTConfig, key, *,
                 target_labels=None, progress: bool = True) -> ExamplesResult:
    """Traverses every ordered pair of distinct images (source j -> target i).

    Args:
        images: the K example images, used as both sources and targets.
        labels: their classes (the source class held by each traversal).
        target_labels: classes used for the target-confidence record (default `labels`).

    Shape:
        images: (K, H, W, C) float32 in [0, 1]; labels: (K,) int.
    """
    images = np.asarray(images, np.float32)
    labels = np.asarray(labels)
    k = images.shape[0]
    if images.ndim != 4 or k < 2:
        raise ValueError(f"examples need at least 2 images of shape (K, H, W, C), got "
                         f"{images.shape}")
    if labels.shape != (k,):
        raise ValueError(f"labels must have shape ({k},), got {labels.shape}")
    tl = labels if target_labels is None else np.asarray(target_labels)
    pairs = off_diagonal_pairs(k)
    ti, sj = pairs[:, 0], pairs[:, 1]
    t0 = time.perf_counter()
    res = level_set_traversal(model_fn, params, images[sj], images[ti], labels[sj], key,
                              config, target_labels=tl[ti], progress=progress,
                              desc=f"LST {len(pairs)} pairs")
    res = jax.device_get(res)
    seconds = time.perf_counter() - t0

    probs = np.asarray(jax.device_get(jax.jit(
        lambda p, x: jax.nn.softmax(model_fn(p, x), -1))(params, images)))
    outputs = np.repeat(images[None], k, axis=0).copy()      # diagonal: clean image j
    conf = np.zeros((k, k), np.float32)
    target_conf = np.zeros((k, k), np.float32)
    dist = np.zeros((k, k), np.float32)
    start_dist = np.zeros((k, k), np.float32)
    accepted = np.ones((k, k), np.float32)
    for j in range(k):
        conf[j, j] = probs[j, labels[j]]
        target_conf[j, j] = probs[j, tl[j]]
    outputs[ti, sj] = res.images
    conf[ti, sj] = res.record.conf_source[-1]
    target_conf[ti, sj] = res.record.conf_target[-1]
    dist[ti, sj] = res.record.dist_target[-1]
    start_dist[ti, sj] = np.sqrt(((images[sj] - images[ti]) ** 2).reshape(len(pairs), -1).sum(-1))
    accepted[ti, sj] = res.record.accepted.mean(0)
    valid = probs.argmax(-1) == labels
    curves = {"conf_source": res.record.conf_source, "conf_target": res.record.conf_target,
              "dist_target": res.record.dist_target, "accepted": res.record.accepted}
    return ExamplesResult(outputs, conf, probs[np.arange(k), labels], target_conf, dist,
                          start_dist, accepted, valid, pairs, curves, seconds)


def summarize(result: ExamplesResult, names: Sequence[str]) -> tuple[dict, str]:
    """Per-pair rows and aggregates as (JSON-able dict, Markdown text)."""
    k = result.conf.shape[0]
    hw = int(np.prod(result.outputs.shape[2:]))
    rows = []
    for i, j in result.pairs:
        rows.append({
            "source": names[j], "target": names[i], "source_index": int(j),
            "target_index": int(i), "source_valid": bool(result.valid[j]),
            "clean_conf": float(result.clean_conf[j]), "final_conf": float(result.conf[i, j]),
            "final_target_class_conf": float(result.target_conf[i, j]),
            "rmse_to_target_start": float(result.start_dist[i, j] / np.sqrt(hw)),
            "rmse_to_target_final": float(result.dist[i, j] / np.sqrt(hw)),
            "accepted_fraction": float(result.accepted_frac[i, j]),
        })
    ok = [r for r in rows if r["source_valid"]]
    agg = {
        "pairs": len(rows), "valid_pairs": len(ok),
        "mean_clean_conf": float(np.mean([r["clean_conf"] for r in ok])) if ok else None,
        "mean_final_conf": float(np.mean([r["final_conf"] for r in ok])) if ok else None,
        "max_conf_drop": float(max(r["clean_conf"] - r["final_conf"] for r in ok)) if ok else None,
        "mean_rmse_start": float(np.mean([r["rmse_to_target_start"] for r in ok])) if ok else None,
        "mean_rmse_final": float(np.mean([r["rmse_to_target_final"] for r in ok])) if ok else None,
        "seconds": round(result.seconds, 2),
    }
    invalid = [names[j] for j in range(k) if not result.valid[j]]
    md = ["## LST examples", ""]
    if invalid:
        md += [f"Sources failing the argmax filter (traversed, excluded from aggregates): "
               f"{', '.join(invalid)}", ""]
    md.append(markdown_table(
        ["source", "target", "p_src clean", "p_src final", "p_target-class final",
         "RMSE start", "RMSE final", "accepted"],
        [[r["source"], r["target"], f"{r['clean_conf']:.3f}", f"{r['final_conf']:.3f}",
          f"{r['final_target_class_conf']:.3f}", f"{r['rmse_to_target_start']:.3f}",
          f"{r['rmse_to_target_final']:.3f}", f"{r['accepted_fraction']:.2f}"] for r in rows]))
    md.append(markdown_table(["aggregate", "value"], [[k2, v] for k2, v in agg.items()]))
    return {"pairs": rows, "aggregate": agg}, "\n".join(md)


def write_examples(run: RunDir, result: ExamplesResult, names: Sequence[str],
                   title: str = "") -> dict:
    """Writes examples.npz, summary.json, summary.md and the figures; returns the summary."""
    from lst_jax.plots import plot_examples_grid, plot_traversal_curves

    run.save_npz("examples.npz", outputs=result.outputs, conf=result.conf,
                 clean_conf=result.clean_conf, target_conf=result.target_conf,
                 dist=result.dist, valid=result.valid, pairs=result.pairs,
                 **{f"curve_{k}": v for k, v in result.curves.items()})
    summary, md = summarize(result, names)
    run.write_json("summary.json", summary)
    run.write_text("summary.md", md)
    plot_examples_grid(result.outputs, result.conf, run.path("figures/examples_grid.png"),
                       names=names, title=title)
    labels = [f"{names[j]}->{names[i]}" for i, j in result.pairs]
    plot_traversal_curves(result.curves["conf_source"], result.curves["conf_target"],
                          result.curves["dist_target"], run.path("figures/curves.png"), labels)
    return summary
