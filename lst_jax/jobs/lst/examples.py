"""Examples mode: K images as both sources and targets, K x (K - 1) traversals, a grid figure.

Follows the reference `--examples` mode (`../spec/lst.md` section 3.5) with explicit index
bookkeeping: the diagonal (source = target) is not traversed and shows the clean image, and a
source that fails the argmax filter is reported instead of shifting the grid.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from typing import Sequence

import jax
import numpy as np

from lst_jax.jobs.rundir import RunDir, markdown_table
from lst_jax.traversal import LSTConfig, level_set_traversal
from lst_jax.utils.rounding import format_estimate


@functools.partial(jax.jit, static_argnames=("model_fn",))
def _softmax_jit(model_fn, params, images):
    """Class probabilities; one program per (model_fn, shapes), reused across calls."""
    return jax.nn.softmax(model_fn(params, images), -1)


@dataclasses.dataclass
class ExamplesResult:
    """Shape: K images; outputs (K, K, H, W, C) with row i = target i, column j = source j.

    conf (K, K): source-class confidence p_{y_j} of each cell (diagonal: clean image).
    target_conf (K, K): confidence of the target's class; dist (K, K): L2 to the target.
    valid (K,): source j passed the argmax filter. curves: (T, K(K-1)) per-iteration arrays
    for the off-diagonal pairs in `pairs` order. logged_images: (L, K(K-1), H, W, C) iterates
    x_0, x_log_step, ... of every pair (only with `log_images=True`).
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
    logged_images: np.ndarray | None = None


def off_diagonal_pairs(k: int) -> np.ndarray:
    """(K(K-1), 2) array of (target i, source j) with i != j, row-major in i."""
    return np.array([(i, j) for i in range(k) for j in range(k) if i != j], np.int64)


