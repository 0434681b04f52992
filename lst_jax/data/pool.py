"""Choosing images that a set of models classifies correctly and confidently."""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np


def predict_probs(model_fn, params, images: np.ndarray, batch: int = 256) -> np.ndarray:
    """Softmax probabilities of `model_fn` on host images, in batches.

    Shape:
        images: (N, H, W, C) in [0, 1] -> (N, K) float32.
    """
    fn = jax.jit(lambda p, x: jax.nn.softmax(model_fn(p, x), axis=-1))
    out = [np.asarray(fn(params, jnp.asarray(images[i:i + batch])))
           for i in range(0, len(images), batch)]
    return np.concatenate(out, axis=0)


def select_per_class(models: Sequence[tuple], images: np.ndarray, labels: np.ndarray,
                     classes: Sequence[int], min_conf: float = 0.6) -> np.ndarray:
    """Index of the first image of each class that every model classifies correctly with
    source-class confidence > `min_conf` (the reference's target-pool rule).

    Args:
        models: sequence of (model_fn, params).
        classes: the classes wanted, in the order of the returned indices.

    Returns:
        (len(classes),) int indices into `images`.

    Raises:
        ValueError: a class has no qualifying image (the message names the class).
    """
    ok = np.ones(len(images), bool)
    for model_fn, params in models:
        probs = predict_probs(model_fn, params, images)
        conf = probs[np.arange(len(images)), labels]
        ok &= (probs.argmax(-1) == labels) & (conf > min_conf)
    chosen, missing = [], []
    for c in classes:
        idx = np.flatnonzero(ok & (labels == c))
        if idx.size == 0:
            missing.append(int(c))
        else:
            chosen.append(int(idx[0]))
    if missing:
        raise ValueError(f"no image of class(es) {missing} is classified correctly with "
                         f"confidence > {min_conf} by every model")
    return np.asarray(chosen, np.int64)
