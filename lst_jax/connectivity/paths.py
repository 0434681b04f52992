"""Cross-entropy along linear input paths and the barrier statistics of the paper.

The path losses reuse `lst_jax.geometry` (the linear-combination probe family and its
evaluators with `score="log_prob"`): the probes `(1 - t) A + t C` are built inside each chunk
from the two endpoints, so memory is one chunk of images; `mesh=` splits the points over
devices (`lst_jax.parallel.ShardedEvaluator`).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import numpy as np

from lst_jax.geometry.paths import linear_path_confidences, path_points
from lst_jax.geometry.probes import DEFAULT_CHUNK
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


def validate_pairs(model_fn, params, images, target_images, labels,
                   names=("images", "target_images", "labels")):
    """Checks a batch of pairs and their class; returns float32 / int32 numpy arrays."""
    images = check_inputs(names[0], images)
    target_images = check_inputs(names[1], target_images, like=images, like_name=names[0])
    labels = check_class_labels(names[2], labels, model_fn, params, images.shape[1:],
                                len(images))
    return images, target_images, labels


def _one_device_mesh():
    from lst_jax.parallel.mesh import data_mesh

    return data_mesh(jax.devices()[:1])


def path_losses_np(model_fn, params, images, target_images, labels, num_points: int, *,
                   batch_size: int | None = None, memory_budget=None,
                   mesh=None) -> np.ndarray:
    """`path_losses` without validation, as numpy (the connectivity functions' helper)."""
    # Rows padded (copies of the last pair) to a fixed ladder of sizes: pairs counts that
    # differ from call to call (connect's rounds) share a few compiled programs.
    images = np.asarray(images, np.float32)
    target_images = np.asarray(target_images, np.float32)
    labels = np.asarray(labels)
    b = len(images)
    extra = ladder_size(max(b, 1)) - b
    if extra:
        pad = lambda a: np.concatenate([a, np.repeat(a[-1:], extra, axis=0)])
        images, target_images, labels = pad(images), pad(target_images), pad(labels)
    if mesh is None and memory_budget is None:
        evaluate_fn = None
    else:
        from lst_jax.parallel.evaluators import ShardedEvaluator

        evaluate_fn = ShardedEvaluator(mesh=_one_device_mesh() if mesh is None else mesh,
                                       per_device_chunk=batch_size or (
                                           None if memory_budget else DEFAULT_CHUNK),
                                       memory_budget=memory_budget)
    logp = linear_path_confidences(model_fn, params, images, target_images, labels,
                                   num_points=num_points,
                                   batch_size=batch_size or DEFAULT_CHUNK,
                                   evaluate_fn=evaluate_fn, score="log_prob")
    return -np.asarray(logp, np.float32)[:b]


def path_losses_unchecked(model_fn, params, images, target_images, labels, *,
                          num_points: int = 250, batch_size: int = DEFAULT_CHUNK) -> jax.Array:
    """`path_losses` without validation, padding or placement: one `lax.map` over chunks of
    `batch_size` path points, traceable inside a user's `jax.jit`.

    Shape:
        images, target_images: (B, H, W, C); labels: (B,) -> (B, num_points) float32.
    """
    return -linear_path_confidences(model_fn, params, images, target_images, labels,
                                    num_points=num_points, batch_size=batch_size,
                                    score="log_prob")


def path_losses(model_fn, params, images, target_images, labels, *, num_points: int = 250,
                batch_size: int | None = None, memory_budget=None, mesh=None) -> jax.Array:
    """Cross-entropy of class `labels[b]` at `(1 - a) images[b] + a target_images[b]`, for
    `a` on the inclusive `linspace(0, 1, num_points)`, for every pair in one jitted, chunked
    call.

    The points are not clipped (the authors work in normalised space without clamping).
    Paper resolutions: 1000 (primary path, 4.1), 500 (secondary), 250 (4.2), 200 (4.3, F.1).

    Args:
        model_fn: `model_fn(params, x) -> logits` on inputs of the space of `images`
            (see `model_in_space`).
        num_points: points per path (>= 2).
        batch_size: path points per device per model call (None: planned from
            `memory_budget`, else 64, the geometry evaluators' chunk; the whole input would
            be pairs x points images).
        memory_budget: bytes per device (int or "512MiB") one call may use.
        mesh: None (one device) or a mesh with a "data" axis over which the points are
            split (`lst_jax.parallel.ShardedEvaluator`).

    Returns:
        float32 `jax.Array` (B, num_points), entry [b, i] = CE at `a_i`. The pairs are padded
        to `lst_jax.utils.compiles.ladder_size(B)` rows, so any B up to N compiles at most
        2 log2(N) evaluation programs.

    Raises:
        ValueError: mismatched shapes, non-finite inputs, a class outside the model's,
            num_points < 2.

    Shape:
        images, target_images: (B, H, W, C) float32, any range; labels: (B,) int in [0, K).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from lst_jax.connectivity import path_losses
        >>> model_fn = lambda p, x: x.reshape(len(x), -1) @ p
        >>> params = jax.random.normal(jax.random.key(0), (8 * 8 * 3, 4))
        >>> a, c = jnp.zeros((2, 8, 8, 3)), jnp.ones((2, 8, 8, 3))
        >>> path_losses(model_fn, params, a, c, jnp.array([0, 1]), num_points=5).shape
        (2, 5)
    """
    path_points(num_points)
    if batch_size is not None:
        checks.check_positive_int("batch_size", batch_size)
    images, target_images, labels = validate_pairs(model_fn, params, images, target_images,
                                                   labels)
    return jax.device_put(path_losses_np(model_fn, params, images, target_images, labels,
                                         num_points, batch_size=batch_size,
                                         memory_budget=memory_budget, mesh=mesh))


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

    max: jax.Array
    gap: jax.Array
    index: jax.Array
    alpha: jax.Array
    start: jax.Array
    end: jax.Array


def barrier_stats(losses) -> Barrier:
    """Barrier max, gap and position of loss curves.

    Shape:
        losses: (B, N) with N >= 2 -> `Barrier` of (B,) `jax.Array`s.

    Example:
        >>> from lst_jax.connectivity import barrier_stats
        >>> b = barrier_stats([[0.1, 0.9, 0.3]])
        >>> b.index.tolist(), round(float(b.gap[0]), 3)
        ([1], 0.6)
    """
    return jax.device_put(barrier_stats_np(losses))


def barrier_stats_np(losses) -> Barrier:
    """`barrier_stats` with numpy leaves (host-side bookkeeping of `connect` and the jobs)."""
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
