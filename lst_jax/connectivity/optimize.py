"""Many independent input optimisations in one jitted loop (bypass, FVO, free, attack).

Every optimiser of the paper minimises, per sample,

    CE(model(x), c) + mse_weight * mean((x - anchor)^2) + tv_weight * TV(x - anchor)

with PyTorch-style Adam (`optax.adam`; coupled L2 as `optax.chain(
optax.add_decayed_weights(wd), optax.adam(lr))`, PyTorch's `Adam(weight_decay=wd)`), and
differs only in the stopping rule, which iterate it returns and an optional constraint to the
hyperplane orthogonal to a direction `v`:

| rule          | used by          | stop when                          | returns                   |
|---------------|------------------|------------------------------------|---------------------------|
| `"none"`      | barrier bypass   | after `steps` updates              | the final iterate         |
| `"pre_step"`  | free opt, attack | CE *before* update k < threshold,  | the iterate after update k|
|               |                  | k >= `min_step` (attack: k > 32)   |                           |
| `"post_step"` | FVO              | CE *after* an update < threshold   | with `keep_best`: the     |
|               |                  |                                    | lowest post-update CE     |

Projection (`"faithful"`: remove the gradient's component along v, then Adam, as the
authors; the iterate drifts slightly off the plane because Adam rescales per coordinate.
`"exact"` [ours]: the same, then the new iterate's displacement from the start is projected
back onto the plane, so it stays there to float round-off).

The samples are one batch: one forward and one backward of the model per iteration for all of
them, a vmapped optax state (each sample has its own Adam moments and step count), and a
`done` mask that freezes finished samples (`jnp.where`: no update, state unchanged). The loop
is a `lax.while_loop` that ends once every sample is done (or after the last step), so a batch
whose samples all stop early does not run to the step limit; a sample's result does not depend
on the others in its batch (tested against single-sample runs).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

from lst_jax.connectivity.objective import cross_entropy, deviation_objective
from lst_jax.utils.checks import check_nonnegative, check_positive_int
from lst_jax.utils.progress import Progress

STOP_RULES = ("none", "pre_step", "post_step")
PROJECTIONS = (None, "faithful", "exact")


@dataclasses.dataclass(frozen=True)
class LoopSpec:
    """Static settings of the optimisation loop (compiled in; hashable).

    Attributes:
        steps: maximum number of Adam updates.
        stop: "none" | "pre_step" | "post_step" (see the module docstring).
        min_step: first update index k at which a "pre_step" rule may stop (attack: 33).
        keep_best: return the iterate with the lowest post-update CE ("post_step" only).
        projection: None | "faithful" | "exact" (hyperplane orthogonal to `direction`).
        record: also return the CE at every iterate (`trace`, (steps + 1, B)).
    """

    steps: int
    stop: str = "none"
    min_step: int = 0
    keep_best: bool = False
    projection: str | None = None
    record: bool = False

    def __post_init__(self):
        check_positive_int("steps", self.steps)
        if self.stop not in STOP_RULES:
            raise ValueError(f"stop must be one of {STOP_RULES}, got {self.stop!r}")
        if self.projection not in PROJECTIONS:
            raise ValueError(f"projection must be one of {PROJECTIONS}, got "
                             f"{self.projection!r}")
        if self.keep_best and self.stop != "post_step":
            raise ValueError("keep_best needs stop='post_step' (the best is judged on the "
                             "CE after each update)")
        if isinstance(self.min_step, bool) or not isinstance(self.min_step, int) \
                or self.min_step < 0:
            raise ValueError(f"min_step must be a non-negative integer, got {self.min_step!r}")


class Hyper(NamedTuple):
    """Traced hyperparameters (sweeping them does not recompile).

    Shape:
        lr, weight_decay: scalars; mse_weight, tv_weight, threshold: (B,).
    """

    lr: Any
    weight_decay: Any
    mse_weight: Any
    tv_weight: Any
    threshold: Any


class Problem(NamedTuple):
    """Per-sample data of a batch of optimisations.

    Attributes:
        x0: start; anchor: centre of the MSE / TV penalties; labels: class c.
        direction: v of the hyperplane constraint (zeros without projection).
        done: samples frozen from the start (padding rows).

    Shape:
        x0, anchor, direction: (B, H, W, C) float32; labels: (B,) int32; done: (B,) bool.
    """

    x0: jax.Array
    anchor: jax.Array
    labels: jax.Array
    direction: jax.Array
    done: jax.Array


class LoopState(NamedTuple):
    """Carry of the optimisation loop.

    Shape:
        k: () int32, the iterate being evaluated; x: (B, H, W, C); opt: optax state with
        leading axis B; done: (B,) bool; steps: (B,) int32 updates applied; best_x:
        (B, H, W, C); best_ce: (B,); trace: (steps + 1, B) (or (0, B) without `record`).
    """

    k: jax.Array
    x: jax.Array
    opt: Any
    done: jax.Array
    steps: jax.Array
    best_x: jax.Array
    best_ce: jax.Array
    trace: jax.Array


class OptimizeResult(NamedTuple):
    """Outcome per sample.

    Attributes:
        x: the returned iterate (final, post-stop, or best; see the rule).
        ce: CE of the class at `x` (one forward pass after the loop).
        steps: Adam updates applied.
        stopped: True where the stopping rule fired (False: ran to the step limit).
        trace: CE at iterate k (rows k = 0 .. steps), NaN once the sample is frozen; None
            without `record`.

    Shape:
        x: (B, H, W, C); ce: (B,); steps: (B,) int; stopped: (B,) bool; trace: (steps+1, B).
    """

    x: np.ndarray
    ce: np.ndarray
    steps: np.ndarray
    stopped: np.ndarray
    trace: np.ndarray | None


def make_optimizer(lr, weight_decay) -> optax.GradientTransformation:
    """PyTorch `Adam(lr, weight_decay=wd)`: coupled L2 (`g + wd * x`), then Adam."""
    return optax.chain(optax.add_decayed_weights(weight_decay), optax.adam(lr))


def _bcast(mask, leaf):
    return mask.reshape(mask.shape + (1,) * (leaf.ndim - 1))


def _remove_component(u, v):
    """u - (u.v / v.v) v per sample (u unchanged where v = 0)."""
    axes = tuple(range(1, u.ndim))
    vv = jnp.sum(v * v, axis=axes)
    coef = jnp.where(vv > 0, jnp.sum(u * v, axis=axes) / jnp.where(vv > 0, vv, 1.0), 0.0)
    return u - _bcast(coef, u) * v


def _where(mask, new, old):
    return jax.tree.map(lambda a, b: jnp.where(_bcast(mask, a), a, b), new, old)


@functools.partial(jax.jit, static_argnames=("model_fn", "spec"))
def _optimize_jit(model_fn, params, problem: Problem, hyper: Hyper, spec: LoopSpec):
    tx = make_optimizer(hyper.lr, hyper.weight_decay)
    b = problem.x0.shape[0]
    last = spec.steps if spec.stop == "post_step" else spec.steps - 1

    def objective(x):
        total, ce = deviation_objective(model_fn, params, x, problem.labels, problem.anchor,
                                        hyper.mse_weight, hyper.tv_weight)
        return total.sum(), ce

    grad_fn = jax.value_and_grad(objective, has_aux=True)

    def body(s: LoopState) -> LoopState:
        (_, ce), g = grad_fn(s.x)
        done, best_x, best_ce = s.done, s.best_x, s.best_ce
        trace = s.trace
        if spec.record:
            trace = trace.at[s.k].set(jnp.where(done, jnp.nan, ce))
        if spec.stop == "post_step":      # s.x is the iterate after update k - 1
            post = (s.k >= 1) & ~done
            if spec.keep_best:
                better = post & (ce < best_ce)
                best_x = jnp.where(_bcast(better, s.x), s.x, best_x)
                best_ce = jnp.where(better, ce, best_ce)
            done = done | (post & (ce < hyper.threshold))
        active = ~done & (s.k < spec.steps)
        if spec.projection is not None:
            g = _remove_component(g, problem.direction)
        updates, opt = jax.vmap(tx.update)(g, s.opt, s.x)
        x_new = s.x + updates
        if spec.projection == "exact":
            x_new = problem.x0 + _remove_component(x_new - problem.x0, problem.direction)
        x = jnp.where(_bcast(active, s.x), x_new, s.x)
        opt = _where(active, opt, s.opt)
        if spec.stop == "pre_step":
            done = done | (active & (s.k >= spec.min_step) & (ce < hyper.threshold))
        return LoopState(s.k + 1, x, opt, done, s.steps + active.astype(jnp.int32), best_x,
                         best_ce, trace)

    def cond(s: LoopState):
        return (s.k <= last) & jnp.any(~s.done)

    x0 = problem.x0
    init = LoopState(k=jnp.zeros((), jnp.int32), x=x0, opt=jax.vmap(tx.init)(x0),
                     done=problem.done, steps=jnp.zeros((b,), jnp.int32), best_x=x0,
                     best_ce=jnp.full((b,), jnp.inf, jnp.float32),
                     trace=jnp.full((spec.steps + 1 if spec.record else 0, b), jnp.nan,
                                    jnp.float32))
    s = lax.while_loop(cond, body, init)
    x = s.best_x if spec.keep_best else s.x
    # Stopped by the rule (not by the step limit or as padding).
    stopped = s.done & ~problem.done
    ce = cross_entropy(model_fn(params, x), problem.labels)
    return x, ce, s.steps, stopped, s.trace


def _as_batch(name, value, b: int) -> np.ndarray:
    a = np.asarray(value, np.float32)
    if a.ndim == 0:
        a = np.full((b,), a, np.float32)
    if a.shape != (b,):
        raise ValueError(f"{name} must be a scalar or have shape ({b},), got {a.shape}")
    if not np.all(np.isfinite(a)) and name != "threshold":
        raise ValueError(f"{name} must be finite")
    return a


def optimize_inputs(model_fn, params, x0, labels, spec: LoopSpec, *, lr: float,
                    weight_decay: float = 0.0, mse_weight=0.0, tv_weight=0.0,
                    threshold=-np.inf, anchor=None, direction=None,
                    batch_size: int | None = None, mesh=None, progress: bool = False,
                    desc: str = "optimising") -> OptimizeResult:
    """Runs the per-sample optimisations `spec` on every row of `x0` (no input validation
    beyond shapes; the public wrappers check their arguments).

    Rows are processed in chunks of `batch_size` (default: all at once), the last chunk padded
    with frozen copies, so every chunk runs the same compiled program. With `mesh`, each chunk
    is split over the mesh's `"data"` axis (params replicated); chunks are then rounded up to
    a multiple of the device count.

    Args:
        model_fn, params: the model on inputs of the space of `x0`.
        spec: static loop settings (`LoopSpec`).
        lr, weight_decay: Adam step size and coupled L2 weight (traced).
        mse_weight, tv_weight, threshold: scalars or per-row (N,) values (traced).
        anchor: penalty centre (default `x0`); direction: hyperplane normal for `spec.
            projection` (required then).

    Returns:
        `OptimizeResult` of numpy arrays with leading size N.

    Shape:
        x0, anchor, direction: (N, H, W, C) float32; labels: (N,) int.
    """
    x0 = np.asarray(x0, np.float32)
    n = len(x0)
    labels = np.asarray(labels, np.int32)
    anchor = x0 if anchor is None else np.asarray(anchor, np.float32)
    if spec.projection is not None and direction is None:
        raise ValueError("direction is required with a projection")
    direction = np.zeros_like(x0) if direction is None else np.asarray(direction, np.float32)
    for name, a in (("anchor", anchor), ("direction", direction)):
        if a.shape != x0.shape:
            raise ValueError(f"{name} must have the shape of x0 {x0.shape}, got {a.shape}")
    check_nonnegative("lr", lr)
    check_nonnegative("weight_decay", weight_decay)
    rows = {"x0": x0, "anchor": anchor, "labels": labels, "direction": direction,
            "mse": _as_batch("mse_weight", mse_weight, n),
            "tv": _as_batch("tv_weight", tv_weight, n),
            "thr": _as_batch("threshold", threshold, n)}
    chunk = n if batch_size is None else min(check_positive_int("batch_size", batch_size), n)
    if mesh is not None:
        from lst_jax.parallel.mesh import num_shards, put_batch, put_replicated

        d = num_shards(mesh)
        chunk = -(-chunk // d) * d
        params = put_replicated(params, mesh)
    outs = []
    with Progress(n, desc=desc, unit="inputs", enabled=progress) as bar:
        for start in range(0, n, chunk):
            part = {k: v[start:start + chunk] for k, v in rows.items()}
            m = len(part["x0"])
            pad = chunk - m
            if pad:
                part = {k: np.concatenate([v, np.repeat(v[-1:], pad, axis=0)])
                        for k, v in part.items()}
            done = np.arange(chunk) >= m
            problem = Problem(part["x0"], part["anchor"], part["labels"], part["direction"],
                              done)
            hyper = Hyper(np.float32(lr), np.float32(weight_decay), part["mse"], part["tv"],
                          part["thr"])
            if mesh is not None:
                problem, hyper = Problem(*put_batch(tuple(problem), mesh)), \
                    hyper._replace(**put_batch({"mse_weight": hyper.mse_weight,
                                                "tv_weight": hyper.tv_weight,
                                                "threshold": hyper.threshold}, mesh))
            out = jax.device_get(_optimize_jit(model_fn, params, problem, hyper, spec))
            x, ce, steps, stopped, trace = out
            outs.append((x[:m], ce[:m], steps[:m], stopped[:m],
                         trace[:, :m] if spec.record else None))
            bar.update(m)
    cat = lambda i, axis=0: np.concatenate([o[i] for o in outs], axis=axis)
    return OptimizeResult(x=cat(0), ce=cat(1), steps=cat(2), stopped=cat(3),
                          trace=cat(4, axis=1) if spec.record else None)
