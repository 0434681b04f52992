"""One LST iteration: the per-sample projection and the fused / plain model steps.

The projection is written for one sample and vmapped over the batch; the model is called on
the whole batch (one forward, one backward per iteration in the fused step).
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from lst_jax.traversal.config import Hyper
from lst_jax.traversal.state import LSTRecord, LSTState

ModelFn = Callable[[object, jax.Array], jax.Array]

_TINY = float(jnp.finfo(jnp.float32).tiny)


class Pairs(NamedTuple):
    """Per-pair constants of a traversal batch.

    Shape:
        targets: (B, H, W, C); labels, target_labels: (B,) int32; clean_conf: (B,) float32.
    """

    targets: jax.Array
    labels: jax.Array
    target_labels: jax.Array
    clean_conf: jax.Array


def project_orthogonal(g: jax.Array, v: jax.Array) -> jax.Array:
    """Removes from `v` its component along `g` (one sample): `v - <g,v>/<g,g> g`.

    Deviation from the reference: a zero gradient (saturated softmax) gives coefficient 0
    instead of 0/0 = NaN, so `v` passes unchanged.

    Shape:
        g, v: (H, W, C) (any shape, flattened for the inner products) -> same shape.
    """
    gg = jnp.vdot(g, g)
    gv = jnp.vdot(g, v)
    coef = jnp.where(gg > 0, gv / jnp.maximum(gg, _TINY), 0.0)
    return v - coef * g


def propose(x, g, acc, target, hyper: Hyper, adv_pert: bool):
    """Candidate of one sample: `clip(x + eta v_perp - a, 0, 1)` and the updated accumulator.

    The accumulator is updated on every call, accepted or not (reference behaviour).

    Shape:
        x, g, acc, target: (H, W, C) -> (candidate (H, W, C), acc (H, W, C)).
    """
    v_perp = project_orthogonal(g, target - x)
    eps = hyper.adv_step_size
    acc = jnp.clip(acc + 0.5 * eps * g, -eps, eps)
    cand = x + hyper.step_size * v_perp
    if adv_pert:
        cand = cand - acc
    return jnp.clip(cand, 0.0, 1.0), acc


def ce_cotangent(logits: jax.Array, labels: jax.Array):
    """Softmax probabilities and d(sum of CE)/d(logits) = softmax - onehot.

    Shape:
        logits: (B, K), labels: (B,) -> probs (B, K), cotangent (B, K).
    """
    probs = jax.nn.softmax(logits.astype(jnp.float32), axis=-1)
    onehot = jax.nn.one_hot(labels, logits.shape[-1], dtype=probs.dtype)
    return probs, (probs - onehot).astype(logits.dtype)


def forward_backward(model_fn: ModelFn, params, x: jax.Array, labels: jax.Array):
    """One forward and one backward pass: probabilities and the input gradient of the summed CE.

    Models are in eval mode (no cross-sample coupling), so the gradient of the batch sum is the
    per-sample gradient of -log p_y.

    Shape:
        x: (B, H, W, C), labels: (B,) -> probs (B, K), grad (B, H, W, C).
    """
    logits, vjp = jax.vjp(lambda z: model_fn(params, z), x)
    probs, cot = ce_cotangent(logits, labels)
    (grad,) = vjp(cot)
    return probs, grad


def _take(probs, labels):
    return jnp.take_along_axis(probs, labels[:, None], axis=-1)[:, 0]


def _accept(cand, cand_probs, pairs: Pairs, hyper: Hyper):
    """Strict drop test against the clean confidence; non-finite candidates are rejected."""
    drop = pairs.clean_conf - _take(cand_probs, pairs.labels)
    finite = jnp.all(jnp.isfinite(cand.reshape(cand.shape[0], -1)), axis=-1)
    finite &= jnp.all(jnp.isfinite(cand_probs), axis=-1)
    return (drop < hyper.pthresh) & finite


def _select(ok, new, old):
    return jnp.where(ok.reshape((-1,) + (1,) * (new.ndim - 1)), new, old)


def record_of(x, probs, accepted, pairs: Pairs) -> LSTRecord:
    """Per-sample diagnostics of an iterate (see `LSTRecord`)."""
    diff = (x - pairs.targets).reshape(x.shape[0], -1)
    return LSTRecord(
        conf_source=_take(probs, pairs.labels),
        conf_target=_take(probs, pairs.target_labels),
        accepted=accepted,
        dist_target=jnp.sqrt(jnp.sum(diff * diff, axis=-1)),
    )


def lst_step(model_fn: ModelFn, params, state: LSTState, pairs: Pairs, hyper: Hyper,
             *, adv_pert: bool, fused: bool):
    """One LST iteration on a batch; returns the new state and its `LSTRecord`.

    fused=True: the gradient carried in `state` (computed at `x` by the previous iteration's
    backward pass) is used for the projection, and the candidate's forward pass is reused for
    its gradient via `jax.vjp` -> 1 forward + 1 backward. Rejected samples keep their old
    gradient. fused=False: the reference order, forward+backward at `x`, then a separate forward
    for the candidate -> 2 forwards + 1 backward. Both give the same trajectory.
    """
    propose_b = jax.vmap(propose, in_axes=(0, 0, 0, 0, None, None))
    if fused:
        grad = state.grad
    else:
        _, grad = forward_backward(model_fn, params, state.x, pairs.labels)
    cand, acc = propose_b(state.x, grad, state.acc, pairs.targets, hyper, adv_pert)
    if fused:
        cand_probs, cand_grad = forward_backward(model_fn, params, cand, pairs.labels)
    else:
        cand_probs = jax.nn.softmax(model_fn(params, cand).astype(jnp.float32), axis=-1)
    ok = _accept(cand, cand_probs, pairs, hyper)
    x = _select(ok, cand, state.x)
    probs = _select(ok, cand_probs, state.probs)
    new_grad = _select(ok, cand_grad, grad) if fused else state.grad
    new_state = LSTState(x=x, acc=acc, grad=new_grad, probs=probs, step=state.step + 1)
    return new_state, record_of(x, probs, ok, pairs)
