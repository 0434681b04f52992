"""Frequency bands ("spectral players") of I-ASIDE: square L-inf annuli of the centred 2-D FFT.

The authors' geometry (`../shared/spec/iaside.md` section 2, [code]): for an image of side
`dim` and `M` bands, band `i` (0 = lowest) is the centred square of side
`r_hi = dim * (i + 1) // M` minus the centred square of side `r_lo = dim * i // M`, a square of
side `r` occupying rows and columns `[(dim - r) // 2, (dim - r) // 2 + r)` of the centred
spectrum (DC at index `dim // 2`). With even sides the square holds one more bin below DC
than above (224, M = 8: band 0 spans indices 98..125 around DC 112), so a band is not
Hermitian-symmetric and band-passed images have an imaginary part (post-processing, see
`lst_jax.spectral.filters`). The squares are nested, so the bands partition the spectrum.

Masks here are in the **DFT's natural layout** (DC at index 0, `ifftshift` of the centred
mask): the filter multiplies `fft2(x)` directly, which is the reference's
`ifftshift(fftshift(fft2(x)) * mask)` without the two shifts (permutations, exact).
"""

from __future__ import annotations

import numpy as np

from lst_jax.utils.checks import check_positive_int

MIN_SIDE = 16   # the reference asserts dim >= 16


def check_square_side(name: str, shape) -> int:
    """The side of square (B, H, W, C) images with H = W >= 16; ValueError naming `name`."""
    shape = tuple(int(s) for s in shape)
    if len(shape) != 4:
        raise ValueError(f"{name} must have shape (B, H, W, C), got {shape}")
    h, w = shape[1], shape[2]
    if h != w:
        raise ValueError(f"{name} must be square (H == W): the bands are centred squares of "
                         f"the 2-D spectrum; got H={h}, W={w} (crop or resize first)")
    if h < MIN_SIDE:
        raise ValueError(f"{name} must be at least {MIN_SIDE}x{MIN_SIDE} (the reference's "
                         f"limit), got {h}x{w}")
    return h


def check_num_bands(num_bands, side: int | None = None) -> int:
    """`num_bands` as a positive int; with `side`, at most `side` so that no band is empty."""
    m = check_positive_int("num_bands", num_bands)
    if side is not None and m > side:
        raise ValueError(f"num_bands must be at most the image side {side} (more bands than "
                         f"rows leaves some bands without any frequency), got {m}")
    return m


def _square_bounds(dim: int, side: int) -> tuple[int, int]:
    start = (dim - side) // 2
    return start, start + side


def band_index_map(side: int, *, num_bands: int = 8, centred: bool = False) -> np.ndarray:
    """The band (0 = lowest frequency) of every frequency bin of a `side` x `side` spectrum.

    Args:
        side: image side (>= 16).
        num_bands: M.
        centred: True for the centred layout (DC at `side // 2`, as after `fftshift`);
            default the DFT's natural layout (DC at 0), the layout the filter uses.

    Shape:
        -> (side, side) int32 with values in [0, M).

    Examples:
        >>> from lst_jax.spectral import band_index_map
        >>> band_index_map(16, num_bands=2, centred=True)[8].tolist()   # the centre row
        [1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1]
    """
    side = int(side)
    if side < MIN_SIDE:
        raise ValueError(f"side must be at least {MIN_SIDE}, got {side}")
    m = check_num_bands(num_bands, side)
    out = np.full((side, side), -1, np.int32)
    for i in range(m - 1, -1, -1):      # smaller squares overwrite: innermost band wins
        lo, hi = _square_bounds(side, side * (i + 1) // m)
        out[lo:hi, lo:hi] = i
    assert (out >= 0).all()             # the top band's square is the whole spectrum
    return out if centred else np.fft.ifftshift(out)


def band_masks(side: int, *, num_bands: int = 8, centred: bool = False) -> np.ndarray:
    """One boolean mask per band (the bands partition the spectrum).

    Shape:
        -> (M, side, side) bool; `masks.sum(0) == 1` everywhere.

    Examples:
        >>> from lst_jax.spectral import band_masks
        >>> masks = band_masks(16, num_bands=4)
        >>> masks.shape, bool((masks.sum(0) == 1).all()), bool(masks[0, 0, 0])   # DC: band 0
        ((4, 16, 16), True, True)
    """
    idx = band_index_map(side, num_bands=num_bands, centred=centred)
    return idx[None] == np.arange(check_num_bands(num_bands), dtype=np.int32)[:, None, None]


def band_sizes(side: int, *, num_bands: int = 8) -> np.ndarray:
    """Frequency bins per band and channel (224, M = 8: 784, 2352, ..., 11760).

    Shape:
        -> (M,) int64.

    Examples:
        >>> from lst_jax.spectral import band_sizes
        >>> band_sizes(16, num_bands=4).tolist()
        [16, 48, 80, 112]
    """
    return band_masks(side, num_bands=num_bands).reshape(num_bands, -1).sum(1).astype(np.int64)


def coalition_mask(bits, *, side: int, num_bands: int | None = None,
                   centred: bool = False) -> np.ndarray:
    """The union of the selected bands (the frequencies a coalition keeps; `num_bands`
    default: `len(bits)`).

    Shape:
        bits: (M,) bool (index 0 = lowest band) -> (side, side) bool.

    Examples:
        >>> from lst_jax.spectral import coalition_mask
        >>> int(coalition_mask([True, False, False, False], side=16).sum())   # band 0: 4x4
        16
    """
    bits = np.asarray(bits, bool)
    m = bits.shape[-1] if num_bands is None else num_bands
    if bits.shape != (m,):
        raise ValueError(f"bits must have shape ({m},), got {bits.shape}")
    return bits[band_index_map(side, num_bands=m, centred=centred)]


__all__ = ["MIN_SIDE", "band_index_map", "band_masks", "band_sizes", "coalition_mask",
           "check_square_side", "check_num_bands"]