def run_examples(model_fn, params, images, labels, config: LSTConfig, key, *,
                 target_labels=None, progress: bool = True,
                 log_images: bool = False, mesh=None) -> ExamplesResult:
    """Traverses every ordered pair of distinct images (source j -> target i).

    Args:
        images: the K example images, used as both sources and targets.
        labels: their classes (the source class held by each traversal).
        target_labels: classes used for the target-confidence record (default `labels`).
        log_images: keep the iterates every `config.log_step` iterations (for path widths).
        mesh: traverse the pairs data parallel over this device mesh (`level_set_traversal`).

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
    if log_images:
        config = config.replace(log_images=True)
    res = level_set_traversal(model_fn, params, images[sj], images[ti], labels[sj], key=key,
                              config=config, target_labels=tl[ti], progress=progress, mesh=mesh,
                              desc=f"LST {len(pairs)} pairs")
    res = jax.device_get(res)
    seconds = time.perf_counter() - t0

    probs = np.asarray(jax.device_get(_softmax_jit(model_fn, params, jax.device_put(images))))
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
    logged = np.asarray(res.logged_images) if res.logged_images is not None else None
    return ExamplesResult(outputs, conf, probs[np.arange(k), labels], target_conf, dist,
                          start_dist, accepted, valid, pairs, curves, seconds, logged)


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
    # means with their standard error over the valid pairs, printed to the digits it supports
    src = {"mean_clean_conf": "clean_conf", "mean_final_conf": "final_conf",
           "mean_rmse_start": "rmse_to_target_start", "mean_rmse_final": "rmse_to_target_final"}
    se = {k2: (float(np.std([r[f] for r in ok], ddof=1) / np.sqrt(len(ok)))
               if len(ok) > 1 else None) for k2, f in src.items()}
    md.append(markdown_table(["aggregate", "value"],
                             [[k2, format_estimate(v, se.get(k2)) if isinstance(v, float) else v]
                              for k2, v in agg.items()]))
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


# --------------------------------------------------------------------------------------------
# Geometry around the examples: triangle planes, star paths, path widths.

# The reference's triangles: source 0 with the LST outputs toward targets (i1, i2).
REFERENCE_TRIANGLES = ((1, 2), (2, 3), (3, 4), (1, 3), (1, 4), (2, 4))
# The reference's path-width traversals (source, target).
REFERENCE_WIDTH_PAIRS = ((0, 1), (2, 3), (4, 0))


@dataclasses.dataclass
class WidthSettings:
    """Path widths along example traversals (`--widths`).

    Attributes:
        radii: L2 distances (reference README: 0.5 1 1.5 2).
        num_dirs: random directions per point (reference 256).
        pairs: (source, target) traversals measured (reference (0,1), (2,3), (4,0)).
        gate: measure points with confidence >= gate; None -> the config's pthresh.
    """

    radii: tuple = (0.5, 1.0, 1.5, 2.0)
    num_dirs: int = 256
    pairs: tuple = REFERENCE_WIDTH_PAIRS
    gate: float | None = None


@dataclasses.dataclass
class ExamplesGeometry:
    """Shape: K images, T triangles, P grid points, S path points, W width traversals,
    L logged iterations, R radii.

    triangles (T, 2) target pairs of source `plane_source`; plane_conf (T, P) source-class
    confidence on the clipped grid; plane_vertices (T, 3, 2), plane_points (T, P, 2) the
    isometric 2-D embedding; path_t (S,); star_conf (K, K, S) along source j -> LST output
    [i, j]; direct_conf (K, K, S) along source j -> clean image i (diagonals NaN);
    width_pairs (W, 2) (source, target); width_iters (L,); width_radii (R + 1,) starting at 0;
    widths (W, L, R + 1, 2) 5%/95% quantiles (NaN where unmeasured); width_mask (W, L).
    """

    plane_source: int
    triangles: np.ndarray
    plane_conf: np.ndarray
    plane_vertices: np.ndarray
    plane_points: np.ndarray
    path_t: np.ndarray
    star_conf: np.ndarray
    direct_conf: np.ndarray
    width_pairs: np.ndarray | None = None
    width_iters: np.ndarray | None = None
    width_radii: np.ndarray | None = None
    widths: np.ndarray | None = None
    width_mask: np.ndarray | None = None

    def arrays(self) -> dict:
        return {f"geometry_{k}": v for k, v in dataclasses.asdict(self).items()
                if v is not None}


def examples_geometry(model_fn, params, images, labels, result: ExamplesResult,
                      config: LSTConfig, key, *, plane_source: int = 0,
                      triangles=REFERENCE_TRIANGLES, plane_grid: int = 10,
                      path_points: int = 21, widths: WidthSettings | None = None,
                      chunk_size: int = 64, evaluate_fn=None,
                      progress: bool = False) -> ExamplesGeometry:
    """Triangle planes, star paths and (optionally) path widths around an examples run.

    Triangles whose indices exceed K are skipped (K = 3 keeps only (1, 2)). With
    `plane_source` s != 0 the triangle indices 1..K-1 refer to the other images in order.

    Shape:
        images: (K, H, W, C); labels: (K,) -> ExamplesGeometry.
    """
    from lst_jax.geometry import (
        WidthConfig,
        embed_grid,
        hull_confidences,
        linear_path_confidences,
        path_widths,
        triangle_embedding,
        triangle_grid,
        width_directions,
    )
    from lst_jax.geometry.paths import path_points as make_t
    from lst_jax.utils.progress import Progress

    images = np.asarray(images, np.float32)
    labels = np.asarray(labels, np.int32)
    k = images.shape[0]
    s0 = int(plane_source)
    if not 0 <= s0 < k:
        raise ValueError(f"plane_source must be in [0, {k}), got {plane_source}")
    # The reference pairs index the targets 1..K-1 of source 0; for another source they index
    # the other images in order.
    others = [i for i in range(k) if i != s0]
    tris = np.asarray([(others[a - 1], others[b - 1]) for a, b in triangles
                       if 1 <= min(a, b) and max(a, b) < k and a != b],
                      np.int64).reshape(-1, 2)
    steps = 2 + (1 if widths else 0)
    with Progress(steps, desc="examples geometry", unit="step", enabled=progress) as bar:
        grid = triangle_grid(kind="reference", n=plane_grid)
        if len(tris):
            v1 = result.outputs[tris[:, 0], s0]
            v2 = result.outputs[tris[:, 1], s0]
            src = np.repeat(images[s0:s0 + 1], len(tris), axis=0)
            plane_conf = np.asarray(hull_confidences(
                model_fn, params, src, v1, v2, np.full(len(tris), labels[s0]), grid=grid,
                clip=True, batch_size=chunk_size, evaluate_fn=evaluate_fn))
            verts = np.stack([np.asarray(triangle_embedding(src[i], v1[i], v2[i]))
                              for i in range(len(tris))])
            pts = np.stack([np.asarray(embed_grid(v, grid=grid)) for v in verts])
        else:
            plane_conf = np.zeros((0, grid.num_points), np.float32)
            verts = np.zeros((0, 3, 2), np.float32)
            pts = np.zeros((0, grid.num_points, 2), np.float32)
        bar.update(1)

        ti, sj = result.pairs[:, 0], result.pairs[:, 1]
        t = make_t(path_points)
        star = np.full((k, k, len(t)), np.nan, np.float32)
        direct = np.full((k, k, len(t)), np.nan, np.float32)
        star[ti, sj] = np.asarray(linear_path_confidences(
            model_fn, params, images[sj], result.outputs[ti, sj], labels[sj],
            num_points=path_points, batch_size=chunk_size, evaluate_fn=evaluate_fn))
        direct[ti, sj] = np.asarray(linear_path_confidences(
            model_fn, params, images[sj], images[ti], labels[sj], num_points=path_points,
            batch_size=chunk_size, evaluate_fn=evaluate_fn))
        bar.update(1)
        geo = ExamplesGeometry(s0, tris, plane_conf, verts, pts, t, star, direct)

        if widths:
            if result.logged_images is None:
                raise ValueError("path widths need the logged iterates: run_examples(..., "
                                 "log_images=True)")
            wp = [(s, d) for s, d in widths.pairs if max(s, d) < k and s != d]
            if not wp:
                raise ValueError(f"no width pair {list(widths.pairs)} fits K = {k} images")
            logged = result.logged_images                          # (L, K(K-1), H, W, C)
            n_log = logged.shape[0]
            index = {(int(i), int(j)): n for n, (i, j) in enumerate(result.pairs)}
            cols = [index[(d, s)] for s, d in wp]                  # pairs are (target, source)
            x = np.concatenate([logged[:, c] for c in cols])        # (W * L, H, W, C)
            tgt = np.concatenate([np.repeat(images[d:d + 1], n_log, 0) for _, d in wp])
            lab = np.concatenate([np.full(n_log, labels[s]) for s, _ in wp]).astype(np.int32)
            dirs = width_directions(model_fn, params, x, tgt, lab)
            gate = config.pthresh if widths.gate is None else widths.gate
            wcfg = WidthConfig(radii=tuple(widths.radii), num_dirs=widths.num_dirs, gate=gate)
            res = path_widths(model_fn, params, x, dirs, lab, key=key, config=wcfg,
                              batch_size=chunk_size, evaluate_fn=evaluate_fn)
            w = np.asarray(res.widths).reshape(len(wp), n_log, len(widths.radii) + 1, -1)
            geo.width_pairs = np.asarray(wp, np.int64)
            geo.width_iters = np.arange(n_log) * config.log_step
            geo.width_radii = np.concatenate([[0.0], np.asarray(widths.radii, np.float32)])
            geo.widths = w
            geo.width_mask = np.asarray(res.mask).reshape(len(wp), n_log)
            bar.update(1)
    return geo


def write_geometry(run: RunDir, geo: ExamplesGeometry, images, result: ExamplesResult,
                   names: Sequence[str], title: str = "") -> dict:
    """Writes geometry.npz and the figures planes.png, star_paths.png, [widths.png]."""
    from lst_jax.plots import plot_star_paths, plot_triangles, plot_width_surfaces

    images = np.asarray(images)
    run.save_npz("geometry.npz", **geo.arrays())
    files = {}
    s0 = geo.plane_source
    if len(geo.triangles):
        vimg = np.stack([np.stack([images[s0], result.outputs[i1, s0], result.outputs[i2, s0]])
                         for i1, i2 in geo.triangles])
        titles = [f"{names[s0]} -> ({names[i1]}, {names[i2]})" for i1, i2 in geo.triangles]
        files["planes"] = plot_triangles(
            geo.plane_vertices, geo.plane_points, geo.plane_conf, vimg,
            run.path(f"figures/plane_src-{s0}.png"), titles=titles,
            suptitle=f"{title}: confidence of {names[s0]}'s class over the triangles" if title
            else None)
    files["star"] = plot_star_paths(geo.path_t, geo.star_conf, geo.direct_conf,
                                    run.path("figures/star_paths.png"), names)
    if geo.widths is not None:
        titles = [f"{names[s]} -> {names[d]}" for s, d in geo.width_pairs]
        files["widths"] = plot_width_surfaces(geo.width_iters, geo.width_radii, geo.widths,
                                              run.path("figures/path_widths.png"), titles)
    summary = {
        "triangles": [[int(a), int(b)] for a, b in geo.triangles],
        "plane_mean_conf": [float(c.mean()) for c in geo.plane_conf],
        "star_min_conf": float(np.nanmin(geo.star_conf)) if geo.star_conf.size else None,
        "direct_min_conf": float(np.nanmin(geo.direct_conf)) if geo.direct_conf.size else None,
    }
    if geo.widths is not None:
        summary["widths_measured_fraction"] = float(geo.width_mask.mean())
    return {"files": {k: str(v) for k, v in files.items()}, **summary}
