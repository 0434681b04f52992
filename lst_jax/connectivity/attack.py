"""The paper's targeted optimisation attack (the detector's second attack, L-inf PGD, is
`lst_jax.robustness.pgd_examples`)."""

from __future__ import annotations

import numpy as np

from lst_jax.connectivity.config import AttackConfig
from lst_jax.connectivity.optimize import LoopSpec, OptimizeResult, optimize_inputs
from lst_jax.connectivity.paths import check_class_labels, check_inputs


def optimization_attack(model_fn, params, sources, targets, stop_loss=None,
                        config: AttackConfig = AttackConfig(), *,
                        batch_size: int | None = None,
                        min_batch: int | None = 8, mesh=None, record: bool = False,
                        progress: bool = False) -> OptimizeResult:
    """The paper's targeted, unconstrained attack (4.2), batched over sources.

    From each source K (an image of another class) minimise `CE(x, target) + 0.1 mean((x -
    K)^2) + TV weight * TV(x - K)` with Adam. With `stop_loss` (per row: the CE of the real
    class-`target` endpoint A), a row stops after update i once `i >= config.min_step` (the
    authors' `i > 32`) and its pre-update CE is below `stop_loss`, so the adversarial
    endpoint's loss is about that of the real one; the post-update iterate is returned.
    Without `stop_loss` all `config.steps` updates run. No clipping, no epsilon bound: run it
    in the model's normalised space (`model_in_space`) as the authors do.

    Shape:
        sources: (N, H, W, C) float32; targets: (N,) int; stop_loss: (N,) or scalar ->
        x (N, H, W, C).
    """
    sources = check_inputs("sources", sources)
    targets = check_class_labels("targets", targets, model_fn, params, sources.shape[1:],
                                 len(sources))
    rule = "none" if stop_loss is None else "pre_step"
    if stop_loss is not None:
        stop_loss = np.broadcast_to(np.asarray(stop_loss, np.float32), (len(sources),))
        if not np.all(np.isfinite(stop_loss)):
            raise ValueError("stop_loss must be finite")
    spec = LoopSpec(config.steps, stop=rule, min_step=config.min_step if stop_loss is not None
                    else 0, record=record)
    return optimize_inputs(model_fn, params, sources, targets, spec, lr=config.lr,
                           mse_weight=config.mse_weight, tv_weight=config.tv_weight,
                           threshold=-np.inf if stop_loss is None else stop_loss,
                           batch_size=batch_size, min_batch=min_batch, mesh=mesh,
                           progress=progress, desc="attack")
