"""Confidence along straight lines in pixel space (the "star" paths source -> LST output)."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from lst_jax.geometry.probes import DEFAULT_CHUNK, Evaluator, evaluate_combinations


def path_points(num_points: int = 11) -> np.ndarray:
    """`t = arange(n) / (n - 1)` in float64 (for 11 points: the reference's triangle legs)."""
    if isinstance(num_points, bool) or not isinstance(num_points, (int, np.integer)) \
            or num_points < 2:
        raise ValueError(f"num_points must be an integer >= 2, got {num_points!r}")
    return np.arange(num_points) / (num_points - 1)


def linear_path_confidences(model_fn, params, starts, ends, labels, num_points: int = 11, *,
                            clip: bool = False, chunk_size: int = DEFAULT_CHUNK,
                            evaluate_fn: Evaluator | None = None, score: str = "confidence"):
    """Source-class confidence at `(1 - t) start + t end` for t = 0, 1/(n-1), ..., 1.

    `score="log_prob"` returns the log-softmax of the label instead (minus the cross-entropy
    along the path).

    Shape:
        starts, ends: (B, H, W, C); labels: (B,) -> (B, num_points) float32.
    """
    t = path_points(num_points)
    weights = np.stack([1.0 - t, t], axis=1).astype(np.float32)
    starts, ends = jnp.asarray(starts, jnp.float32), jnp.asarray(ends, jnp.float32)
    if starts.shape != ends.shape:
        raise ValueError(f"starts and ends must have the same shape, got {starts.shape} and "
                         f"{ends.shape}")
    return evaluate_combinations(model_fn, params, jnp.stack([starts, ends]), weights, labels,
                                 clip=clip, chunk_size=chunk_size, evaluate_fn=evaluate_fn,
                                 score=score)
