"""The paper's targeted optimisation attack (the detector's second attack, L-inf PGD, is
`lst_jax.robustness.pgd_examples`)."""

from __future__ import annotations

import numpy as np

from lst_jax.connectivity.config import AttackConfig
from lst_jax.connectivity.optimize import (
    LoopSpec,
    OptimizerConfig,
    OptimizeResult,
    as_jax_result,
    rows_per_call,
    run_batches,
)
from lst_jax.connectivity.paths import check_class_labels, check_inputs


def optimization_attack(model_fn, params, images, target_classes, *, stop_loss=None,
                        config: AttackConfig = AttackConfig(), batch_size: int | None = None,
                        memory_budget=None, mesh=None, record: bool = False,
                        progress: bool = False) -> OptimizeResult:
    """The paper's targeted, unconstrained attack (4.2), batched over source images.

    From each source K (an image of another class) minimise `CE(x, target) + 0.1 mean((x -
    K)^2) + TV weight * TV(x - K)` with Adam. With `stop_loss` (per row: the CE of the real
    class-`target` endpoint A), a row stops after update i once `i >= config.min_step` (the
    authors' `i > 32`) and its pre-update CE is below `stop_loss`, so the adversarial
    endpoint's loss is about that of the real one; the post-update iterate is returned.
    Without `stop_loss` all `config.steps` updates run. No clipping, no epsilon bound: run it
    in the model's normalised space (`model_in_space`) as the authors do.

    Args:
        images: the sources K; target_classes: the class each row is pushed to.
        stop_loss: None, a scalar or one loss per row (data: the real endpoints' CEs).
        batch_size: rows per device per program call (None: as many as fit
            `memory_budget` bytes per device, or all); mesh: None (one device) or a mesh
            whose "data" axis splits the rows.

    Shape:
        images: (N, H, W, C) float32; target_classes: (N,) int; stop_loss: (N,) or scalar
        -> `OptimizeResult` (`jax.Array`s) with x (N, H, W, C).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from lst_jax.connectivity import AttackConfig, optimization_attack
        >>> model_fn = lambda p, x: x.reshape(len(x), -1) @ p
        >>> params = jax.random.normal(jax.random.key(0), (8 * 8 * 3, 4))
        >>> res = optimization_attack(model_fn, params, jnp.zeros((2, 8, 8, 3)),
        ...                           jnp.array([1, 3]), stop_loss=0.5,
        ...                           config=AttackConfig(steps=100, min_step=0, lr=0.05))
        >>> bool((res.ce < 0.5).all())
        True
    """
    if not isinstance(config, AttackConfig):
        raise TypeError(f"config must be an AttackConfig, got {type(config).__name__}")
    images = check_inputs("images", images)
    target_classes = check_class_labels("target_classes", target_classes, model_fn, params,
                                        images.shape[1:], len(images))
    rule = "none" if stop_loss is None else "pre_step"
    if stop_loss is not None:
        try:
            stop_loss = np.broadcast_to(np.asarray(stop_loss, np.float32), (len(images),))
        except ValueError:
            raise ValueError(f"stop_loss must be a scalar or have shape ({len(images)},), "
                             f"got {np.shape(stop_loss)}") from None
        if not np.all(np.isfinite(stop_loss)):
            raise ValueError("stop_loss must be finite")
    spec = LoopSpec(config.steps, stop=rule, min_step=config.min_step if stop_loss is not None
                    else 0, record=record)
    hyper = OptimizerConfig(steps=config.steps, lr=config.lr, mse_weight=config.mse_weight,
                            tv_weight=config.tv_weight).hyper(len(images))
    if stop_loss is not None:
        hyper = hyper._replace(threshold=stop_loss.copy())
    return as_jax_result(run_batches(model_fn, params, images, target_classes, spec, hyper,
                                     chunk=rows_per_call(
                                         batch_size, mesh, memory_budget=memory_budget,
                                         model_fn=model_fn, params=params,
                                         image_shape=images.shape[1:], spec=spec), mesh=mesh,
                                     progress=progress, desc="attack"))
