"""L-inf projected gradient descent (Madry et al., arXiv 1706.06083) on `model_fn`."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from jax import lax


def pgd_linf(model_fn, params, images, labels, key, *, eps: float, step_size: float,
             steps: int, random_start: bool = True, start=None):
    """Untargeted L-inf PGD maximising the cross-entropy, staying in [0, 1].

    Args:
        model_fn: `model_fn(params, images) -> logits`.
        eps: L-inf radius; step_size: signed-gradient step; steps: iterations (static).
        random_start: start from a uniform point in the eps-ball (drawn from `key`).
        start: explicit starting images (then `key` and `random_start` are unused), e.g. a
            random start drawn per example; projected onto the eps-ball and [0, 1].

    Returns:
        Adversarial images, same shape as `images`.

    Shape:
        images: (B, H, W, C) float32 in [0, 1]; labels: (B,) int.
    """
    def loss(x):
        logits = model_fn(params, x)
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).sum()

    x0 = images
    if start is not None:
        x0 = jnp.clip(jnp.clip(start, images - eps, images + eps), 0.0, 1.0)
    elif random_start:
        x0 = jnp.clip(images + jax.random.uniform(key, images.shape, images.dtype, -eps, eps),
                      0.0, 1.0)

    def body(x, _):
        g = jax.grad(loss)(x)
        x = x + step_size * jnp.sign(g)
        x = jnp.clip(jnp.clip(x, images - eps, images + eps), 0.0, 1.0)
        return x, None

    x, _ = lax.scan(body, x0, None, length=steps)
    return lax.stop_gradient(x)
