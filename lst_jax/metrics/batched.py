"""All Table-1 distances of many image pairs: one jitted program per batch shape."""

from __future__ import annotations

import functools
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from lst_jax.metrics._validate import _check_min_size, check_pair_host
from lst_jax.metrics.perceptual import MIN_SIZE, check_params, load_lpips_params, lpips_distance
from lst_jax.metrics.pixel import _l2, _linf, _rmse
from lst_jax.metrics.structural import _ssim, window_size
from lst_jax.utils import checks
from lst_jax.utils.progress import Progress

TABLE1_METRICS = ("rmse", "linf", "ssim", "lpips")
AVAILABLE_METRICS = ("l2",) + TABLE1_METRICS


@functools.partial(jax.jit, static_argnames=("metrics",))
def _distances_batch(lpips_params, a, b, metrics: tuple[str, ...]):
    fns = {"l2": _l2, "rmse": _rmse, "linf": _linf, "ssim": _ssim,
           "lpips": functools.partial(lpips_distance, lpips_params)}
    return {m: fns[m](a, b) for m in metrics}


def image_distances(outputs, targets, *, lpips_params=None, batch_size: int = 64,
                    metrics: Sequence[str] = TABLE1_METRICS,
                    progress: bool = False) -> dict[str, np.ndarray]:
    """Table-1 distances (RMSE, L-inf, SSIM, LPIPS) between paired images, batched and jitted.

    The pairs are processed in chunks of `batch_size`; the last, ragged chunk is zero-padded to
    `batch_size`, so every call with the same image size and `batch_size` reuses one compiled
    program (padding rows are dropped from the result). Semantics of each column: `rmse`,
    `linf`, `ssim`, `lpips` in this package (RMSE divides by `sqrt(H*W*C)` of these images; SSIM
    averages the fully interior 11x11 windows; LPIPS-AlexNet v0.1 on `2x - 1`).

    Args:
        outputs: e.g. LST outputs.
        targets: e.g. their targets (pair i is `(outputs[i], targets[i])`).
        lpips_params: LPIPS weights (`load_lpips_params(...)`); default: the shipped weights.
        batch_size: pairs per compiled call (padded); smaller values use less memory.
        metrics: subset/order of `("l2", "rmse", "linf", "ssim", "lpips")` to compute.
        progress: show a progress bar over the pairs.

    Returns:
        `{name: (B,) float32 numpy array}` for each requested metric (default keys `"rmse"`,
        `"linf"`, `"ssim"`, `"lpips"`).

    Shape:
        outputs, targets: (B, H, W, C) float in [0, 1], NHWC, same shape (numpy or jax arrays);
        SSIM needs H, W >= 11; LPIPS needs C == 3 and H, W >= 31.

    Raises:
        ValueError: shape mismatch, wrong rank/dtype, values outside [0, 1] or non-finite,
            images too small for a requested metric, unknown metric, bad batch_size.
    """
    batch_size = checks.check_positive_int("batch_size", batch_size)
    if isinstance(metrics, str):
        metrics = (metrics,)
    metrics = tuple(metrics)
    unknown = [m for m in metrics if m not in AVAILABLE_METRICS]
    if unknown or not metrics or len(set(metrics)) != len(metrics):
        raise ValueError(f"metrics must be distinct names from {AVAILABLE_METRICS}, got "
                         f"{metrics!r}")
    a, b = check_pair_host(outputs, targets)
    params = None
    if "ssim" in metrics:
        _check_min_size("outputs", a.shape, window_size(), "ssim")
    if "lpips" in metrics:
        _check_min_size("outputs", a.shape, MIN_SIZE, "lpips")
        if a.shape[-1] != 3:
            raise ValueError(f"outputs must have 3 (RGB) channels for lpips, got shape "
                             f"{tuple(a.shape)}")
        params = (load_lpips_params() if lpips_params is None
                  else jax.tree.map(jnp.asarray, check_params(lpips_params, "lpips_params")))
    n = a.shape[0]
    chunks: dict[str, list[np.ndarray]] = {m: [] for m in metrics}
    with Progress(n, desc="distances", unit="img", enabled=progress) as bar:
        for start in range(0, n, batch_size):
            xa, xb = a[start:start + batch_size], b[start:start + batch_size]
            m = xa.shape[0]
            if m < batch_size:
                pad = np.zeros((batch_size - m,) + xa.shape[1:], np.float32)
                xa, xb = np.concatenate([xa, pad]), np.concatenate([xb, pad])
            res = jax.device_get(_distances_batch(params, xa, xb, metrics))
            for k in metrics:
                chunks[k].append(np.asarray(res[k][:m], np.float32))
            bar.update(m)
    return {k: np.concatenate(v) for k, v in chunks.items()}


__all__ = ["image_distances", "TABLE1_METRICS", "AVAILABLE_METRICS"]
