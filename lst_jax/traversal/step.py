"""One LST iteration: the per-sample projection and the fused / plain model steps.

The projection is written for one sample and vmapped over the batch; the model is called on
the whole batch (one forward, one backward per iteration in the fused step).
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from lst_jax.traversal.config import LSTConfig, LSTHyper, StaticSettings
from lst_jax.traversal.state import LSTRecord, LSTState, Pairs

ModelFn = Callable[[object, jax.Array], jax.Array]


def project_orthogonal(g: jax.Array, v: jax.Array) -> jax.Array:
    """Removes from `v` its component along `g` (one sample): `v - <g,v>/<g,g> g`.

    Scale-invariant in `g` (pass a gradient's direction). Deviation from the reference: a
    zero gradient gives coefficient 0 instead of 0/0 = NaN, so `v` passes unchanged.

    >>> import jax.numpy as jnp
    >>> project_orthogonal(jnp.array([1.0, 0.0]), jnp.array([3.0, 4.0]))
    Array([0., 4.], dtype=float32)

    Shape:
        g, v: (H, W, C) (any shape, flattened for the inner products) -> same shape.
    """
    gg = jnp.vdot(g, g)
    gv = jnp.vdot(g, v)
    coef = jnp.where(gg > 0, gv / jnp.maximum(gg, jnp.finfo(gg.dtype).tiny), 0.0)
    return v - coef * g


def propose(x, direction, scale, acc, target, hyper: LSTHyper, adv_pert: bool):
    """Candidate of one sample: `clip(x + eta v_perp - a, 0, 1)` and the updated accumulator.

    The gradient is `g = scale * direction` (see `input_gradient`): the projection, which does
    not depend on the gradient's magnitude, uses the well-scaled `direction`; the accumulator
    `a = clip(a + eps/2 g, -eps, eps)` uses `g`. The accumulator is updated on every call,
    accepted or not (reference behaviour).

    Shape:
        x, direction, acc, target: (H, W, C); scale: () -> (candidate (H, W, C), acc (H, W, C)).
    """
    v_perp = project_orthogonal(direction, target - x)
    eps = hyper.adv_step_size
    acc = jnp.clip(acc + (0.5 * eps * scale) * direction, -eps, eps)
    cand = x + hyper.step_size * v_perp
    if adv_pert:
        cand = cand - acc
    return jnp.clip(cand, 0.0, 1.0), acc


def _promote(logits):
    return logits.astype(jnp.promote_types(logits.dtype, jnp.float32))


def ce_cotangent(logits: jax.Array, labels: jax.Array, *, reference_numerics: bool = False):
    """Softmax probabilities and d(sum of CE)/d(logits) = softmax - onehot, as `scale * unit`.

    Default: `unit = (softmax - onehot) / (1 - p_y)` computed in log space, without
    cancellation: its true-class entry is exactly -1 and the others are
    `exp(log p_k - log sum_{j != y} p_j)`, so they stay exact when `p_y` rounds to 1 (in
    float32 `p_y - 1` is then 0 and the true-class term of the gradient is lost) and even when
    the other probabilities underflow. `scale = 1 - p_y = sum_{k != y} p_k` (B,), also from
    log space (it may underflow to 0: the true gradient is then below the dtype's range).

    `reference_numerics=True`: the reference's (PyTorch autograd's) arithmetic,
    `unit = exp(log_softmax) - onehot`, `scale = 1`.

    Shape:
        logits: (B, K), labels: (B,) -> probs (B, K), unit (B, K), scale (B,).
    """
    z = _promote(logits)
    logp = jax.nn.log_softmax(z, axis=-1)
    probs = jnp.exp(logp)
    onehot = jax.nn.one_hot(labels, z.shape[-1], dtype=jnp.bool_)
    if reference_numerics:
        return probs, probs - onehot.astype(z.dtype), jnp.ones(z.shape[:1], z.dtype)
    log_rest = jax.nn.logsumexp(jnp.where(onehot, -jnp.inf, logp), axis=-1)
    rest = jnp.where(onehot, -jnp.inf, logp - log_rest[:, None])
    unit = jnp.where(onehot, -1.0, jnp.exp(rest)).astype(z.dtype)
    return probs, unit, jnp.exp(log_rest)


def input_gradient(model_fn: ModelFn, params, x: jax.Array, labels: jax.Array, *,
                   reference_numerics: bool = False):
    """One forward and one backward pass: probabilities and the input gradient of the summed
    CE, as `grad = scale * direction`.

    The backward pass carries the unit cotangent of `ce_cotangent` (largest entry 1), so
    `direction` is well scaled however saturated the softmax is; `scale` (B,) restores the
    gradient's magnitude. Models are in eval mode (no cross-sample coupling), so the gradient
    of the batch sum is the per-sample gradient of -log p_y.

    Shape:
        x: (B, H, W, C), labels: (B,) -> probs (B, K), direction (B, H, W, C), scale (B,).
    """
    logits, vjp = jax.vjp(lambda z: model_fn(params, z), x)
    probs, unit, scale = ce_cotangent(logits, labels, reference_numerics=reference_numerics)
    (direction,) = vjp(unit.astype(logits.dtype))
    return probs, direction, scale.astype(direction.dtype)


def forward_backward(model_fn: ModelFn, params, images: jax.Array, labels: jax.Array, *,
                     reference_numerics: bool = False):
    """Probabilities and the input gradient of the summed CE (`input_gradient`, multiplied out;
    `reference_numerics`: see `ce_cotangent`).

    >>> import jax, jax.numpy as jnp
    >>> model_fn = lambda p, x: x.reshape(len(x), -1) @ p
    >>> params = jax.random.normal(jax.random.key(0), (8 * 8 * 3, 4))
    >>> images = jax.random.uniform(jax.random.key(1), (2, 8, 8, 3))
    >>> probs, grad = forward_backward(model_fn, params, images, jnp.array([0, 1]))
    >>> probs.shape, grad.shape
    ((2, 4), (2, 8, 8, 3))

    Shape:
        images: (B, H, W, C), labels: (B,) -> probs (B, K), grad (B, H, W, C).
    """
    probs, direction, scale = input_gradient(model_fn, params, images, labels,
                                             reference_numerics=reference_numerics)
    return probs, direction * scale.reshape((-1,) + (1,) * (direction.ndim - 1))


def softmax_probs(logits: jax.Array) -> jax.Array:
    """Softmax as `exp(log_softmax)` (the arithmetic of `ce_cotangent`), in at least float32
    (bfloat16 logits are promoted).

    Shape:
        logits: (B, K) -> (B, K).
    """
    return jnp.exp(jax.nn.log_softmax(_promote(logits), axis=-1))


def take_label(probs: jax.Array, labels: jax.Array) -> jax.Array:
    """The entry of each row at its label.

    Shape:
        probs: (B, K), labels: (B,) int -> (B,).
    """
    return jnp.take_along_axis(probs, labels[:, None], axis=-1)[:, 0]


def _accept(cand, cand_probs, pairs: Pairs, hyper: LSTHyper):
    """Strict drop test against the clean confidence; non-finite candidates are rejected."""
    drop = pairs.clean_conf - take_label(cand_probs, pairs.labels)
    finite = jnp.all(jnp.isfinite(cand.reshape(cand.shape[0], -1)), axis=-1)
    finite &= jnp.all(jnp.isfinite(cand_probs), axis=-1)
    return (drop < hyper.pthresh) & finite


def _select(ok, new, old):
    return jnp.where(ok.reshape((-1,) + (1,) * (new.ndim - 1)), new, old)


def record_of(state: LSTState) -> LSTRecord:
    """Per-sample diagnostics of the state's iterate (see `LSTRecord`).

    >>> import jax, jax.numpy as jnp
    >>> from lst_jax.traversal import lst_init
    >>> model_fn = lambda p, x: x.reshape(len(x), -1) @ p
    >>> params = jax.random.normal(jax.random.key(0), (8 * 8 * 3, 4))
    >>> images = jax.random.uniform(jax.random.key(1), (2, 8, 8, 3))
    >>> state = lst_init(model_fn, params, images, images[::-1], jnp.array([0, 1]),
    ...                  key=jax.random.key(2))
    >>> record_of(state).conf_source.shape
    (2,)

    Shape:
        -> LSTRecord with fields (B,).
    """
    pairs = state.pairs
    diff = (state.x - pairs.target_images).reshape(state.x.shape[0], -1)
    return LSTRecord(
        conf_source=take_label(state.probs, pairs.labels),
        conf_target=take_label(state.probs, pairs.target_labels),
        accepted=state.accepted,
        dist_target=jnp.sqrt(jnp.sum(diff * diff, axis=-1)),
    )


def step_core(model_fn: ModelFn, params, state: LSTState, hyper: LSTHyper,
              static: StaticSettings) -> LSTState:
    """`lst_step` with traced hyperparameters (`config.hyper_as(dtype)`) and the static part
    of the config (`config.static`): the runner's scan body, so that sweeping the float
    hyperparameters does not recompile."""
    pairs = state.pairs
    fused, reference_numerics = static.fused, static.reference_numerics
    propose_b = jax.vmap(propose, in_axes=(0, 0, 0, 0, 0, None, None))
    if fused:
        direction, scale = state.grad, state.grad_scale
    else:
        _, direction, scale = input_gradient(model_fn, params, state.x, pairs.labels,
                                             reference_numerics=reference_numerics)
    cand, acc = propose_b(state.x, direction, scale, state.acc, pairs.target_images, hyper,
                          static.adv_pert)
    if fused:
        cand_probs, cand_dir, cand_scale = input_gradient(
            model_fn, params, cand, pairs.labels, reference_numerics=reference_numerics)
    else:
        cand_probs = softmax_probs(model_fn(params, cand))
    ok = _accept(cand, cand_probs, pairs, hyper)
    x = _select(ok, cand, state.x)
    probs = _select(ok, cand_probs, state.probs)
    if fused:
        new_dir, new_scale = _select(ok, cand_dir, direction), _select(ok, cand_scale, scale)
    else:
        new_dir, new_scale = state.grad, state.grad_scale
    return LSTState(x=x, acc=acc, grad=new_dir, grad_scale=new_scale, probs=probs,
                    accepted=ok, pairs=pairs)


def lst_step(model_fn: ModelFn, params, state: LSTState, *,
             config: LSTConfig = LSTConfig()) -> LSTState:
    """One LST iteration on a batch (the state from `lst_init` or a previous step).

    `config.fused` (default): the gradient carried in `state` (computed at `x` by the previous
    iteration's backward pass) is used for the projection, and the candidate's forward pass is
    reused for its gradient via `jax.vjp` -> 1 forward + 1 backward. Rejected samples keep
    their old gradient. `fused=False`: the reference order, forward+backward at `x`, then a
    separate forward for the candidate -> 2 forwards + 1 backward. Both give the same
    trajectory. `record_of(state)` gives the new iterate's diagnostics. Traceable inside
    `jax.jit` (mark `model_fn` and `config` static: the float hyperparameters are then
    compiled in; `level_set_traversal` traces them instead).

    >>> import jax, jax.numpy as jnp
    >>> from lst_jax.traversal import LSTConfig, lst_init, lst_step
    >>> model_fn = lambda p, x: x.reshape(len(x), -1) @ p
    >>> params = jax.random.normal(jax.random.key(0), (8 * 8 * 3, 4))
    >>> images = jax.random.uniform(jax.random.key(1), (2, 8, 8, 3))
    >>> labels = jnp.argmax(model_fn(params, images), -1)
    >>> cfg = LSTConfig(iters=3)
    >>> state = lst_init(model_fn, params, images, images[::-1], labels, key=jax.random.key(2),
    ...                  config=cfg)
    >>> for _ in range(cfg.iters):
    ...     state = lst_step(model_fn, params, state, config=cfg)
    >>> state.x.shape
    (2, 8, 8, 3)

    Shape:
        state.x: (B, H, W, C) -> LSTState of the same shapes.
    """
    if not isinstance(config, LSTConfig):
        raise TypeError(f"config must be an LSTConfig, got {type(config).__name__}")
    if not isinstance(state, LSTState):
        raise TypeError(f"state must be an LSTState (from lst_init), got "
                        f"{type(state).__name__}")
    return step_core(model_fn, params, state, config.hyper_as(state.x.dtype), config.static)
