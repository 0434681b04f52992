"""Adversarial examples: the paper's targeted optimisation attack, and L-inf PGD."""

from __future__ import annotations

import functools

import jax
import numpy as np

from lst_jax.attacks import pgd_linf
from lst_jax.connectivity.config import AttackConfig, PGDConfig
from lst_jax.connectivity.optimize import LoopSpec, OptimizeResult, optimize_inputs
from lst_jax.connectivity.paths import check_class_labels, check_inputs
from lst_jax.utils import checks


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


@functools.partial(jax.jit, static_argnames=("model_fn", "steps"))
def _pgd_jit(model_fn, params, images, labels, key, eps, step_size, steps):
    return pgd_linf(model_fn, params, images, labels, key, eps=eps, step_size=step_size,
                    steps=steps)


def pgd_attack(model_fn, params, images, labels, key, config: PGDConfig = PGDConfig(), *,
               batch_size: int = 64) -> np.ndarray:
    """Untargeted L-inf PGD (`lst_jax.attacks.pgd_linf`) on [0, 1] pixels, in jitted
    chunks of `batch_size` (the last one padded; one compiled program); chunk i uses
    `fold_in(key, i)`.

    Shape:
        images: (N, H, W, C) float32 in [0, 1]; labels: (N,) int -> (N, H, W, C) in [0, 1].
    """
    images = np.asarray(checks.check_images("images", images))
    labels = check_class_labels("labels", labels, model_fn, params, images.shape[1:],
                                len(images))
    batch_size = min(checks.check_positive_int("batch_size", batch_size), len(images))
    out = []
    for i, start in enumerate(range(0, len(images), batch_size)):
        x, y = images[start:start + batch_size], labels[start:start + batch_size]
        m = len(x)
        if m < batch_size:
            x = np.concatenate([x, np.repeat(x[-1:], batch_size - m, axis=0)])
            y = np.concatenate([y, np.repeat(y[-1:], batch_size - m)])
        xa = _pgd_jit(model_fn, params, x, y, jax.random.fold_in(key, i), config.eps,
                      config.step_size, config.steps)
        out.append(np.asarray(xa)[:m])
    return np.concatenate(out)
