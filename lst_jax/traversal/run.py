"""Level Set Traversal over a batch of (source, target) pairs: a jitted `lax.scan`.

`traverse` is the pure, jittable core (one compiled program for the whole traversal);
`level_set_traversal` validates inputs and either calls it or, with `progress=True`, runs
the same step as an outer Python loop over jitted scans of `log_step` iterations (a progress
bar with rate and ETA, identical results).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

from lst_jax.traversal.config import Hyper, LSTConfig, StaticSettings
from lst_jax.traversal.state import LSTRecord, LSTResult, LSTState
from lst_jax.traversal.step import (ModelFn, Pairs, _take, forward_backward, lst_step,
                                    record_of)
from lst_jax.utils import checks
from lst_jax.utils.progress import Progress


def _init(model_fn, params, sources, targets, labels, target_labels, key, hyper: Hyper):
    """Clean confidences, argmax filter, random start and the first gradient."""
    clean_logits = model_fn(params, jnp.clip(sources, 0.0, 1.0))
    p0 = jax.nn.softmax(clean_logits.astype(jnp.float32), axis=-1)
    valid = jnp.argmax(p0, axis=-1) == labels
    if target_labels is None:
        target_labels = jnp.argmax(model_fn(params, targets), axis=-1).astype(jnp.int32)
    pairs = Pairs(targets=targets, labels=labels, target_labels=target_labels,
                  clean_conf=_take(p0, labels))
    noise = jax.random.uniform(key, sources.shape, jnp.float32, -hyper.noise, hyper.noise)
    x0 = jnp.clip(sources + noise, 0.0, 1.0)
    probs, grad = forward_backward(model_fn, params, x0, labels)
    state = LSTState(x=x0, acc=jnp.zeros_like(x0), grad=grad, probs=probs,
                     step=jnp.zeros((), jnp.int32))
    initial = record_of(x0, probs, jnp.ones_like(valid), pairs)
    return state, pairs, valid, initial


def _scan(model_fn, params, state, pairs, hyper, static: StaticSettings, length: int):
    def body(s, _):
        return lst_step(model_fn, params, s, pairs, hyper, adv_pert=static.adv_pert,
                        fused=static.fused)

    return lax.scan(body, state, None, length=length)


def _run_all(model_fn, params, state, pairs, hyper, static: StaticSettings):
    """All iterations: one scan, or a scan over log blocks when images are logged."""
    if not static.log_images:
        state, rec = _scan(model_fn, params, state, pairs, hyper, static, static.iters)
        return state, rec, None
    n_blocks, rem = divmod(static.iters, static.log_step)
    recs, imgs = [], []
    if n_blocks:
        def block(s, _):
            s2, r = _scan(model_fn, params, s, pairs, hyper, static, static.log_step)
            return s2, (r, s.x)

        state, (rec, img) = lax.scan(block, state, None, length=n_blocks)
        recs.append(jax.tree.map(lambda a: a.reshape((-1,) + a.shape[2:]), rec))
        imgs.append(img)
    if rem:
        imgs.append(state.x[None])
        state, rec = _scan(model_fn, params, state, pairs, hyper, static, rem)
        recs.append(rec)
    rec = jax.tree.map(lambda *a: jnp.concatenate(a, axis=0), *recs)
    return state, rec, jnp.concatenate(imgs, axis=0)


@functools.partial(jax.jit, static_argnames=("model_fn", "static"))
def _traverse_jit(model_fn, params, sources, targets, labels, target_labels, key, hyper,
                  static: StaticSettings):
    state, pairs, valid, initial = _init(model_fn, params, sources, targets, labels,
                                         target_labels, key, hyper)
    start = state.x
    state, rec, imgs = _run_all(model_fn, params, state, pairs, hyper, static)
    return LSTResult(images=state.x, valid=valid, clean_conf=pairs.clean_conf, start=start,
                     initial=initial, record=rec, logged_images=imgs)


def traverse(model_fn: ModelFn, params, sources, targets, labels, key,
             config: LSTConfig = LSTConfig(), target_labels=None) -> LSTResult:
    """Pure, jitted Level Set Traversal (no input validation; see `level_set_traversal`).

    Compiles once per (model_fn, shapes, config.static); float hyperparameters are traced.
    Safe to call inside `jax.jit`, `jax.vmap` over keys, etc.

    Shape:
        sources, targets: (B, H, W, C) float32 in [0, 1]; labels, target_labels: (B,) int.
    """
    return _traverse_jit(model_fn, params, sources, targets, labels, target_labels, key,
                         config.hyper, config.static)


@functools.partial(jax.jit, static_argnames=("model_fn",))
def _init_jit(model_fn, params, sources, targets, labels, target_labels, key, hyper):
    return _init(model_fn, params, sources, targets, labels, target_labels, key, hyper)


@functools.partial(jax.jit, static_argnames=("model_fn", "static", "length"))
def _chunk_jit(model_fn, params, state, pairs, hyper, static, length):
    return _scan(model_fn, params, state, pairs, hyper, static, length)


def _traverse_chunked(model_fn, params, sources, targets, labels, target_labels, key,
                      config: LSTConfig, desc: str) -> LSTResult:
    static, hyper = config.static, config.hyper
    state, pairs, valid, initial = _init_jit(model_fn, params, sources, targets, labels,
                                             target_labels, key, hyper)
    start = state.x
    recs, imgs = [], []
    with Progress(static.iters, desc=desc, unit="it") as bar:
        done = 0
        while done < static.iters:
            n = min(static.log_step, static.iters - done)
            if static.log_images:
                imgs.append(state.x)
            state, rec = _chunk_jit(model_fn, params, state, pairs, hyper, static, n)
            recs.append(rec)
            done += n
            jax.block_until_ready(state.x)
            bar.update(n)
    rec = jax.tree.map(lambda *a: jnp.concatenate(a, axis=0), *recs)
    logged = jnp.stack(imgs) if static.log_images else None
    return LSTResult(images=state.x, valid=valid, clean_conf=pairs.clean_conf, start=start,
                     initial=initial, record=rec, logged_images=logged)


def num_classes_of(model_fn: ModelFn, params, image_shape) -> int:
    """Number of classes of `model_fn`, from an abstract evaluation (no compute)."""
    try:
        out = jax.eval_shape(model_fn, params,
                             jax.ShapeDtypeStruct((1,) + tuple(image_shape), jnp.float32))
    except Exception as e:  # shape errors of the model itself
        raise ValueError(f"model_fn(params, images) fails on images of shape "
                         f"(B, {', '.join(map(str, image_shape))}): {type(e).__name__}: "
                         f"{str(e).splitlines()[0]}") from e
    if not hasattr(out, "shape") or out.ndim != 2:
        raise ValueError(
            "model_fn(params, images) must return logits of shape (B, num_classes), got "
            f"{getattr(out, 'shape', type(out).__name__)}")
    return int(out.shape[-1])


def validate_pairs(model_fn: ModelFn, params, sources, targets, labels, target_labels=None):
    """Checks a traversal batch and returns it as jax arrays (see `level_set_traversal`)."""
    sources = checks.check_images("sources", sources)
    b = sources.shape[0]
    targets = checks.check_images("targets", targets, channels=sources.shape[-1])
    if targets.shape != sources.shape:
        raise ValueError(
            f"targets must have the same shape as sources (one target per source), got "
            f"targets {tuple(targets.shape)} vs sources {tuple(sources.shape)}")
    k = num_classes_of(model_fn, params, sources.shape[1:])
    labels = checks.check_labels("labels", labels, batch=b, num_classes=k)
    if target_labels is not None:
        target_labels = checks.check_labels("target_labels", target_labels, batch=b,
                                            num_classes=k)
    return sources, targets, labels, target_labels


def level_set_traversal(model_fn: ModelFn, params, sources, targets, labels, key,
                        config: LSTConfig = LSTConfig(), *, target_labels=None,
                        progress: bool = False, desc: str = "LST") -> LSTResult:
    """Level Set Traversal from each source toward its paired target (arXiv 2310.19889).

    Each iteration projects `target - x` onto the orthogonal complement of the input gradient
    of the source-class cross-entropy, steps a fraction `step_size` of it (optionally minus
    the accumulated confidence-restoring term), clips to [0, 1], and accepts the step iff the
    source-class confidence dropped by less than `pthresh` below the clean source's.

    Args:
        model_fn: `model_fn(params, images) -> logits`; owns normalisation. Pass the same
            function object on every call to reuse the compiled program.
        params: pytree of model parameters/variables.
        sources, targets: paired images; target i is the destination of source i.
        labels: source labels (the class whose confidence is held).
        key: PRNG key for the uniform random start.
        config: `LSTConfig` (or `lst_jax.traversal.preset("paper")`).
        target_labels: classes for the target-confidence record; default: the model's
            prediction on each target.
        progress: run as jitted chunks of `log_step` iterations with a progress bar.

    Returns:
        `LSTResult` (final images, argmax-filter mask, per-iteration record, logged images).

    Shape:
        sources, targets: (B, H, W, C) float32 in [0, 1] (NHWC); labels: (B,) int in [0, K).

    Deviations from the reference: the projection coefficient is 0 where the gradient is 0
    (reference: NaN), non-finite candidates are rejected, acceptance is a select (not a
    multiplicative mix), and the argmax filter is returned as `valid` instead of dropping
    samples (static shapes).

    Raises:
        ValueError: mismatched batch sizes/shapes, wrong rank/channels/dtype, values outside
            [0, 1] or non-finite, labels out of range, invalid config.
    """
    if not isinstance(config, LSTConfig):
        raise ValueError(f"config must be an LSTConfig, got {type(config).__name__}")
    sources, targets, labels, target_labels = validate_pairs(model_fn, params, sources, targets,
                                                             labels, target_labels)
    if progress:
        return _traverse_chunked(model_fn, params, sources, targets, labels, target_labels,
                                 key, config, desc)
    return traverse(model_fn, params, sources, targets, labels, key, config, target_labels)


def reference_log_points(result: LSTResult, log_step: int) -> LSTRecord:
    """The reference's logged confidences: values at x_k for k = 0, log_step, 2 log_step, ...

    Shape:
        -> LSTRecord with fields (ceil(T / log_step), B).
    """
    full = jax.tree.map(lambda a, r: jnp.concatenate([a[None], r[:-1]], axis=0),
                        result.initial, result.record)
    t = full.conf_source.shape[0]
    idx = jnp.arange(0, t, log_step)
    return jax.tree.map(lambda a: a[idx], full)


__all__ = ["level_set_traversal", "traverse", "reference_log_points", "num_classes_of",
           "validate_pairs"]
