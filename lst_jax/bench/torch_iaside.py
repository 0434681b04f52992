"""The authors' I-ASIDE procedure in PyTorch, written from `../shared/spec/iaside.md` (not
from lst_jax): the independent reference of tests/spectral/test_spectral_torch.py and the PyTorch
side of experiments/benchmark_iaside.py.

Reference semantics, step by step as the spec describes the authors' `iaside.py`:
- masks built per coalition as the reference does: for each selected band from the highest
  to the lowest, the outer centred square of side `int(dim (i+1) / M)` set to 1, then the
  inner square of side `int(dim i / M)` set to 0 (`fftshift`ed layout);
- per coalition, per batch of `batch` images (the reference's DataLoader batches of 10): the
  empty coalition gives zeros; else `fftshift(fft2(x))`, keep the mask, fill the rest (zero,
  or the spectrum of `x[perm]` for the random fill), `ifft2(ifftshift(.))`, `abs`, one
  min-max over the whole batch tensor, clip to [0, 1], model, `softmax`, gather the label,
  `log`; the value is the mean over all images;
- Shapley values by the reference's loop over the subsets of the other players with
  `1 / (M C(M-1, |s|))`, then `psi - min`, `/ sum`.

The only inputs beyond the reference's are the images (in batch order) and, for the random
fill, the permutation of each batch (the reference draws it per call; here it is given so the
procedure is deterministic).
"""

from __future__ import annotations

import math

import numpy as np
import torch


def reference_mask(dim: int, bits) -> torch.Tensor:
    """The reference's union-of-annuli mask, built from the highest selected band down.

    Shape:
        bits: (M,) -> (dim, dim) float32 (centred layout).
    """
    m = len(bits)
    mask = torch.zeros(dim, dim)
    for i in reversed(range(m)):
        if bits[i]:
            r_hi = int(dim * (i + 1) / m)
            s = (dim - r_hi) // 2
            mask[s:s + r_hi, s:s + r_hi] = 1.0
            r_lo = int(dim * i / m)
            s = (dim - r_lo) // 2
            mask[s:s + r_lo, s:s + r_lo] = 0.0
    return mask


def reference_filter(x: torch.Tensor, bits, fill: str, perm=None) -> torch.Tensor:
    """The reference's coalition filter of one batch (NCHW in [0, 1]).

    Args:
        fill: "zero" or "random" (with `perm`: the batch image whose spectrum fills image i
            is `perm[i]`).
    """
    if sum(bool(b) for b in bits) == 0:
        return torch.zeros_like(x)
    spec = torch.fft.fftshift(torch.fft.fft2(x), dim=(-2, -1))
    mask = reference_mask(x.shape[-1], bits).to(x.device)
    noise = torch.zeros_like(spec) if fill == "zero" else spec[torch.as_tensor(np.asarray(perm,
                                                                                          np.int64).copy())]
    mixed = spec * mask + noise * (1 - mask)
    y = torch.fft.ifft2(torch.fft.ifftshift(mixed, dim=(-2, -1))).abs()
    y = y - y.min()
    y = y / y.max()
    return y.clamp(0, 1)


def reference_values(model, images: np.ndarray, labels: np.ndarray, num_bands: int,
                     fill: str = "random", perms=None, batch: int = 10,
                     device=None) -> np.ndarray:
    """v(c) for every coalition index c = sum_k bit_k 2^k, in the reference's loop order.

    Args:
        model: torch module taking NCHW pixels in [0, 1] (normalisation inside).
        images: (K, H, W, C) float32 NHWC (transposed here), K a multiple of `batch`.
        perms: per batch, the random-fill permutation (list of (batch,) int arrays).
        device: torch device of the images (default: the CPU); the model must be there.

    Shape:
        -> (2^M,) float64.
    """
    x = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))
    y = torch.from_numpy(np.asarray(labels, np.int64))
    if device is not None:
        x, y = x.to(device), y.to(device)
    k = x.shape[0]
    if k % batch:
        raise ValueError("the reference procedure uses whole batches")
    out = np.zeros(2 ** num_bands)
    with torch.no_grad():
        for c in range(2 ** num_bands):
            bits = [(c >> i) & 1 for i in range(num_bands)]
            total = 0.0
            for b in range(k // batch):
                sl = slice(b * batch, (b + 1) * batch)
                xb = reference_filter(x[sl], bits, fill, None if perms is None else perms[b])
                p = torch.softmax(model(xb), dim=1).gather(1, y[sl, None])[:, 0]
                total += float(torch.log(p).double().sum())
            out[c] = total / k
    return out


def reference_shapley(values: np.ndarray, num_bands: int) -> np.ndarray:
    """The reference's Shapley loop over subsets of the other players."""
    psi = np.zeros(num_bands)
    for i in range(num_bands):
        for s in range(2 ** num_bands):
            if (s >> i) & 1:
                continue
            size = bin(s).count("1")
            w = 1.0 / (num_bands * math.comb(num_bands - 1, size))
            psi[i] += w * (values[s | (1 << i)] - values[s])
    return psi


def reference_distribution(psi: np.ndarray) -> np.ndarray:
    psi = psi - psi.min()
    return psi / psi.sum()
