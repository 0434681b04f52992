"""Cross-entropy along linear input paths and the barrier statistics of the paper.

The path losses reuse `lst_jax.geometry` (the linear-combination probe family and its
evaluators with `score="log_prob"`): the probes `(1 - t) A + t C` are built inside each chunk
from the two endpoints, so memory is one chunk of images; pass
`evaluate_fn=lst_jax.parallel.ShardedEvaluator(mesh)` to split the points over devices.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from lst_jax.geometry.paths import linear_path_confidences, path_points
from lst_jax.geometry.probes import DEFAULT_CHUNK, Evaluator
from lst_jax.utils import checks
from lst_jax.utils.checks import num_classes_of
from lst_jax.utils.compiles import ladder_size

def check_inputs(name: str, x, *, like=None, like_name: str = ""):
    """A finite NHWC float batch in any range (connectivity inputs may live in normalised
    space); with `like`, the same shape as `like`. Returns float32 numpy."""
    if like is not None and hasattr(x, "shape") and tuple(np.shape(x)) != tuple(np.shape(like)):
        raise ValueError(f"{like_name} and {name} must have the same shape, got "
                         f"{tuple(np.shape(like))} and {tuple(np.shape(x))}")
    return np.asarray(checks.check_images(name, x, value_range=None))


def check_class_labels(name: str, labels, model_fn, params, image_shape, batch: int):
    """Integer labels (B,) in [0, K) for the model's K classes ("unknown class" otherwise)."""
    k = num_classes_of(model_fn, params, image_shape)
    return np.asarray(checks.check_labels(name, labels, batch=batch, num_classes=k))


def validate_pairs(model_fn, params, starts, ends, labels, names=("starts", "ends", "labels")):
    """Checks a batch of pairs and their class; returns float32 / int32 numpy arrays."""
    starts = check_inputs(names[0], starts)
    ends = check_inputs(names[1], ends, like=starts, like_name=names[0])
    labels = check_class_labels(names[2], labels, model_fn, params, starts.shape[1:],
                                len(starts))
    return starts, ends, labels


def path_losses(model_fn, params, starts, ends, labels, num_points: int = 250, *,
                chunk_size: int = DEFAULT_CHUNK, evaluate_fn: Evaluator | None = None,
                validate: bool = True) -> np.ndarray:
    """Cross-entropy of class `labels[b]` at `(1 - a) starts[b] + a ends[b]`, for `a` on the
    inclusive `linspace(0, 1, num_points)`, for every pair in one jitted, chunked call.

    The points are not clipped (the authors work in normalised space without clamping).
    Paper resolutions: 1000 (primary path, 4.1), 500 (secondary), 250 (4.2), 200 (4.3, F.1).

    Args:
        model_fn: `model_fn(params, x) -> logits` on inputs of the space of `starts`
            (see `model_in_space`).
        chunk_size: points per model call of the default evaluator.
        evaluate_fn: e.g. `lst_jax.parallel.ShardedEvaluator(mesh)` (mesh-aware).
        validate: check shapes, finiteness and classes first (`ValueError` naming the
            argument); False skips the host-side checks.

    Returns:
        numpy float32 (B, num_points), entry [b, i] = CE at `a_i`. The pairs are padded to
        `lst_jax.utils.compiles.ladder_size(B)` rows, so any B up to N compiles at most
        2 log2(N) evaluation programs.

    Shape:
        starts, ends: (B, H, W, C) float32, any range; labels: (B,) int in [0, K).
    """
    path_points(num_points)
    if validate:
        starts, ends, labels = validate_pairs(model_fn, params, starts, ends, labels)
    # Rows padded (copies of the last pair) to a fixed ladder of sizes: pairs counts that
    # differ from call to call (connect's rounds) share a few compiled programs.
    starts, ends = np.asarray(starts, np.float32), np.asarray(ends, np.float32)
    labels = np.asarray(labels)
    b = len(starts)
    extra = ladder_size(max(b, 1)) - b
    if extra:
        pad = lambda a: np.concatenate([a, np.repeat(a[-1:], extra, axis=0)])
        starts, ends, labels = pad(starts), pad(ends), pad(labels)
    logp = linear_path_confidences(model_fn, params, starts, ends, labels,
                                   num_points=num_points, batch_size=chunk_size,
                                   evaluate_fn=evaluate_fn, score="log_prob")
    return -np.asarray(logp, np.float32)[:b]


class Barrier(NamedTuple):
    """Barrier statistics of loss curves (the paper's Fig. 6 quantities).

    Attributes:
        max: `max_a L(x(a))`, endpoints included.
        gap: `max_a L(x(a)) - max(L(A), L(C))`, the height above the worse endpoint.
        index: argmax position on the curve (first maximum).
        alpha: `index / (N - 1)`, the barrier's interpolation coefficient.
        start, end: `L(A)`, `L(C)`.

    Shape:
        each (B,).
    """

    max: np.ndarray
    gap: np.ndarray
    index: np.ndarray
    alpha: np.ndarray
    start: np.ndarray
    end: np.ndarray


def barrier_stats(losses) -> Barrier:
    """Barrier max, gap and position of loss curves.

    Shape:
        losses: (B, N) with N >= 2 -> `Barrier` of (B,) arrays.
    """
    losses = np.asarray(losses, np.float32)
    if losses.ndim != 2 or losses.shape[1] < 2:
        raise ValueError(f"losses must have shape (B, N) with N >= 2, got {losses.shape}")
    idx = np.argmax(losses, axis=1)
    mx = losses[np.arange(len(losses)), idx]
    ends = np.maximum(losses[:, 0], losses[:, -1])
    return Barrier(max=mx, gap=mx - ends, index=idx.astype(np.int32),
                   alpha=(idx / (losses.shape[1] - 1)).astype(np.float32),
                   start=losses[:, 0].copy(), end=losses[:, -1].copy())


def path_point(starts, ends, index, num_points: int) -> np.ndarray:
    """Point `index` of the `num_points`-point path per pair, with the path probes' own
    float32 weights `(1 - t_i, t_i)` (so it is the point whose loss was measured).

    Shape:
        starts, ends: (B, H, W, C); index: (B,) int -> (B, H, W, C) float32.
    """
    t = path_points(num_points)[np.asarray(index)]
    w0 = (1.0 - t).astype(np.float32).reshape(-1, 1, 1, 1)
    w1 = t.astype(np.float32).reshape(-1, 1, 1, 1)
    return w0 * np.asarray(starts, np.float32) + w1 * np.asarray(ends, np.float32)
