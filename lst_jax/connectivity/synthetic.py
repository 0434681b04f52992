"""Synthetic inputs (FVO from noise) and the free optimisation of untrained models (4.3)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from lst_jax.connectivity.config import FreeConfig, FVOConfig
from lst_jax.connectivity.optimize import (
    LoopSpec,
    OptimizerConfig,
    OptimizeResult,
    as_jax_result,
    rows_per_call,
    run_batches,
)
from lst_jax.connectivity.paths import check_class_labels, check_inputs
from lst_jax.utils.checks import check_key, check_nonnegative, check_positive_int


def noise_inputs(*, key, num: int, image_shape, scale: float = 0.01) -> jax.Array:
    """`scale * N(0, I)` starts, one independent key per row (`fold_in(key, row)`), so a
    row's start does not depend on the batch it is drawn in.

    Args:
        key: a typed PRNG key (`jax.random.key(seed)`).
        num: number of rows; image_shape: (H, W, C); scale: the standard deviation
            (FVO: `FVOConfig.init_scale`).

    Shape:
        -> (num, H, W, C) float32.

    Example:
        >>> import jax
        >>> from lst_jax.connectivity import noise_inputs
        >>> noise_inputs(key=jax.random.key(0), num=2, image_shape=(8, 8, 3)).shape
        (2, 8, 8, 3)
    """
    check_key(key)
    check_positive_int("num", num)
    image_shape = tuple(int(s) for s in image_shape)
    if len(image_shape) != 3:
        raise ValueError(f"image_shape must be (H, W, C), got {image_shape}")
    scale = check_nonnegative("scale", scale)
    keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(num))
    draw = jax.vmap(lambda k: jax.random.normal(k, image_shape, jnp.float32))
    return draw(keys) * jnp.float32(scale)


def feature_visualization(model_fn, params, images, labels, *,
                          config: FVOConfig = FVOConfig(), batch_size: int | None = None,
                          memory_budget=None, mesh=None, record: bool = False,
                          progress: bool = False) -> OptimizeResult:
    """Class-optimal synthetic inputs by feature visualisation by optimisation (FVO), from
    the starts `images` (the paper's: `noise_inputs(key=..., scale=config.init_scale)`).

    Batched over rows (classes x seeds x TV weights): one jitted loop, per-row early stop
    (finished rows are frozen), the authors' rules exactly: after every Adam update the CE is
    re-evaluated, the lowest-CE iterate so far is kept (the start never counts), the row stops
    once that post-update CE is below `config.threshold`; the kept iterate is returned.

    Args:
        images: the starts; labels: the class per row.
        config: `FVOConfig`; `config.tv_weight` a float or one weight per row (paper:
            2.5e-7 for A, 0 for C).
        batch_size: rows per device per program call (None: as many as fit
            `memory_budget` bytes per device, or all); mesh: None (one device) or a mesh
            whose "data" axis splits the rows.
        record: also return the CE after every update (`trace`).

    Returns:
        `OptimizeResult` (`jax.Array`s): x (the best iterate), ce (its CE), steps (updates),
        stopped (threshold reached), trace.

    Shape:
        images: (N, H, W, C) float32; labels: (N,) int -> x (N, H, W, C).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from lst_jax.connectivity import FVOConfig, feature_visualization, noise_inputs
        >>> model_fn = lambda p, x: x.reshape(len(x), -1) @ p
        >>> params = jax.random.normal(jax.random.key(0), (8 * 8 * 3, 4))
        >>> cfg = FVOConfig(steps=50, threshold=0.05, tv_weight=(1e-3, 0.0))
        >>> x0 = noise_inputs(key=jax.random.key(1), num=2, image_shape=(8, 8, 3),
        ...                   scale=cfg.init_scale)
        >>> res = feature_visualization(model_fn, params, x0, jnp.array([2, 2]), config=cfg)
        >>> bool((res.ce < 0.05).all())
        True
    """
    if not isinstance(config, FVOConfig):
        raise TypeError(f"config must be an FVOConfig, got {type(config).__name__}")
    images = check_inputs("images", images)
    labels = check_class_labels("labels", labels, model_fn, params, images.shape[1:],
                                len(images))
    spec = LoopSpec(config.steps, stop="post_step", keep_best=True, record=record)
    hyper = OptimizerConfig(steps=config.steps, lr=config.lr,
                            weight_decay=config.weight_decay, tv_weight=config.tv_weight,
                            threshold=config.threshold).hyper(len(images))
    chunk = rows_per_call(batch_size, mesh, memory_budget=memory_budget, model_fn=model_fn,
                          params=params, image_shape=images.shape[1:], spec=spec)
    return as_jax_result(run_batches(model_fn, params, images, labels, spec, hyper,
                                     anchor=np.zeros_like(images), chunk=chunk, mesh=mesh,
                                     progress=progress, desc="FVO"))


def free_rows(model_fn, params, images, labels, config: FreeConfig, *, chunk, mesh,
              record=False, progress=False) -> OptimizeResult:
    """The free optimisation of validated numpy rows (numpy result)."""
    spec = LoopSpec(config.steps, stop="pre_step", record=record)
    hyper = OptimizerConfig(steps=config.steps, lr=config.lr,
                            weight_decay=config.weight_decay,
                            threshold=config.threshold).hyper(len(images))
    return run_batches(model_fn, params, images, labels, spec, hyper, chunk=chunk, mesh=mesh,
                       progress=progress, desc="free optimisation")


def free_optimize(model_fn, params, images, labels, *, config: FreeConfig = FreeConfig(),
                  batch_size: int | None = None, memory_budget=None, mesh=None,
                  record: bool = False, progress: bool = False) -> OptimizeResult:
    """Free optimisation of inputs (the untrained-model bypass of 4.3, `optimize_point`).

    CE only (no projection, no deviation penalty), Adam with coupled L2; a row stops after the
    update whose *pre-update* CE is below `config.threshold`, and the post-update iterate is
    returned (the authors' order). `batch_size`, `memory_budget`, `mesh`, `record` as in
    `feature_visualization`.

    Shape:
        images: (N, H, W, C) float32 (finite, any range); labels: (N,) int -> x (N, H, W, C).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from lst_jax.connectivity import FreeConfig, free_optimize
        >>> model_fn = lambda p, x: x.reshape(len(x), -1) @ p
        >>> params = jax.random.normal(jax.random.key(0), (8 * 8 * 3, 4))
        >>> res = free_optimize(model_fn, params, jnp.zeros((1, 8, 8, 3)), jnp.array([3]),
        ...                     config=FreeConfig(steps=100, threshold=0.01))
        >>> bool(res.stopped[0])
        True
    """
    if not isinstance(config, FreeConfig):
        raise TypeError(f"config must be a FreeConfig, got {type(config).__name__}")
    images = check_inputs("images", images)
    labels = check_class_labels("labels", labels, model_fn, params, images.shape[1:],
                                len(images))
    chunk = rows_per_call(batch_size, mesh, memory_budget=memory_budget, model_fn=model_fn,
                          params=params, image_shape=images.shape[1:],
                          spec=LoopSpec(config.steps, stop="pre_step", record=record))
    return as_jax_result(free_rows(model_fn, params, images, labels, config, chunk=chunk,
                                   mesh=mesh,
                                   record=record, progress=progress))
