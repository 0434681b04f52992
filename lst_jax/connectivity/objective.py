"""The per-sample objectives of the authors' code: cross-entropy, deviation penalties."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def total_variation(z: jax.Array) -> jax.Array:
    """Anisotropic L1 total variation per image, summed over rows, columns and channels
    (the authors' "high-frequency penalty": `sum|dz/dw| + sum|dz/dh|`).

    Shape:
        z: (B, H, W, C) -> (B,).

    Example:
        >>> import jax.numpy as jnp
        >>> from lst_jax.connectivity import total_variation
        >>> total_variation(jnp.zeros((1, 2, 2, 1)).at[0, 0, 0, 0].set(1.0)).tolist()
        [2.0]
    """
    dw = jnp.abs(z[:, :, 1:, :] - z[:, :, :-1, :]).sum(axis=(1, 2, 3))
    dh = jnp.abs(z[:, 1:, :, :] - z[:, :-1, :, :]).sum(axis=(1, 2, 3))
    return dw + dh


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Unreduced cross-entropy of integer labels (float32).

    Shape:
        logits: (B, K); labels: (B,) int -> (B,).
    """
    return optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32),
                                                           labels.astype(jnp.int32))


def deviation_objective(model_fn, params, x, labels, anchor, mse_weight, tv_weight):
    """`CE(model(x), c) + mse_weight * mean((x - a)^2) + tv_weight * TV(x - a)` per sample.

    The MSE is a mean over the H*W*C elements, TV a sum (the authors' reductions, so their
    weights 0.1 / 1e-8 / 2.5e-7 mean the same here). FVO's `TV(x)` is the case `a = 0`.

    Shape:
        x, anchor: (B, H, W, C); labels: (B,); mse_weight, tv_weight: (B,) ->
        (total (B,), ce (B,)).
    """
    ce = cross_entropy(model_fn(params, x), labels)
    d = x - anchor
    return ce + mse_weight * jnp.mean(d * d, axis=(1, 2, 3)) + tv_weight * total_variation(d), ce
