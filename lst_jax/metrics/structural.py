"""SSIM with the semantics of torchmetrics as used by LST (2023 releases), in jax.numpy.

torchmetrics' `structural_similarity_index_measure(preds, target, data_range=1.0)` of 2023
(e.g. 1.2.x): an 11x11 Gaussian window (sigma 1.5, taps at offsets -5..5, normalised to sum
1) applied per channel, biased Gaussian-weighted moments, `C1 = (0.01 L)^2`, `C2 = (0.03 L)^2`
with `L = 1`; the images are reflect-padded by 5, convolved without padding, and the SSIM map
is cropped by 5 pixels on every side, so only windows lying entirely inside the image count.
Per image the map is averaged over `(H - 10) x (W - 10) x C`.

Reflect-padding followed by cropping the padded border is the same as a "valid" convolution
of the unpadded image, which is what this module computes (separably: 11 taps along H, then
along W). torchmetrics 1.4.2 and later (Lightning-AI/torchmetrics#2721, Sept 2024) average the
uncropped map instead, and 1.3.1-1.4.1 clamp the variances at 0 (a round-off-level change; not
done here, as in 1.2.x). `scikit-image`'s `structural_similarity` with
`gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1` crops the same
5-pixel border and gives the same number.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from lst_jax.metrics._validate import check_pair

SIGMA = 1.5
K1, K2 = 0.01, 0.03


def gaussian_taps(sigma: float = SIGMA) -> np.ndarray:
    """The normalised 1-D Gaussian window of torchmetrics: `int(3.5 sigma + 0.5) * 2 + 1` taps.

    Shape:
        -> (K,) float64, K = 11 for sigma = 1.5 (offsets -5..5).
    """
    size = int(3.5 * sigma + 0.5) * 2 + 1
    r = (size - 1) // 2
    g = np.exp(-0.5 * (np.arange(-r, r + 1, dtype=np.float64) / sigma) ** 2)
    return g / g.sum()


def _filter_valid_impl(x: jax.Array, taps: tuple[float, ...]) -> jax.Array:
    k = len(taps)
    h, w = x.shape[1] - k + 1, x.shape[2] - k + 1
    y = sum(t * x[:, i:i + h] for i, t in enumerate(taps))
    return sum(t * y[:, :, i:i + w] for i, t in enumerate(taps))


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def _filter_valid(x: jax.Array, taps: tuple[float, ...]) -> jax.Array:
    """Separable "valid" correlation with `taps` along axes 1 (H) and 2 (W) of NHWC `x`.

    The gradient is the transposed filter (zero-pad by K-1, correlate with the reversed taps),
    written out so that differentiating SSIM compiles as fast as evaluating it (the default
    transpose of 2 x 11 slices is a much larger program).
    """
    return _filter_valid_impl(x, taps)


def _filter_valid_fwd(x, taps):
    return _filter_valid_impl(x, taps), None


def _filter_valid_bwd(taps, _, g):
    p = len(taps) - 1
    g = jnp.pad(g, ((0, 0), (p, p), (p, p), (0, 0)))
    return (_filter_valid_impl(g, taps[::-1]),)


_filter_valid.defvjp(_filter_valid_fwd, _filter_valid_bwd)


def _ssim_map(a: jax.Array, b: jax.Array, sigma: float = SIGMA,
              data_range: float = 1.0) -> jax.Array:
    taps = tuple(float(t) for t in gaussian_taps(sigma))
    c1 = (K1 * data_range) ** 2
    c2 = (K2 * data_range) ** 2
    # Moments are shift-invariant: centring each image and channel on its own mean before
    # squaring cuts float32 cancellation in E[x^2] - E[x]^2 (identical in exact arithmetic;
    # the shift is a constant, so it is excluded from differentiation).
    sa = jax.lax.stop_gradient(jnp.mean(a, axis=(1, 2), keepdims=True))
    sb = jax.lax.stop_gradient(jnp.mean(b, axis=(1, 2), keepdims=True))
    ac, bc = a - sa, b - sb
    n = a.shape[0]
    m = _filter_valid(jnp.concatenate([ac, bc, ac * ac, bc * bc, ac * bc], axis=0), taps)
    mu_a, mu_b, e_aa, e_bb, e_ab = (m[i * n:(i + 1) * n] for i in range(5))
    var_a = e_aa - mu_a * mu_a
    var_b = e_bb - mu_b * mu_b
    cov = e_ab - mu_a * mu_b
    mu_a, mu_b = mu_a + sa, mu_b + sb
    num = (2.0 * mu_a * mu_b + c1) * (2.0 * cov + c2)
    den = (mu_a * mu_a + mu_b * mu_b + c1) * (var_a + var_b + c2)
    return num / den


def _ssim(a: jax.Array, b: jax.Array) -> jax.Array:
    return jnp.mean(_ssim_map(a, b), axis=(1, 2, 3))


_ssim_jit = jax.jit(_ssim)
_ssim_map_jit = jax.jit(_ssim_map)


def window_size(sigma: float = SIGMA) -> int:
    return len(gaussian_taps(sigma))


def ssim_map(a, b) -> jax.Array:
    """The per-pixel SSIM map over the fully interior windows (see `ssim`).

    Shape:
        a, b: (B, H, W, C) float in [0, 1], NHWC, same shape, H, W >= 11
        -> (B, H - 10, W - 10, C) float32.
    """
    a, b = check_pair(a, b, min_size=window_size())
    return _ssim_map_jit(a, b)


def ssim(a, b) -> jax.Array:
    """Per-image SSIM, 2023-era torchmetrics semantics (LST Table 1).

    Gaussian window 11x11 with sigma 1.5 per channel, `C1 = 0.01^2`, `C2 = 0.03^2` (data range
    1), biased Gaussian-weighted moments, mean over the `C x (H - 10) x (W - 10)` fully interior
    windows (224^2 -> 214^2, 32^2 -> 22^2). No variance clamping. Jittable and differentiable
    (reverse mode: `grad`/`vjp`; the filter has a custom VJP, so no `jvp`/`jacfwd`);
    symmetric in `a, b`; `ssim(a, a) == 1`.

    Args:
        a, b: image batches (order does not matter: SSIM is symmetric).

    Returns:
        SSIM per image, in [-1, 1].

    Shape:
        a, b: (B, H, W, C) float in [0, 1], NHWC, same shape, H, W >= 11 -> (B,) float32.

    Raises:
        ValueError: shape mismatch, wrong rank or dtype, images smaller than 11x11, values
            outside [0, 1] or non-finite.
    """
    a, b = check_pair(a, b, min_size=window_size())
    return _ssim_jit(a, b)


__all__ = ["ssim", "ssim_map", "gaussian_taps", "window_size"]
