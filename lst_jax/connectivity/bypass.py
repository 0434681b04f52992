"""Barrier bypass inside the hyperplane orthogonal to A -> C, and the recursion that turns a
linear path into a low-loss piecewise-linear one.

Recursion (the spec's generic form of the authors' two rounds; [ours] where the paper gives
no algorithm):

    connect(A, C, depth):
        L = losses on path(A, C, n_depth); i = argmax L     # n_0 = points, else segment_points
        if L[i] - max(L[0], L[-1]) <= threshold or depth == max_depth: return [A, C]
        B' = optimise(path point i)     # trained: `bypass_barrier`; untrained: `free_optimize`
        return connect(A, B', depth + 1)[:-1] + connect(B', C, depth + 1)

All pairs advance together: in round r every open segment of every pair is measured in one
path-loss call, and the barrier points of the segments that need it are optimised in one
batched optimiser call (chunks of one fixed size, so every round reuses one compiled program).
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import numpy as np

from lst_jax.connectivity.config import BypassConfig, ConnectConfig
from lst_jax.connectivity.optimize import (
    LoopSpec,
    OptimizerConfig,
    OptimizeResult,
    as_jax_result,
    rows_per_call,
    run_batches,
)
from lst_jax.connectivity.paths import (
    barrier_stats_np,
    check_inputs,
    path_losses_np,
    path_point,
    validate_pairs,
)
from lst_jax.connectivity.synthetic import free_rows
from lst_jax.utils.checks import check_positive_int
from lst_jax.utils.progress import Progress


def _bypass_spec(config: BypassConfig, record: bool) -> LoopSpec:
    return LoopSpec(config.steps, stop="none", projection=config.mode, record=record)


def _bypass_rows(model_fn, params, images, target_images, barrier_points, labels, config,
                 *, chunk, mesh, record=False, progress=False) -> OptimizeResult:
    """The bypass on validated numpy rows (numpy result)."""
    spec = _bypass_spec(config, record)
    b = np.asarray(barrier_points, np.float32)
    n = len(b)
    hyper = OptimizerConfig(steps=config.steps, lr=config.lr, mse_weight=config.mse_weight,
                            tv_weight=config.tv_weight).hyper(n)
    return run_batches(model_fn, params, b, labels, spec, hyper, anchor=b,
                       direction=np.asarray(target_images, np.float32)
                       - np.asarray(images, np.float32),
                       chunk=chunk, mesh=mesh, progress=progress, desc="bypass")


def bypass_barrier(model_fn, params, images, target_images, barrier_points, labels, *,
                   config: BypassConfig = BypassConfig(), batch_size: int | None = None,
                   memory_budget=None, mesh=None, record: bool = False,
                   progress: bool = False) -> OptimizeResult:
    """Moves each barrier point B to a low-loss B' inside the hyperplane through B orthogonal
    to C - A (the authors' `bypass_barrier`, batched over pairs).

    Objective `CE(x, c) + 0.1 mean((x - B)^2) + 1e-8 TV(x - B)` (config), Adam 5e-3, 1024
    updates, no early stop, the final iterate. `config.mode="faithful"` removes the gradient's
    component along C - A before each Adam step, as the authors (Adam's per-coordinate scaling
    then moves the iterate slightly off the plane); `"exact"` [ours] also projects the iterate
    back, so `<x - B, C - A> = 0` to round-off.

    Args:
        batch_size: rows per device per program call (None: as many as fit
            `memory_budget` bytes per device, or all); mesh: None (one device) or a mesh
            whose "data" axis splits the rows.
        record: also return the CE at every iterate (`trace`).

    Shape:
        images (A), target_images (C), barrier_points (B): (N, H, W, C) float32; labels:
        (N,) -> `OptimizeResult` (`jax.Array`s) with x = B' (N, H, W, C).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from lst_jax.connectivity import BypassConfig, bypass_barrier
        >>> model_fn = lambda p, x: x.reshape(len(x), -1) @ p
        >>> params = jax.random.normal(jax.random.key(0), (8 * 8 * 3, 4))
        >>> a, c = jnp.zeros((1, 8, 8, 3)), jnp.ones((1, 8, 8, 3))
        >>> res = bypass_barrier(model_fn, params, a, c, (a + c) / 2, jnp.array([2]),
        ...                      config=BypassConfig(steps=10, mode="exact"))
        >>> res.x.shape, int(res.steps[0])
        ((1, 8, 8, 3), 10)
    """
    if not isinstance(config, BypassConfig):
        raise TypeError(f"config must be a BypassConfig, got {type(config).__name__}")
    images, target_images, labels = validate_pairs(model_fn, params, images, target_images,
                                                   labels)
    barrier_points = check_inputs("barrier_points", barrier_points, like=images,
                                  like_name="images")
    return as_jax_result(_bypass_rows(model_fn, params, images, target_images,
                                      barrier_points, labels, config,
                                      chunk=rows_per_call(
                                          batch_size, mesh, memory_budget=memory_budget,
                                          model_fn=model_fn, params=params,
                                          image_shape=images.shape[1:],
                                          spec=_bypass_spec(config, record)),
                                      mesh=mesh,
                                      record=record, progress=progress))


@dataclasses.dataclass
class _Segment:
    start: np.ndarray          # (H, W, C)
    end: np.ndarray
    a0: float                  # position of the ends on the primary path (for figures)
    a1: float
    losses: np.ndarray | None = None
    final: bool = False


class ConnectResult(NamedTuple):
    """A low-loss piecewise-linear path per pair.

    Attributes:
        primary: losses along the linear path A -> C (`points` points).
        vertices: the path's vertices A, B'..., C in order, padded with copies of C.
        num_vertices: number of real vertices (2 = no bypass was needed).
        vertex_alpha: each vertex's position on the primary path (a bypass point takes the
            position of the barrier it replaced), padded with 1.
        segment_losses: losses along each final segment (`segment_points` points), NaN padded.
        round_max, round_gap: barrier max / gap of every segment measured in round r (in
            path order), NaN where a segment was not measured (final earlier, or absent).
        round_losses: the curves measured in rounds 1.. (round r at index r - 1), NaN where
            not measured; round_alpha: the boundaries of round r's segments on the primary
            path (NaN padded).
        optimized_pair, optimized_round: which pair / round each optimised point belongs to;
        barrier_points, bypass_points: B and B' of every optimisation (in that order);
        barrier_ce, bypass_ce: their CEs.

    Shape:
        primary: (P, points); vertices: (P, V, H, W, C) with V = 2^max_depth + 1;
        num_vertices: (P,); vertex_alpha: (P, V); segment_losses: (P, V - 1, segment_points);
        round_max, round_gap: (max_depth + 1, P, V - 1); round_losses: (max_depth, P, V - 1,
        segment_points); round_alpha: (max_depth + 1, P, V); per optimisation (M,) /
        (M, H, W, C).
    """

    primary: jax.Array
    vertices: jax.Array
    num_vertices: jax.Array
    vertex_alpha: jax.Array
    segment_losses: jax.Array
    round_max: jax.Array
    round_gap: jax.Array
    round_losses: jax.Array
    round_alpha: jax.Array
    optimized_pair: jax.Array
    optimized_round: jax.Array
    barrier_points: jax.Array
    bypass_points: jax.Array
    barrier_ce: jax.Array
    bypass_ce: jax.Array

    def max_final_gap(self) -> np.ndarray:
        """Per pair, the largest barrier gap among the final segments (numpy). Shape: (P,)."""
        n = np.asarray(self.num_vertices) - 1
        seg = np.asarray(self.segment_losses)
        out = np.empty(len(n), np.float32)
        for p in range(len(n)):
            s = seg[p, :n[p]]
            out[p] = np.max(np.max(s, axis=1) - np.maximum(s[:, 0], s[:, -1]))
        return out


def _pad_rows(a: np.ndarray, multiple: int) -> np.ndarray:
    extra = -len(a) % multiple
    return a if not extra else np.concatenate([a, np.repeat(a[-1:], extra, axis=0)])


def connect(model_fn, params, images, target_images, labels, *,
            config: ConnectConfig = ConnectConfig(), batch_size: int | None = None,
            memory_budget=None, mesh=None, progress: bool = False) -> ConnectResult:
    """Bypasses the barriers between A and C recursively until every segment's barrier gap
    is at most `config.threshold` or `config.max_depth` rounds of bypassing are done.

    Args:
        config: `ConnectConfig` (method, path resolutions, threshold, depth, optimisers).
        batch_size, memory_budget: path points per device per model call of the path losses
            (see `path_losses`); the optimiser runs the pairs of a round in batches of the
            pair count (fewer where `memory_budget` bytes per device hold fewer rows).
        mesh: None (one device) or a mesh whose "data" axis splits the path points and the
            optimiser batches.

    Returns:
        `ConnectResult` (`jax.Array` leaves).

    Raises:
        ValueError: pairs of different shapes, non-finite inputs, an unknown class.

    Shape:
        images (A), target_images (C): (P, H, W, C) float32 in the model's input space;
        labels: (P,) int.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from lst_jax.connectivity import ConnectConfig, BypassConfig, connect
        >>> model_fn = lambda p, x: x.reshape(len(x), -1) @ p
        >>> params = jax.random.normal(jax.random.key(0), (8 * 8 * 3, 4))
        >>> a, c = jnp.zeros((1, 8, 8, 3)), jnp.ones((1, 8, 8, 3))
        >>> cfg = ConnectConfig(points=11, max_depth=1, bypass=BypassConfig(steps=5))
        >>> res = connect(model_fn, params, a, c, jnp.array([0]), config=cfg)
        >>> res.primary.shape, res.vertices.shape
        ((1, 11), (1, 3, 8, 8, 3))
    """
    if not isinstance(config, ConnectConfig):
        raise TypeError(f"config must be a ConnectConfig, got {type(config).__name__}")
    if batch_size is not None:
        check_positive_int("batch_size", batch_size)
    method, points, threshold = config.method, config.points, config.threshold
    max_depth, segment_points = config.max_depth, config.resolved_segment_points
    starts, ends, labels = validate_pairs(model_fn, params, images, target_images, labels)
    n_pairs = len(starts)
    opt_chunk = n_pairs
    if memory_budget is not None:
        spec = (_bypass_spec(config.bypass, False) if method == "bypass"
                else LoopSpec(config.free.steps, stop="pre_step"))
        opt_chunk = min(n_pairs, rows_per_call(None, mesh, memory_budget=memory_budget,
                                               model_fn=model_fn, params=params,
                                               image_shape=starts.shape[1:], spec=spec))
    segs = [[_Segment(starts[p], ends[p], 0.0, 1.0)] for p in range(n_pairs)]
    width = 2 ** max_depth
    round_max = np.full((max_depth + 1, n_pairs, width), np.nan, np.float32)
    round_gap = np.full_like(round_max, np.nan)
    round_losses = np.full((max_depth, n_pairs, width, segment_points), np.nan, np.float32)
    round_alpha = np.full((max_depth + 1, n_pairs, width + 1), np.nan, np.float32)
    opt_pair, opt_round, opt_b, opt_bp, opt_ce0, opt_ce1 = [], [], [], [], [], []
    primary = None

    def measure(keys, n):
        """Ends, labels and losses of segments `keys` ((pair, index) pairs), in one call
        padded to a multiple of the pair count (few distinct program sizes)."""
        s_img = np.stack([segs[p][j].start for p, j in keys])
        e_img = np.stack([segs[p][j].end for p, j in keys])
        y = labels[[p for p, _ in keys]]
        losses = path_losses_np(model_fn, params, _pad_rows(s_img, n_pairs),
                                _pad_rows(e_img, n_pairs), _pad_rows(y, n_pairs), n,
                                batch_size=batch_size, memory_budget=memory_budget, mesh=mesh)
        return s_img, e_img, y, losses[:len(keys)]

    with Progress(max_depth + 1, desc="bypass rounds", unit="rounds",
                  enabled=progress) as bar:
        for r in range(max_depth + 1):
            n = points if r == 0 else segment_points
            open_ = [(p, j) for p in range(n_pairs) for j, s in enumerate(segs[p])
                     if not s.final]
            if not open_:
                bar.update(max_depth + 1 - r)
                break
            s_img, e_img, y, losses = measure(open_, n)
            if r == 0:
                primary = losses
            bar_r = barrier_stats_np(losses)
            split = (bar_r.gap > threshold) & (r < max_depth)
            for i, (p, j) in enumerate(open_):
                segs[p][j].losses = losses[i]
            for i, (p, j) in enumerate(open_):
                round_max[r, p, j] = bar_r.max[i]
                round_gap[r, p, j] = bar_r.gap[i]
                if r > 0:
                    round_losses[r - 1, p, j] = losses[i]
            for p in range(n_pairs):
                round_alpha[r, p, :len(segs[p]) + 1] = [segs[p][0].a0] + [s.a1 for s in segs[p]]
            idx = np.flatnonzero(split)
            new_points = {}
            if len(idx):
                b = path_point(s_img[idx], e_img[idx], bar_r.index[idx], n)
                if method == "bypass":
                    res = _bypass_rows(model_fn, params, s_img[idx], e_img[idx], b, y[idx],
                                       config.bypass, chunk=opt_chunk, mesh=mesh)
                else:
                    res = free_rows(model_fn, params, b, y[idx], config.free,
                                    chunk=opt_chunk, mesh=mesh)
                for k, i in enumerate(idx):
                    new_points[open_[i]] = (res.x[k], float(bar_r.alpha[i]))
                    opt_pair.append(open_[i][0])
                    opt_round.append(r)
                    opt_b.append(b[k])
                    opt_bp.append(res.x[k])
                    opt_ce0.append(bar_r.max[i])
                    opt_ce1.append(res.ce[k])
            for i, (p, j) in enumerate(open_):
                if not split[i]:
                    segs[p][j].final = True
            for p in range(n_pairs):
                new = []
                for j, s in enumerate(segs[p]):
                    if (p, j) in new_points:
                        x, t = new_points[(p, j)]
                        a = s.a0 + t * (s.a1 - s.a0)
                        new += [_Segment(s.start, x, s.a0, a), _Segment(x, s.end, a, s.a1)]
                    else:
                        new.append(s)
                segs[p] = new
            bar.update(1)
    # Final segments measured at another resolution (the unsplit primary) are re-measured.
    redo = [(p, j) for p in range(n_pairs) for j, s in enumerate(segs[p])
            if len(s.losses) != segment_points]
    if redo:
        again = measure(redo, segment_points)[3]
        for i, (p, j) in enumerate(redo):
            segs[p][j].losses = again[i]
    shape = starts.shape[1:]
    vertices = np.zeros((n_pairs, width + 1) + shape, np.float32)
    alpha = np.ones((n_pairs, width + 1), np.float32)
    seg_losses = np.full((n_pairs, width, segment_points), np.nan, np.float32)
    num_vertices = np.zeros(n_pairs, np.int32)
    for p in range(n_pairs):
        vs = [segs[p][0].start] + [s.end for s in segs[p]]
        num_vertices[p] = len(vs)
        vertices[p, :len(vs)] = np.stack(vs)
        vertices[p, len(vs):] = vs[-1]
        alpha[p, :len(vs)] = [segs[p][0].a0] + [s.a1 for s in segs[p]]
        for j, s in enumerate(segs[p]):
            seg_losses[p, j] = s.losses
    stack = lambda xs, dt=np.float32: (np.stack(xs).astype(dt) if xs
                                       else np.zeros((0,) + shape, dt))
    return jax.device_put(ConnectResult(
        primary=primary, vertices=vertices, num_vertices=num_vertices, vertex_alpha=alpha,
        segment_losses=seg_losses, round_max=round_max, round_gap=round_gap,
        round_losses=round_losses, round_alpha=round_alpha,
        optimized_pair=np.asarray(opt_pair, np.int32),
        optimized_round=np.asarray(opt_round, np.int32),
        barrier_points=stack(opt_b), bypass_points=stack(opt_bp),
        barrier_ce=np.asarray(opt_ce0, np.float32),
        bypass_ce=np.asarray(opt_ce1, np.float32)))
