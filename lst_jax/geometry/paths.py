"""Confidence along straight lines in pixel space (the "star" paths source -> LST output)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from lst_jax.geometry.probes import Evaluator, evaluate_combinations


def path_points(num_points: int = 11) -> np.ndarray:
    """`t = arange(n) / (n - 1)` in float64 (for 11 points: the reference's triangle legs)."""
    if isinstance(num_points, bool) or not isinstance(num_points, (int, np.integer)) \
            or num_points < 2:
        raise ValueError(f"num_points must be an integer >= 2, got {num_points!r}")
    return np.arange(num_points) / (num_points - 1)


def linear_path_confidences(model_fn, params, images, target_images, labels, *,
                            num_points: int = 11, clip: bool = False,
                            batch_size: int | None = None, mesh=None, memory_budget=None,
                            evaluate_fn: Evaluator | None = None,
                            score: str = "confidence") -> jax.Array:
    """Source-class confidence at `(1 - t) image + t target_image` for t = 0, 1/(n-1), ..., 1.

    `score="log_prob"` returns the log-softmax of the label instead (minus the cross-entropy
    along the path). Placement keywords: see `lst_jax.geometry.evaluate_combinations`.

    >>> import jax, jax.numpy as jnp
    >>> model_fn = lambda p, x: x.reshape(len(x), -1) @ p
    >>> params = jax.random.normal(jax.random.key(0), (8 * 8 * 3, 4))
    >>> images = jax.random.uniform(jax.random.key(1), (2, 8, 8, 3))
    >>> linear_path_confidences(model_fn, params, images, images[::-1], jnp.array([0, 1]),
    ...                         num_points=5).shape
    (2, 5)

    Shape:
        images, target_images: (B, H, W, C); labels: (B,) -> (B, num_points) float32.
    """
    t = path_points(num_points)
    weights = np.stack([1.0 - t, t], axis=1).astype(np.float32)
    images = jnp.asarray(images, jnp.float32)
    target_images = jnp.asarray(target_images, jnp.float32)
    if images.shape != target_images.shape:
        raise ValueError(f"images and target_images must have the same shape, got "
                         f"{images.shape} and {target_images.shape}")
    return evaluate_combinations(model_fn, params, jnp.stack([images, target_images]), weights,
                                 labels, clip=clip, batch_size=batch_size, mesh=mesh,
                                 memory_budget=memory_budget, evaluate_fn=evaluate_fn,
                                 score=score)
