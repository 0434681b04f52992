"""Level Set Traversal over a batch of (image, target image) pairs: a jitted `lax.scan`.

`lst_init` and `lst_step` (step.py) are the optax-shaped pieces for a user's own loop;
`level_set_traversal_unchecked` is the pure, jittable runner built on them (one compiled
program for the whole traversal). `level_set_traversal` is the one entry point: it validates
inputs, then runs the runner on the default device or data parallel over a device mesh
(`mesh=`), in float32 or as a float64 ground truth (`precision=`); with `progress=True` the
same step runs as an outer Python loop over jitted scans of `log_step` iterations (a progress
bar with rate and ETA, identical results).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from lst_jax.traversal.config import LSTConfig, LSTHyper, StaticSettings
from lst_jax.traversal.state import LSTRecord, LSTResult, LSTState, Pairs
from lst_jax.traversal.step import (
    ModelFn,
    input_gradient,
    record_of,
    softmax_probs,
    step_core,
    take_label,
)
from lst_jax.utils import checks
from lst_jax.utils.checks import num_classes_of
from lst_jax.utils.progress import Progress


def cast_params(model_fn: ModelFn, params):
    """`model_fn.cast_params(params)` where the model function has it (a `Classifier` with a
    `compute_dtype` casts its parameters to that dtype), else `params`.

    The traversal calls it once, before its loop, so that a bfloat16 model's parameters are
    not cast again in every iteration.
    """
    cast = getattr(model_fn, "cast_params", None)
    return params if cast is None else cast(params)


def _init(model_fn, params, images, target_images, labels, target_labels, key,
          hyper: LSTHyper, static: StaticSettings) -> LSTState:
    """Clean confidences, argmax filter, random start and the first gradient."""
    p0 = softmax_probs(model_fn(params, jnp.clip(images, 0.0, 1.0)))
    valid = jnp.argmax(p0, axis=-1) == labels
    if target_labels is None:
        target_labels = jnp.argmax(model_fn(params, target_images), axis=-1).astype(jnp.int32)
    pairs = Pairs(target_images=target_images, labels=labels, target_labels=target_labels,
                  clean_conf=take_label(p0, labels), valid=valid)
    # drawn in float32 in every precision, so float32 and float64 runs start alike
    noise = jax.random.uniform(key, images.shape, jnp.float32, -hyper.noise, hyper.noise)
    x0 = jnp.clip(images + noise.astype(images.dtype), 0.0, 1.0)
    probs, direction, scale = input_gradient(model_fn, params, x0, labels,
                                             reference_numerics=static.reference_numerics)
    return LSTState(x=x0, acc=jnp.zeros_like(x0), grad=direction, grad_scale=scale,
                    probs=probs, accepted=jnp.ones_like(valid), pairs=pairs)


def _scan(model_fn, params, state, hyper, static: StaticSettings, length: int):
    def body(s, _):
        s = step_core(model_fn, params, s, hyper, static)
        return s, record_of(s)

    return lax.scan(body, state, None, length=length)


def _run_all(model_fn, params, state, hyper, static: StaticSettings):
    """All iterations: one scan, or a scan over log blocks when images are logged."""
    if not static.log_images:
        state, rec = _scan(model_fn, params, state, hyper, static, static.iters)
        return state, rec, None
    n_blocks, rem = divmod(static.iters, static.log_step)
    recs, imgs = [], []
    if n_blocks:
        def block(s, _):
            s2, r = _scan(model_fn, params, s, hyper, static, static.log_step)
            return s2, (r, s.x)

        state, (rec, img) = lax.scan(block, state, None, length=n_blocks)
        recs.append(jax.tree.map(lambda a: a.reshape((-1,) + a.shape[2:]), rec))
        imgs.append(img)
    if rem:
        imgs.append(state.x[None])
        state, rec = _scan(model_fn, params, state, hyper, static, rem)
        recs.append(rec)
    rec = jax.tree.map(lambda *a: jnp.concatenate(a, axis=0), *recs)
    return state, rec, jnp.concatenate(imgs, axis=0)


def _result(first: LSTState, last: LSTState, rec, logged) -> LSTResult:
    return LSTResult(images=last.x, valid=first.pairs.valid, clean_conf=first.pairs.clean_conf,
                     start=first.x, initial=record_of(first), record=rec,
                     logged_images=logged)


@functools.partial(jax.jit, static_argnames=("model_fn", "static"))
def _traverse_jit(model_fn, params, images, target_images, labels, target_labels, key, hyper,
                  static: StaticSettings):
    params = cast_params(model_fn, params)
    first = _init(model_fn, params, images, target_images, labels, target_labels, key, hyper,
                  static)
    last, rec, imgs = _run_all(model_fn, params, first, hyper, static)
    return _result(first, last, rec, imgs)


def level_set_traversal_unchecked(model_fn: ModelFn, params, images, target_images, labels, *,
                                  key, config: LSTConfig = LSTConfig(),
                                  target_labels=None) -> LSTResult:
    """`level_set_traversal` without input validation, placement or progress bar: one jitted
    program (a `lax.scan` built on `lst_init` / `lst_step`).

    Compiles once per (model_fn, shapes, dtypes, config.static); float hyperparameters are
    traced (in the dtype of `images`). Safe to call inside `jax.jit`, `jax.vmap` over keys,
    etc. Runs in the precision of its inputs: float32, or float64 arrays under
    `jax.enable_x64(True)`.

    >>> import jax, jax.numpy as jnp
    >>> from lst_jax.traversal import LSTConfig, level_set_traversal_unchecked
    >>> model_fn = lambda p, x: x.reshape(len(x), -1) @ p
    >>> params = jax.random.normal(jax.random.key(0), (8 * 8 * 3, 4))
    >>> images = jax.random.uniform(jax.random.key(1), (2, 8, 8, 3))
    >>> labels = jnp.argmax(model_fn(params, images), -1)
    >>> run = jax.jit(lambda x: level_set_traversal_unchecked(
    ...     model_fn, params, x, x[::-1], labels, key=jax.random.key(2),
    ...     config=LSTConfig(iters=4)).images)
    >>> run(images).shape
    (2, 8, 8, 3)

    Shape:
        images, target_images: (B, H, W, C) float in [0, 1]; labels, target_labels: (B,) int.
    """
    return _traverse_jit(model_fn, params, images, target_images, labels, target_labels, key,
                         config.hyper_as(images.dtype), config.static)


@functools.partial(jax.jit, static_argnames=("model_fn", "static"))
def _init_jit(model_fn, params, images, target_images, labels, target_labels, key, hyper,
              static):
    return _init(model_fn, params, images, target_images, labels, target_labels, key, hyper,
                 static)


def lst_init(model_fn: ModelFn, params, images, target_images, labels, *, key,
             config: LSTConfig = LSTConfig(), target_labels=None) -> LSTState:
    """The traversal's initial state: clean confidences, argmax filter, the noised start
    `x0 = clip(images + U[-noise, noise))` and its gradient (drive it with `lst_step`).

    Validates its inputs as `level_set_traversal` does (static facts only inside `jax.jit`).
    The runner casts a reduced-precision model's parameters once first (`cast_params`);
    `lst_init`/`lst_step` use `params` as given.

    >>> import jax, jax.numpy as jnp
    >>> from lst_jax.traversal import LSTConfig, lst_init
    >>> model_fn = lambda p, x: x.reshape(len(x), -1) @ p
    >>> params = jax.random.normal(jax.random.key(0), (8 * 8 * 3, 4))
    >>> images = jax.random.uniform(jax.random.key(1), (2, 8, 8, 3))
    >>> labels = jnp.argmax(model_fn(params, images), -1)
    >>> state = lst_init(model_fn, params, images, images[::-1], labels, key=jax.random.key(2))
    >>> state.pairs.valid.tolist()
    [True, True]

    Shape:
        images, target_images: (B, H, W, C) float32 in [0, 1]; labels, target_labels: (B,)
        int in [0, K) -> LSTState.
    """
    _check_config(config)
    checks.check_key(key)
    images, target_images, labels, target_labels = validate_pairs(
        model_fn, params, images, target_images, labels, target_labels)
    return _init_jit(model_fn, params, images, target_images, labels, target_labels, key,
                     config.hyper_as(images.dtype), config.static)


@functools.partial(jax.jit, static_argnames=("model_fn", "static", "length"))
def _chunk_jit(model_fn, params, state, hyper, static, length):
    return _scan(model_fn, params, state, hyper, static, length)


def _traverse_chunked(model_fn, params, images, target_images, labels, target_labels, key,
                      config: LSTConfig, desc: str) -> LSTResult:
    """The traversal as jitted chunks of `log_step` iterations with a progress bar (same
    numbers as `level_set_traversal_unchecked`)."""
    static, hyper = config.static, config.hyper_as(images.dtype)
    params = jax.jit(cast_params, static_argnums=0)(model_fn, params)
    first = _init_jit(model_fn, params, images, target_images, labels, target_labels, key,
                      hyper, static)
    state = first
    recs, imgs = [], []
    with Progress(static.iters, desc=desc, unit="it") as bar:
        done = 0
        while done < static.iters:
            n = min(static.log_step, static.iters - done)
            if static.log_images:
                imgs.append(state.x)
            state, rec = _chunk_jit(model_fn, params, state, hyper, static, n)
            recs.append(rec)
            done += n
            jax.block_until_ready(state.x)
            bar.update(n)
    rec = jax.tree.map(lambda *a: jnp.concatenate(a, axis=0), *recs)
    logged = jnp.stack(imgs) if static.log_images else None
    return _result(first, state, rec, logged)


def validate_pairs(model_fn: ModelFn, params, images, target_images, labels,
                   target_labels=None):
    """Checks a traversal batch and returns it as jax arrays (see `level_set_traversal`)."""
    images = checks.check_images("images", images)
    b = images.shape[0]
    target_images = checks.check_images("target_images", target_images,
                                        channels=images.shape[-1])
    if target_images.shape != images.shape:
        raise ValueError(
            f"target_images must have the same shape as images (one target per image), got "
            f"target_images {tuple(target_images.shape)} vs images {tuple(images.shape)}")
    k = num_classes_of(model_fn, params, images.shape[1:])
    labels = checks.check_labels("labels", labels, batch=b, num_classes=k)
    if target_labels is not None:
        target_labels = checks.check_labels("target_labels", target_labels, batch=b,
                                            num_classes=k)
    return images, target_images, labels, target_labels


def _check_config(config):
    if not isinstance(config, LSTConfig):
        raise TypeError(f"config must be an LSTConfig, got {type(config).__name__}")


PRECISIONS = ("float32", "float64")


def _run(model_fn, params, images, target_images, labels, target_labels, key, config,
         progress, desc) -> LSTResult:
    if progress:
        return _traverse_chunked(model_fn, params, images, target_images, labels,
                                 target_labels, key, config, desc)
    return level_set_traversal_unchecked(model_fn, params, images, target_images, labels,
                                         key=key, config=config, target_labels=target_labels)


def _run_on_mesh(mesh, model_fn, params, images, target_images, labels, target_labels, key,
                 config, progress, desc) -> LSTResult:
    """The pairs padded to a multiple of the device count (copies of the last pair), split
    over the mesh's `"data"` axis, traversed by the same jitted program (jit propagates the
    input shardings through the scan: each device walks its own pairs, with no communication
    until the result is gathered), padding dropped. Multi-process: every process passes the
    same global pairs and key and gets the full result."""
    from lst_jax.parallel.mesh import (
        num_shards,
        pad_to_multiple,
        put_batch,
        put_replicated,
        to_host,
        unpad,
    )

    batch = {"s": images, "t": target_images, "y": labels}
    if target_labels is not None:
        batch["yt"] = target_labels
    batch, n = pad_to_multiple(jax.tree.map(np.asarray, batch), num_shards(mesh))
    batch = put_batch(batch, mesh)
    result = _run(model_fn, put_replicated(params, mesh), batch["s"], batch["t"], batch["y"],
                  batch.get("yt"), key, config, progress, desc)
    result = to_host(result)
    cut = lambda axis: (lambda t: None if t is None else unpad(t, n, axis=axis))
    per_iteration = {"record", "logged_images"}
    return LSTResult(**{f: cut(1 if f in per_iteration else 0)(getattr(result, f))
                        for f in LSTResult.__dataclass_fields__})


def _as_float64(tree):
    return jax.tree.map(lambda a: jnp.asarray(a, jnp.float64)
                        if jnp.issubdtype(jnp.asarray(a).dtype, jnp.floating) else a, tree)


def level_set_traversal(model_fn: ModelFn, params, images, target_images, labels, *, key,
                        config: LSTConfig = LSTConfig(), target_labels=None, mesh=None,
                        precision: str = "float32", progress: bool = False,
                        desc: str = "LST") -> LSTResult:
    """Level Set Traversal from each image toward its paired target (arXiv 2310.19889).

    Each iteration projects `target - x` onto the orthogonal complement of the input gradient
    of the source-class cross-entropy, steps a fraction `step_size` of it (optionally minus
    the accumulated confidence-restoring term), clips to [0, 1], and accepts the step iff the
    source-class confidence dropped by less than `pthresh` below the clean source's.

    >>> import jax, jax.numpy as jnp
    >>> from lst_jax.traversal import LSTConfig, level_set_traversal
    >>> model_fn = lambda p, x: x.reshape(len(x), -1) @ p
    >>> params = jax.random.normal(jax.random.key(0), (8 * 8 * 3, 4))
    >>> images = jax.random.uniform(jax.random.key(1), (2, 8, 8, 3))
    >>> labels = jnp.argmax(model_fn(params, images), -1)
    >>> res = level_set_traversal(model_fn, params, images, images[::-1], labels,
    ...                           key=jax.random.key(2), config=LSTConfig(iters=5))
    >>> res.images.shape, res.record.conf_source.shape
    ((2, 8, 8, 3), (5, 2))

    Args:
        model_fn: `model_fn(params, images) -> logits`; owns normalisation. Pass the same
            function object on every call to reuse the compiled program.
        params: pytree of model parameters/variables.
        images, target_images: paired images; target i is the destination of image i.
        labels: classes of `images` (the class whose confidence is held).
        key: typed PRNG key (`jax.random.key(seed)`) for the uniform random start.
        config: `LSTConfig` (or `LSTConfig.preset("paper")`).
        target_labels: classes for the target-confidence record; default: the model's
            prediction on each target.
        mesh: a `jax.sharding.Mesh` with a `"data"` axis (`lst_jax.parallel.data_mesh()`):
            the pairs are split over its devices (any batch size; padded internally); every
            process gets the complete result. Same numbers as one device. None: the default
            device.
        precision: "float32", or "float64" for a ground-truth run of the same traversal
            (parameters and images cast to float64 under `jax.enable_x64`; CPU/GPU; result
            as float64 jax arrays).
        progress: run as jitted chunks of `log_step` iterations with a progress bar (`desc`).

    Returns:
        `LSTResult` (final images, argmax-filter mask, per-iteration record, logged images),
        every array a `jax.Array` on the default device.

    Shape:
        images, target_images: (B, H, W, C) float32 in [0, 1] (NHWC); labels: (B,) int in
        [0, K).

    Deviations from the reference: the cross-entropy gradient is computed without
    cancellation (`config.reference_numerics=True` restores the reference's arithmetic), the
    projection coefficient is 0 where the gradient is 0 (reference: NaN), non-finite
    candidates are rejected, acceptance is a select (not a multiplicative mix), and the argmax
    filter is returned as `valid` instead of dropping samples (static shapes).

    Raises:
        ValueError: mismatched batch sizes/shapes, wrong rank/channels/dtype, values outside
            [0, 1] or non-finite, labels out of range, invalid mesh or precision.
        TypeError: `key` not a typed PRNG key, `config` not an `LSTConfig`.
    """
    _check_config(config)
    checks.check_key(key)
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if mesh is not None:
        from lst_jax.parallel.mesh import num_shards

        if not isinstance(mesh, jax.sharding.Mesh):
            raise ValueError(f"mesh must be a jax.sharding.Mesh (lst_jax.parallel.data_mesh()),"
                             f" got {type(mesh).__name__}")
        num_shards(mesh)  # names the missing "data" axis
    images, target_images, labels, target_labels = validate_pairs(
        model_fn, params, images, target_images, labels, target_labels)
    args = (model_fn, params, images, target_images, labels, target_labels, key, config,
            progress, desc)
    run = _run if mesh is None else functools.partial(_run_on_mesh, mesh)
    if precision == "float32":
        return _as_jax(run(*args))
    if getattr(model_fn, "compute_dtype", None) is not None:
        raise ValueError(f"precision='float64' needs a float32 model, got a model_fn with "
                         f"compute_dtype={model_fn.compute_dtype}")
    with jax.enable_x64(True):
        cast = (model_fn, _as_float64(params), _as_float64(images), _as_float64(target_images))
        return _as_jax(run(*cast, *args[4:]))


def _as_jax(result: LSTResult) -> LSTResult:
    """Every leaf a `jax.Array` (the mesh runner gathers numpy arrays on the host)."""
    return jax.tree.map(lambda a: a if isinstance(a, jax.Array) else jnp.asarray(a), result)


def reference_log_points(result: LSTResult, *, log_step: int) -> LSTRecord:
    """The reference's logged confidences: values at x_k for k = 0, log_step, 2 log_step, ...

    >>> import jax, jax.numpy as jnp
    >>> from lst_jax.traversal import LSTConfig, level_set_traversal
    >>> model_fn = lambda p, x: x.reshape(len(x), -1) @ p
    >>> params = jax.random.normal(jax.random.key(0), (8 * 8 * 3, 4))
    >>> images = jax.random.uniform(jax.random.key(1), (2, 8, 8, 3))
    >>> labels = jnp.argmax(model_fn(params, images), -1)
    >>> res = level_set_traversal(model_fn, params, images, images[::-1], labels,
    ...                           key=jax.random.key(2), config=LSTConfig(iters=6))
    >>> reference_log_points(res, log_step=4).conf_source.shape     # x_0, x_4
    (2, 2)

    Shape:
        -> LSTRecord with fields (ceil(T / log_step), B).
    """
    full = jax.tree.map(lambda a, r: jnp.concatenate([a[None], r[:-1]], axis=0),
                        result.initial, result.record)
    t = full.conf_source.shape[0]
    idx = jnp.arange(0, t, log_step)
    return jax.tree.map(lambda a: a[idx], full)


__all__ = ["level_set_traversal", "level_set_traversal_unchecked", "lst_init",
           "reference_log_points", "num_classes_of", "validate_pairs", "cast_params",
           "PRECISIONS"]
