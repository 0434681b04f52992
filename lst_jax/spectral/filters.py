"""The coalition filter (`../shared/spec/iaside.md` section 3, [code]), pure jnp.

For a group of images and a coalition of bands: keep the spectrum on the coalition's bands,
replace the rest by the fill (zero, complex Gaussian noise, or the spectrum of another image
of the group), inverse FFT, post-process (`abs`: complex modulus, the reference; `real`),
min-max normalise over the whole group tensor (the reference's batch; or per image), clip to
[0, 1]. The empty coalition gives black images whatever the fill (reference). A group whose
post-processed images are constant is mapped to black (the reference divides 0 by 0).

The spectra come from `image_spectra`, computed once per image and reused for every
coalition; masks are in the DFT's natural layout (`lst_jax.spectral.bands`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

GAUSSIAN_STD = 0.5   # per real / imaginary part (reference)


def image_spectra(images: jax.Array) -> jax.Array:
    """2-D FFT of every channel (not shifted: DC at [0, 0]).

    Shape:
        images: (B, H, W, C) float -> (B, H, W, C) complex64.

    Examples:
        >>> import jax.numpy as jnp
        >>> from lst_jax.spectral import image_spectra
        >>> s = image_spectra(jnp.ones((1, 16, 16, 3)))
        >>> s.shape, s.dtype, float(s[0, 0, 0, 0].real)         # DC: the sum of the pixels
        ((1, 16, 16, 3), dtype('complex64'), 256.0)
    """
    return jnp.fft.fft2(jnp.asarray(images, jnp.float32), axes=(1, 2)).astype(jnp.complex64)


def gaussian_fill(keys: jax.Array, shape) -> jax.Array:
    """Complex Gaussian spectra, real and imaginary parts N(0, 0.5^2), one per key.

    Shape:
        keys: (...) typed keys, shape (H, W, C) -> (..., H, W, C) complex64.
    """
    def one(k):
        z = GAUSSIAN_STD * jax.random.normal(k, (2,) + tuple(shape), jnp.float32)
        return jax.lax.complex(z[0], z[1])

    flat = keys.reshape(-1)
    return jax.vmap(one)(flat).reshape(keys.shape + tuple(shape))


def filter_groups(spectra: jax.Array, fill: jax.Array | None, keep: jax.Array, *,
                  post: str = "abs", normalize: str = "group") -> jax.Array:
    """Filtered, post-processed and normalised images of n groups, one coalition each.

    Args:
        spectra: the groups' spectra (`image_spectra`).
        fill: spectra for the removed bands (same shape), or None for the zero fill.
        keep: the frequencies each group's coalition keeps (natural layout); an all-False
            mask is the empty coalition (black images).
        post: "abs" or "real".
        normalize: "group" (one min and max per group tensor) or "per_image".

    Shape:
        spectra, fill: (n, g, H, W, C) complex64; keep: (n, H, W) bool
        -> (n, g, H, W, C) float32 in [0, 1].

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from lst_jax.spectral import coalition_mask, filter_groups, image_spectra
        >>> x = jax.random.uniform(jax.random.key(0), (2, 16, 16, 3))
        >>> keep = jnp.asarray(coalition_mask([True, True], side=16))[None]   # all bands
        >>> y = filter_groups(image_spectra(x)[None], None, keep, post="real")
        >>> bool(jnp.allclose(y[0], (x - x.min()) / (x.max() - x.min()), atol=1e-5))
        True
    """
    m = keep[:, None, :, :, None]
    mixed = jnp.where(m, spectra, fill if fill is not None else jnp.zeros((), spectra.dtype))
    y = jnp.fft.ifft2(mixed, axes=(2, 3))
    y = jnp.abs(y) if post == "abs" else jnp.real(y)
    axes = (1, 2, 3, 4) if normalize == "group" else (2, 3, 4)
    z = y - y.min(axis=axes, keepdims=True)
    top = z.max(axis=axes, keepdims=True)
    z = jnp.where(top > 0, z / jnp.where(top > 0, top, 1.0), 0.0)
    nonempty = keep.any(axis=(1, 2))[:, None, None, None, None]
    return jnp.where(nonempty, jnp.clip(z, 0.0, 1.0), 0.0).astype(jnp.float32)


__all__ = ["GAUSSIAN_STD", "image_spectra", "gaussian_fill", "filter_groups"]
