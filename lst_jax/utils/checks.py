"""Input validation that fails early with a message naming the argument.

Checks run on the host before anything is traced. Inside a `jax.jit` the arrays are tracers,
so only static facts (rank, dtype, shape) are checked there; value checks (range, NaN) need
concrete arrays and are skipped for tracers.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def is_concrete(x) -> bool:
    """True when `x` holds values (not a tracer inside a transformation)."""
    return not isinstance(x, jax.core.Tracer)


def check_images(name: str, images, *, channels: int | None = None, batch: int | None = None,
                 value_range: tuple[float, float] | None = (0.0, 1.0)):
    """Checks an NHWC float image batch in [0, 1]; returns it as a float32 jax array.

    `value_range=None` checks only finiteness (e.g. inputs in a model's normalised space).

    Shape:
        images: (B, H, W, C), floating point, values in `value_range`, finite.
    """
    if not hasattr(images, "shape") or not hasattr(images, "dtype"):
        raise ValueError(f"{name} must be an array of shape (B, H, W, C), got "
                         f"{type(images).__name__}")
    if images.ndim != 4:
        raise ValueError(
            f"{name} must have rank 4 (B, H, W, C) in NHWC layout, got shape {tuple(images.shape)}"
        )
    if not jnp.issubdtype(images.dtype, jnp.floating):
        raise ValueError(
            f"{name} must be floating point in [0, 1] (convert uint8 with x / 255), got dtype "
            f"{images.dtype}"
        )
    if images.shape[1] in (1, 3) and images.shape[-1] not in (1, 3):
        raise ValueError(
            f"{name} looks like NCHW (shape {tuple(images.shape)}); lst_jax expects NHWC "
            "(B, H, W, C): transpose with x.transpose(0, 2, 3, 1)")
    if channels is not None and images.shape[-1] != channels:
        hint = " (NCHW input? lst_jax uses NHWC)" if images.shape[1] == channels else ""
        raise ValueError(
            f"{name} must have {channels} channels in the last axis, got shape "
            f"{tuple(images.shape)}{hint}"
        )
    if batch is not None and images.shape[0] != batch:
        raise ValueError(f"{name} has batch size {images.shape[0]}, expected {batch}")
    if images.shape[0] == 0:
        raise ValueError(f"{name} is empty (batch size 0)")
    if is_concrete(images):
        arr = np.asarray(images)
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{name} contains NaN or infinite values")
        lo, hi = float(arr.min()), float(arr.max())
        if value_range is not None and (lo < value_range[0] or hi > value_range[1]):
            raise ValueError(f"{name} must lie in [{value_range[0]:g}, {value_range[1]:g}], "
                             f"got values in [{lo:.4g}, {hi:.4g}]")
    return jnp.asarray(images, jnp.float32)


def check_labels(name: str, labels, *, batch: int, num_classes: int | None = None):
    """Checks integer class labels of shape (B,) in [0, num_classes); returns int32 jax array."""
    if not hasattr(labels, "shape"):
        labels = np.asarray(labels)
    if labels.ndim != 1 or labels.shape[0] != batch:
        raise ValueError(f"{name} must have shape ({batch},), got {tuple(labels.shape)}")
    if not jnp.issubdtype(labels.dtype, jnp.integer):
        raise ValueError(f"{name} must be integer class indices, got dtype {labels.dtype}")
    if num_classes is not None and is_concrete(labels):
        arr = np.asarray(labels)
        if arr.size and (arr.min() < 0 or arr.max() >= num_classes):
            raise ValueError(
                f"{name} must lie in [0, {num_classes}) for a {num_classes}-class model, "
                f"got values in [{arr.min()}, {arr.max()}]"
            )
    return jnp.asarray(labels, jnp.int32)


def check_positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def check_nonnegative(name: str, value) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a non-negative number, got {value!r}") from None
    if not np.isfinite(v) or v < 0:
        raise ValueError(f"{name} must be a non-negative finite number, got {value!r}")
    return v


_NUM_CLASSES = None   # ModelCache, created on first use


def num_classes_of(model_fn, params, image_shape) -> int:
    """Number of classes (logits) of `model_fn` on images of shape (H, W, C), from an abstract
    evaluation (`jax.eval_shape`: traced, never compiled); cached per model, weakly and
    bounded (`lst_jax.utils.cache.ModelCache`).

    Raises:
        ValueError: the model fails on such images or does not return (B, num_classes) logits.
    """
    global _NUM_CLASSES
    from lst_jax.utils.cache import ModelCache

    if _NUM_CLASSES is None:
        _NUM_CLASSES = ModelCache()
    key = (tuple(image_shape), jax.tree.structure(params),
           tuple((tuple(np.shape(a)), str(a.dtype if hasattr(a, "dtype") else np.result_type(a)))
                 for a in jax.tree.leaves(params)))
    k = _NUM_CLASSES.get(model_fn, key)
    if k is not None:
        return k
    try:
        out = jax.eval_shape(model_fn, params,
                             jax.ShapeDtypeStruct((1,) + tuple(image_shape), jnp.float32))
    except Exception as e:  # shape errors of the model itself, re-raised naming the input
        raise ValueError(f"model_fn(params, images) fails on images of shape "
                         f"(B, {', '.join(map(str, image_shape))}): {type(e).__name__}: "
                         f"{str(e).splitlines()[0] if str(e) else ''}") from e
    if not hasattr(out, "shape") or out.ndim != 2:
        raise ValueError(
            "model_fn(params, images) must return logits of shape (B, num_classes), got "
            f"{getattr(out, 'shape', type(out).__name__)}")
    k = int(out.shape[-1])
    _NUM_CLASSES.put(model_fn, key, k)
    return k


def check_key(key, name: str = "key"):
    """Checks a typed PRNG key (`jax.random.key(seed)`); returns it.

    Raises:
        TypeError: an int seed, a raw uint32 key (`jax.random.PRNGKey`) or anything else.
    """
    dtype = getattr(key, "dtype", None)
    if dtype is None or not jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
        what = ("an int seed" if isinstance(key, (int, np.integer))
                else f"a raw {dtype} key" if dtype is not None else type(key).__name__)
        raise TypeError(f"{name} must be a typed PRNG key (a typed jax.random key: "
                        f"jax.random.key(seed)), got {what} (wrap a raw key with "
                        f"jax.random.wrap_key_data)")
    return key
