"""Synthetic inputs (FVO from noise) and the free optimisation of untrained models (4.3)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from lst_jax.connectivity.config import FreeConfig, FVOConfig
from lst_jax.connectivity.optimize import LoopSpec, OptimizeResult, optimize_inputs
from lst_jax.connectivity.paths import check_class_labels, check_inputs


def noise_inputs(key, n: int, image_shape, scale: float = 0.01) -> np.ndarray:
    """`scale * N(0, I)` starts, one independent key per row (`fold_in(key, row)`), so a
    row's start does not depend on the batch it is drawn in.

    Shape:
        -> (n, H, W, C) float32.
    """
    keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(n))
    draw = jax.vmap(lambda k: jax.random.normal(k, tuple(image_shape), jnp.float32))
    return np.asarray(draw(keys)) * np.float32(scale)


def feature_visualization(model_fn, params, labels, key, image_shape, tv_weight=0.0,
                          config: FVOConfig = FVOConfig(), *, x0=None,
                          batch_size: int | None = None,
                          min_batch: int | None = 8, mesh=None, record: bool = False,
                          progress: bool = False) -> OptimizeResult:
    """Class-optimal synthetic inputs by feature visualisation by optimisation (FVO).

    Batched over rows (classes x seeds x TV weights): one jitted loop, per-row early stop
    (finished rows are frozen), the authors' rules exactly: after every Adam update the CE is
    re-evaluated, the lowest-CE iterate so far is kept (the start never counts), the row stops
    once that post-update CE is below `config.threshold`; the kept iterate is returned.

    Args:
        labels: class per row; tv_weight: scalar or per row (paper: 2.5e-7 for A, 0 for C).
        key: starts `config.init_scale * N(0, I)` from `fold_in(key, row)` (ignored with `x0`).
        image_shape: (H, W, C) of the model's input space.
        x0: explicit starts instead of noise.
        record: also return the CE after every update (`trace`).

    Returns:
        `OptimizeResult`: x (the best iterate), ce (its CE), steps (updates), stopped
        (threshold reached), trace.

    Shape:
        labels: (N,) int -> x (N, H, W, C).
    """
    labels = np.asarray(labels)
    if labels.ndim != 1 or len(labels) == 0:
        raise ValueError(f"labels must be a non-empty vector of classes, got shape "
                         f"{labels.shape}")
    image_shape = tuple(int(s) for s in image_shape)
    if len(image_shape) != 3:
        raise ValueError(f"image_shape must be (H, W, C), got {image_shape}")
    labels = check_class_labels("labels", labels, model_fn, params, image_shape, len(labels))
    if x0 is None:
        x0 = noise_inputs(key, len(labels), image_shape, config.init_scale)
    else:
        x0 = check_inputs("x0", x0)
    spec = LoopSpec(config.steps, stop="post_step", keep_best=True, record=record)
    return optimize_inputs(model_fn, params, x0, labels, spec, lr=config.lr,
                           weight_decay=config.weight_decay, tv_weight=tv_weight,
                           threshold=config.threshold, anchor=np.zeros_like(x0),
                           batch_size=batch_size, min_batch=min_batch, mesh=mesh,
                           progress=progress, desc="FVO")


def free_optimize(model_fn, params, x0, labels, config: FreeConfig = FreeConfig(), *,
                  batch_size: int | None = None,
                  min_batch: int | None = 8, mesh=None, record: bool = False,
                  progress: bool = False) -> OptimizeResult:
    """Free optimisation of inputs (the untrained-model bypass of 4.3, `optimize_point`).

    CE only (no projection, no deviation penalty), Adam with coupled L2; a row stops after the
    update whose *pre-update* CE is below `config.threshold`, and the post-update iterate is
    returned (the authors' order).

    Shape:
        x0: (N, H, W, C) float32 (finite, any range); labels: (N,) int -> x (N, H, W, C).
    """
    x0 = check_inputs("x0", x0)
    labels = check_class_labels("labels", labels, model_fn, params, x0.shape[1:], len(x0))
    spec = LoopSpec(config.steps, stop="pre_step", record=record)
    return optimize_inputs(model_fn, params, x0, labels, spec, lr=config.lr,
                           weight_decay=config.weight_decay, threshold=config.threshold,
                           batch_size=batch_size, min_batch=min_batch, mesh=mesh,
                           progress=progress, desc="free optimisation")
