"""Confidence over triangular convex hulls (source, LST output r1, LST output r2): Table 2.

Semantics follow the reference `eval_utils.get_avg_conf[_for_img_set]` (`../spec/lst.md`
section 3.4) exactly: per triangle, the source confidence `p_src` (grid point (0, 0)), the mean
over all grid points, the fraction of points with confidence *strictly* above `p_src - d`
(so at d = 0 the source itself never counts), the mean over the two legs concatenated (22
values for n = 10, the source counted twice) and the minimum over both legs of `conf - p_src`.
Per source, the first seven are averaged over its triangles and `edge_min` is the minimum.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from lst_jax.geometry.grids import TriangleGrid, round_pairs, triangle_grid
from lst_jax.geometry.probes import Evaluator, evaluate_combinations

DELTAS = (0.0, 0.1, 0.2, 0.3)
STAT_NAMES = ("p_src", "mean", "frac_0", "frac_0.1", "frac_0.2", "frac_0.3", "edge_mean",
              "edge_min")


def stat_names(*, deltas: Sequence[float] = DELTAS) -> tuple[str, ...]:
    """Column names of `triangle_statistics` for the given drops.

    >>> stat_names(deltas=(0.0, 0.5))
    ('p_src', 'mean', 'frac_0', 'frac_0.5', 'edge_mean', 'edge_min')
    """
    return ("p_src", "mean", *[f"frac_{d:g}" for d in deltas], "edge_mean", "edge_min")


def hull_confidences(model_fn, params, images, vertex1, vertex2, labels, *,
                     grid: TriangleGrid | None = None, clip: bool = False,
                     batch_size: int | None = None, mesh=None, memory_budget=None,
                     evaluate_fn: Evaluator | None = None) -> jax.Array:
    """Source-class confidence at every grid point of each triangle (x_s, x_1, x_2).

    Probes are `(1 - t1 - t2) x_s + t1 x_1 + t2 x_2` with x_s = `images`, not clipped by
    default (reference Table 2; the LST outputs lie in [0, 1], so their convex combinations
    do too). `grid` default: `triangle_grid()`; placement keywords: see
    `evaluate_combinations`.

    >>> import jax, jax.numpy as jnp
    >>> model_fn = lambda p, x: x.reshape(len(x), -1) @ p
    >>> params = jax.random.normal(jax.random.key(0), (8 * 8 * 3, 4))
    >>> images = jax.random.uniform(jax.random.key(1), (2, 8, 8, 3))
    >>> labels = jnp.array([0, 1])
    >>> hull_confidences(model_fn, params, images, images[::-1], images * 0.5, labels).shape
    (2, 64)

    Shape:
        images, vertex1, vertex2: (B, H, W, C); labels: (B,) -> (B, P) float32.
    """
    grid = grid or triangle_grid()
    vertices = jnp.stack([jnp.asarray(a, jnp.float32) for a in (images, vertex1, vertex2)])
    return evaluate_combinations(model_fn, params, vertices, grid.weights, labels, clip=clip,
                                 batch_size=batch_size, mesh=mesh, memory_budget=memory_budget,
                                 evaluate_fn=evaluate_fn)


def pair_weights(grid: TriangleGrid, pairs: Sequence[tuple[int, int]], rounds: int):
    """Vertex weights of all triangles (source, output r1, output r2) over 1 + R vertices.

    Shape:
        -> (len(pairs) * P, 1 + rounds) float32; rows grouped by pair.
    """
    p = grid.num_points
    w = np.zeros((len(pairs), p, 1 + rounds), np.float32)
    for i, (r1, r2) in enumerate(pairs):
        w[i, :, 0] = grid.weights[:, 0]
        w[i, :, 1 + r1] = grid.weights[:, 1]
        w[i, :, 1 + r2] = grid.weights[:, 2]
    return w.reshape(len(pairs) * p, 1 + rounds)


def multi_hull_confidences(model_fn, params, images, outputs, labels, *,
                           grid: TriangleGrid | None = None,
                           pairs: Sequence[tuple[int, int]] | None = None,
                           batch_size: int | None = None, mesh=None, memory_budget=None,
                           evaluate_fn: Evaluator | None = None) -> jax.Array:
    """Hull confidences of every triangle (x_s, outputs[r1], outputs[r2]) in one evaluation.

    >>> import jax, jax.numpy as jnp
    >>> model_fn = lambda p, x: x.reshape(len(x), -1) @ p
    >>> params = jax.random.normal(jax.random.key(0), (8 * 8 * 3, 4))
    >>> images = jax.random.uniform(jax.random.key(1), (2, 8, 8, 3))
    >>> labels = jnp.array([0, 1])
    >>> outputs = jnp.stack([images[::-1], images * 0.5, images * 0.9])
    >>> multi_hull_confidences(model_fn, params, images, outputs, labels).shape
    (2, 3, 64)

    Args:
        images: the sources x_s.
        outputs: the LST outputs of the same sources in each round.
        grid: default `triangle_grid()`.
        pairs: round pairs (default: all r1 < r2, 10 for 5 rounds).
        batch_size, mesh, memory_budget, evaluate_fn: placement, see `evaluate_combinations`.

    Shape:
        images: (B, H, W, C); outputs: (R, B, H, W, C); labels: (B,)
        -> (B, len(pairs), P) float32.
    """
    grid = grid or triangle_grid()
    outputs = jnp.asarray(outputs, jnp.float32)
    if outputs.ndim != 5:
        raise ValueError(f"outputs must have shape (R, B, H, W, C), got {outputs.shape}")
    rounds = outputs.shape[0]
    pairs = list(pairs) if pairs is not None else round_pairs(rounds)
    for r1, r2 in pairs:
        if not (0 <= r1 < rounds and 0 <= r2 < rounds and r1 != r2):
            raise ValueError(f"round pair {(r1, r2)} is invalid for {rounds} rounds")
    vertices = jnp.concatenate([jnp.asarray(images, jnp.float32)[None], outputs], axis=0)
    conf = evaluate_combinations(model_fn, params, vertices, pair_weights(grid, pairs, rounds),
                                 labels, batch_size=batch_size, mesh=mesh,
                                 memory_budget=memory_budget, evaluate_fn=evaluate_fn)
    return conf.reshape(conf.shape[0], len(pairs), grid.num_points)


def triangle_statistics(conf, *, grid: TriangleGrid | None = None,
                        deltas: Sequence[float] = DELTAS) -> jax.Array:
    """Table-2 statistics of each triangle from its grid confidences (`grid` default:
    `triangle_grid()`).

    >>> import jax.numpy as jnp
    >>> triangle_statistics(jnp.full((2, 64), 0.5)).shape
    (2, 8)

    Returns columns `stat_names(deltas=deltas)`: p_src, mean, frac_d for each d (strict `>`),
    edge_mean (both legs concatenated, source twice), edge_min (min over legs of conf - p_src).

    Shape:
        conf: (..., P) -> (..., 4 + len(deltas)) float32.
    """
    grid = grid or triangle_grid()
    conf = jnp.asarray(conf, jnp.float32)
    if conf.shape[-1] != grid.num_points:
        raise ValueError(f"conf has {conf.shape[-1]} points per triangle but the grid has "
                         f"{grid.num_points}")
    p_src = conf[..., grid.source]
    cols = [p_src, jnp.mean(conf, axis=-1)]
    for d in deltas:
        cols.append(jnp.mean((conf > (p_src - d)[..., None]).astype(jnp.float32), axis=-1))
    legs = jnp.concatenate([conf[..., grid.leg1], conf[..., grid.leg2]], axis=-1)
    cols.append(jnp.mean(legs, axis=-1))
    cols.append(jnp.min(legs - p_src[..., None], axis=-1))
    return jnp.stack(cols, axis=-1)


def per_source_statistics(tri_stats) -> jax.Array:
    """Per-source Table-2 row: triangle average of every column but the last (edge_min),
    which is the minimum over the triangles.

    >>> import jax.numpy as jnp
    >>> per_source_statistics(jnp.zeros((2, 10, 8))).shape
    (2, 8)

    Shape:
        tri_stats: (B, T, S) -> (B, S).
    """
    tri_stats = jnp.asarray(tri_stats)
    return jnp.concatenate([jnp.mean(tri_stats[..., :-1], axis=-2),
                            jnp.min(tri_stats[..., -1:], axis=-2)], axis=-1)
