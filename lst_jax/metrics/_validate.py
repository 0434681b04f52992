"""Input checks shared by the image-distance metrics (ValueError naming the argument)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from lst_jax.utils import checks


def _shape_mismatch(name_a: str, a, name_b: str, b) -> ValueError:
    return ValueError(
        f"{name_b} must have the same shape as {name_a} (one {name_b} image per {name_a} image), "
        f"got {name_b} {tuple(b.shape)} vs {name_a} {tuple(a.shape)}")


def check_pair(a, b, names=("a", "b"), *, min_size: int = 1):
    """Validates two NHWC image batches of equal shape in [0, 1]; returns float32 jax arrays.

    Value checks (range, NaN) run only on concrete arrays (skipped under `jax.jit`).

    Shape:
        a, b: (B, H, W, C) floating point in [0, 1], same shape.
    """
    name_a, name_b = names
    a = checks.check_images(name_a, a)
    b = checks.check_images(name_b, b)
    if a.shape != b.shape:
        raise _shape_mismatch(name_a, a, name_b, b)
    _check_min_size(name_a, a.shape, min_size)
    return a, b


def _check_min_size(name: str, shape, min_size: int, what: str = ""):
    h, w = shape[1], shape[2]
    if h < min_size or w < min_size:
        raise ValueError(
            f"{name} images are {h}x{w}; {what or 'this metric'} needs at least "
            f"{min_size}x{min_size} pixels")


def check_pair_host(a, b, names=("outputs", "targets")):
    """Like `check_pair` but keeps the data on the host: returns float32 numpy arrays.

    Used by the batched evaluator, whose inputs may be much larger than one device batch.
    """
    name_a, name_b = names
    out = []
    for name, x in ((name_a, a), (name_b, b)):
        if isinstance(x, jax.core.Tracer):
            raise ValueError(f"{name} must be a concrete array (image_distances cannot run "
                             "inside jax.jit; use the per-metric functions there)")
        if not hasattr(x, "shape") or not hasattr(x, "dtype"):
            raise ValueError(
                f"{name} must be an array of shape (B, H, W, C), got {type(x).__name__}")
        if x.ndim != 4:
            raise ValueError(
                f"{name} must have rank 4 (B, H, W, C) in NHWC layout, got shape {tuple(x.shape)}")
        if not jnp.issubdtype(x.dtype, jnp.floating):
            raise ValueError(f"{name} must be floating point in [0, 1] (convert uint8 with "
                             f"x / 255), got dtype {x.dtype}")
        if x.shape[1] in (1, 3) and x.shape[-1] not in (1, 3):
            raise ValueError(
                f"{name} looks like NCHW (shape {tuple(x.shape)}); lst_jax expects NHWC "
                "(B, H, W, C): transpose with x.transpose(0, 2, 3, 1)")
        if x.shape[0] == 0:
            raise ValueError(f"{name} is empty (batch size 0)")
        arr = np.asarray(x, np.float32)
        if not np.isfinite(arr).all():
            raise ValueError(f"{name} contains NaN or infinite values")
        lo, hi = float(arr.min()), float(arr.max())
        if lo < 0.0 or hi > 1.0:
            raise ValueError(f"{name} must lie in [0, 1], got values in [{lo:.4g}, {hi:.4g}]")
        out.append(arr)
    if out[0].shape != out[1].shape:
        raise _shape_mismatch(name_a, out[0], name_b, out[1])
    return out[0], out[1]
