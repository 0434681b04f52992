"""Many independent input optimisations in one jitted loop (bypass, FVO, free, attack).

Every optimiser of the paper minimises, per sample,

    CE(model(x), c) + mse_weight * mean((x - anchor)^2) + tv_weight * TV(x - anchor)

with PyTorch-style Adam (`optax.adam`; coupled L2 as `optax.chain(
optax.add_decayed_weights(wd), optax.adam(lr))`, PyTorch's `Adam(weight_decay=wd)`), and
differs only in the stopping rule, which iterate it returns and an optional constraint to the
hyperplane orthogonal to a direction `v`:

| rule        | used by          | stop when                          | returns                  |
|-------------|------------------|------------------------------------|--------------------------|
| "none"      | barrier bypass   | after `steps` updates              | the final iterate        |
| "pre_step"  | free opt, attack | CE *before* update k < threshold,  | the iterate after update |
|             |                  | k >= `min_step` (attack: k > 32)   | k                        |
| "post_step" | FVO              | CE *after* an update < threshold   | with `keep_best`: the    |
|             |                  |                                    | lowest post-update CE    |

Projection (`"faithful"`: remove the gradient's component along v, then Adam, as the
authors; the iterate drifts slightly off the plane because Adam rescales per coordinate.
`"exact"` [ours]: the same, then the new iterate's displacement from the start is projected
back onto the plane, so it stays there to float round-off).

The samples are one batch: one forward and one backward of the model per iteration for all of
them, a vmapped optax state (each sample has its own Adam moments and step count), and a
`done` mask that freezes finished samples (`jnp.where`: no update, state unchanged). The loop
is a `lax.while_loop` that ends after the last step, once every sample is done, or once at
most half of the batch still runs: the running samples then continue, on the device, in the next
smaller batch of a fixed ladder (compaction), so with early stopping the cost follows the
row-steps actually
needed. A sample's result depends neither on the others in its batch nor on compaction
(tested against single-sample runs and fixed batches).

Public API (docs/design.md, "API conventions"): `OptimizerConfig` (the static loop settings
and the traced hyperparameters), the optax-shaped pair `optimize_inputs_init(...) ->
OptimizerState` / `optimize_inputs_step(...) -> OptimizerState` with `optimize_inputs_result`
for a user's own loop, `optimize_inputs_unchecked` (the whole loop, no validation, no
compaction: traceable inside `jax.jit`) and `optimize_inputs` (validated, chunked, compacted,
optionally over a mesh). All of them run the same iteration (`_step`).
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
from lst_jax.utils.cache import ModelCache
from lst_jax.utils.checks import check_positive_int
from lst_jax.utils.compiles import ladder_size
from lst_jax.utils.progress import Progress

STOP_RULES = ("none", "pre_step", "post_step")
PROJECTIONS = (None, "faithful", "exact")
HYPER_FIELDS = ("lr", "weight_decay", "mse_weight", "tv_weight", "threshold")
COMPACT_MIN_BATCH = 8      # smallest batch of the compaction ladder (rows per device group)


@dataclasses.dataclass(frozen=True)
class LoopSpec:
    """The compiled-in part of `OptimizerConfig` (hashable; a jit static argument).

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
        for name in ("keep_best", "record"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be a bool, got {getattr(self, name)!r}")


def _hyper_value(name: str, value):
    """A float or a tuple of per-row floats (lists / arrays are turned into tuples)."""
    if isinstance(value, (list, tuple, np.ndarray, jax.Array)) and np.ndim(value) > 0:
        vals = tuple(float(v) for v in np.asarray(value, np.float64).ravel())
        if not vals:
            raise ValueError(f"{name} must not be empty")
    else:
        try:
            vals = (float(value),)
        except (TypeError, ValueError):
            raise ValueError(f"{name} must be a number or a sequence of numbers (one per "
                             f"row), got {value!r}") from None
    a = np.asarray(vals)
    if np.any(np.isnan(a)) or (name != "threshold" and not np.all(np.isfinite(a))):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if name != "threshold" and np.any(a < 0):
        raise ValueError(f"{name} must be non-negative, got {value!r}")
    return vals if isinstance(value, (list, tuple, np.ndarray, jax.Array)) \
        and np.ndim(value) > 0 else vals[0]


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
    """Settings of the batched input optimiser (see the module docstring).

    Attributes:
        steps, stop, min_step, keep_best, projection, record: the loop (compiled in, see
            `LoopSpec`).
        lr, weight_decay, mse_weight, tv_weight, threshold: Adam step, coupled L2, penalty
            weights and the stopping rule's CE threshold; each a float or a tuple with one
            value per row (traced: changing them does not recompile).
    """

    steps: int = 100
    stop: str = "none"
    min_step: int = 0
    keep_best: bool = False
    projection: str | None = None
    record: bool = False
    lr: float | tuple = 1e-3
    weight_decay: float | tuple = 0.0
    mse_weight: float | tuple = 0.0
    tv_weight: float | tuple = 0.0
    threshold: float | tuple = -np.inf

    def __post_init__(self):
        _ = self.static    # validates the loop settings
        for name in HYPER_FIELDS:
            object.__setattr__(self, name, _hyper_value(name, getattr(self, name)))

    @property
    def static(self) -> LoopSpec:
        return LoopSpec(self.steps, self.stop, self.min_step, self.keep_best, self.projection,
                        self.record)

    @property
    def num_iterations(self) -> int:
        """Calls of `optimize_inputs_step` of a full run (`steps`, or `steps + 1` with
        stop="post_step": the iterate after the last update is judged too)."""
        return _last_k(self.static) + 1

    def hyper(self, n: int) -> "RowHyper":
        """The traced hyperparameters as float32 (n,) numpy arrays.

        Raises:
            ValueError: a per-row tuple whose length is not `n`.
        """
        out = []
        for name in HYPER_FIELDS:
            v = getattr(self, name)
            if isinstance(v, tuple) and len(v) != n:
                raise ValueError(f"config.{name} has {len(v)} values (one per row), but there "
                                 f"are {n} rows")
            out.append(np.broadcast_to(np.asarray(v, np.float32), (n,)).copy())
        return RowHyper(*out)

    def replace(self, **changes) -> "OptimizerConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


class RowHyper(NamedTuple):
    """Traced per-row hyperparameters of the input optimiser (sweeping them does not
    recompile).

    Shape:
        lr, weight_decay, mse_weight, tv_weight, threshold: (B,) float32.
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


class OptimizerState(NamedTuple):
    """State of a batch of input optimisations (`optimize_inputs_init` / `_step`).

    Attributes:
        k: the index of the iterate the next step evaluates (updates so far, run-wide).
        x: the current iterates; opt: the optax (Adam) state, one per row.
        done: rows frozen (stopping rule fired, or padding); steps: updates applied per row.
        best_x, best_ce: the lowest post-update CE iterate and its CE (keep_best).
        trace: CE at iterate k per row (rows k = 0 .. steps; (0, B) without `record`).
        problem: the rows' data (`Problem`); hyper: their hyperparameters (`RowHyper`).

    Shape:
        k: () int32; x, best_x: (B, H, W, C); done: (B,) bool; steps: (B,) int32; best_ce:
        (B,); trace: (steps + 1, B) or (0, B).
    """

    k: jax.Array
    x: jax.Array
    opt: Any
    done: jax.Array
    steps: jax.Array
    best_x: jax.Array
    best_ce: jax.Array
    trace: jax.Array
    problem: Problem
    hyper: RowHyper


class OptimizeResult(NamedTuple):
    """Outcome per sample (`jax.Array` leaves).

    Attributes:
        x: the returned iterate (final, post-stop, or best; see the rule).
        ce: CE of the class at `x` (one forward pass after the loop).
        steps: Adam updates applied.
        stopped: True where the stopping rule fired (False: ran to the step limit).
        trace: CE at iterate k (rows k = 0 .. steps), NaN once the sample is frozen; None
            without `record`.

    Shape:
        x: (B, H, W, C); ce: (B,); steps: (B,) int32; stopped: (B,) bool; trace:
        (steps + 1, B).
    """

    x: jax.Array
    ce: jax.Array
    steps: jax.Array
    stopped: jax.Array
    trace: jax.Array | None


def as_jax_result(res: OptimizeResult) -> OptimizeResult:
    """The result with `jax.Array` leaves (the public functions' return type)."""
    return jax.device_put(res)      # explicit host -> device copy


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


def _last_k(spec: LoopSpec) -> int:
    """Index of the last iterate evaluated (post_step rules judge the iterate after the last
    update, so they evaluate one more)."""
    return spec.steps if spec.stop == "post_step" else spec.steps - 1


def _init(problem: Problem, hyper: RowHyper, spec: LoopSpec) -> OptimizerState:
    x0, b = problem.x0, problem.x0.shape[0]
    opt = jax.vmap(make_optimizer(1.0, 0.0).init)(x0)     # Adam's state: zeros, count 0
    # Fresh buffers (copies), not the problem's: the loop donates its state.
    return OptimizerState(k=jnp.zeros((), jnp.int32), x=jnp.copy(x0), opt=opt,
                          done=jnp.copy(problem.done), steps=jnp.zeros((b,), jnp.int32),
                          best_x=jnp.copy(x0),
                          best_ce=jnp.full((b,), jnp.inf, x0.dtype),
                          trace=jnp.full((spec.steps + 1 if spec.record else 0, b), jnp.nan,
                                         x0.dtype),
                          problem=problem, hyper=hyper)


_init_jit = jax.jit(_init, static_argnames=("spec",))


def _step(model_fn, params, problem: Problem, hyper: RowHyper, spec: LoopSpec,
          s: OptimizerState) -> OptimizerState:
    """One iteration: evaluate iterate k, apply the stopping rule, update the active rows.
    `problem` and `hyper` are passed apart (loop invariants of the while loop)."""
    update = jax.vmap(lambda g, o, x, lr, wd: make_optimizer(lr, wd).update(g, o, x))

    def objective(x):
        total, ce = deviation_objective(model_fn, params, x, problem.labels, problem.anchor,
                                        hyper.mse_weight, hyper.tv_weight)
        return total.sum(), ce

    (_, ce), g = jax.value_and_grad(objective, has_aux=True)(s.x)
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
    updates, opt = update(g, s.opt, s.x, hyper.lr, hyper.weight_decay)
    x_new = s.x + updates
    if spec.projection == "exact":
        x_new = problem.x0 + _remove_component(x_new - problem.x0, problem.direction)
    x = jnp.where(_bcast(active, s.x), x_new, s.x)
    opt = _where(active, opt, s.opt)
    if spec.stop == "pre_step":
        done = done | (active & (s.k >= spec.min_step) & (ce < hyper.threshold))
    return s._replace(k=s.k + 1, x=x, opt=opt, done=done,
                      steps=s.steps + active.astype(jnp.int32), best_x=best_x,
                      best_ce=best_ce, trace=trace)


@functools.partial(jax.jit, static_argnames=("model_fn", "spec"))
def _step_jit(model_fn, params, state: OptimizerState, spec: LoopSpec) -> OptimizerState:
    return _step(model_fn, params, state.problem, state.hyper, spec, state)


def _loop(model_fn, params, spec: LoopSpec, state: OptimizerState, min_active):
    """`_step` until the last step, or until at most `min_active` rows are still active."""
    problem, hyper = state.problem, state.hyper

    def cond(s):
        return (s.k <= _last_k(spec)) & (jnp.sum(~s.done) > min_active)

    body = lambda s: _step(model_fn, params, problem, hyper, spec, s)
    out = lax.while_loop(cond, body, state._replace(problem=None, hyper=None))
    return out._replace(problem=problem, hyper=hyper)


@functools.partial(jax.jit, static_argnames=("model_fn", "spec"), donate_argnames=("state",))
def _run_jit(model_fn, params, spec: LoopSpec, state: OptimizerState,
             min_active) -> OptimizerState:
    """Iterates until the last step, or until at most `min_active` samples are still active
    (then the host compacts the batch; 0: never)."""
    return _loop(model_fn, params, spec, state, min_active)


@functools.partial(jax.jit, static_argnames=("model_fn",))
def _ce_jit(model_fn, params, x, labels):
    return cross_entropy(model_fn(params, x), labels)


def _result(model_fn, params, state: OptimizerState, spec: LoopSpec) -> OptimizeResult:
    x = state.best_x if spec.keep_best else state.x
    stopped = state.done & ~state.problem.done      # only the rules set `done`
    return OptimizeResult(x=x, ce=cross_entropy(model_fn(params, x), state.problem.labels),
                          steps=state.steps, stopped=stopped,
                          trace=state.trace if spec.record else None)


def _problem(images, labels, anchor, direction) -> Problem:
    """The rows' data in the images' float dtype (float32; float64 in ground-truth runs)."""
    images = jnp.asarray(images)
    dtype = images.dtype if jnp.issubdtype(images.dtype, jnp.floating) else jnp.float32
    done = jnp.zeros(images.shape[:1], bool)
    anchor = images if anchor is None else anchor
    direction = jnp.zeros_like(images) if direction is None else direction
    return Problem(images.astype(dtype), jnp.asarray(anchor, dtype),
                   jnp.asarray(labels, jnp.int32), jnp.asarray(direction, dtype), done)


def _validate(model_fn, params, images, labels, config, anchor, direction):
    from lst_jax.connectivity.paths import check_class_labels, check_inputs

    if not isinstance(config, OptimizerConfig):
        raise TypeError(f"config must be an OptimizerConfig, got {type(config).__name__}")
    images = check_inputs("images", images)
    labels = check_class_labels("labels", labels, model_fn, params, images.shape[1:],
                                len(images))
    if config.projection is not None and direction is None:
        raise ValueError("direction is required with a projection")
    if anchor is not None:
        anchor = check_inputs("anchor", anchor, like=images, like_name="images")
    if direction is not None:
        direction = check_inputs("direction", direction, like=images, like_name="images")
    hyper = config.hyper(len(images))
    return images, labels, anchor, direction, hyper


def optimize_inputs_init(model_fn, params, images, labels, *, config: OptimizerConfig,
                         anchor=None, direction=None) -> OptimizerState:
    """The state before the first update (optax's `init`): iterates at `images`, zero Adam
    moments, no row done.

    Args:
        model_fn, params: the model (checks the labels' classes; not evaluated).
        config: `OptimizerConfig`; its traced hyperparameters are stored in the state.
        anchor: penalty centre (default `images`); direction: hyperplane normal (required
            with `config.projection`).

    Shape:
        images, anchor, direction: (B, H, W, C) float32; labels: (B,) int.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from lst_jax.connectivity import (OptimizerConfig, optimize_inputs_init,
        ...                                   optimize_inputs_step, optimize_inputs_result)
        >>> model_fn = lambda p, x: x.reshape(len(x), -1) @ p
        >>> params = jax.random.normal(jax.random.key(0), (8 * 8 * 3, 4))
        >>> x0 = jnp.zeros((2, 8, 8, 3))
        >>> cfg = OptimizerConfig(steps=5, lr=0.1)
        >>> state = optimize_inputs_init(model_fn, params, x0, jnp.array([1, 2]), config=cfg)
        >>> for _ in range(cfg.num_iterations):
        ...     state = optimize_inputs_step(model_fn, params, state, config=cfg)
        >>> res = optimize_inputs_result(model_fn, params, state, config=cfg)
        >>> res.x.shape, res.steps.tolist()
        ((2, 8, 8, 3), [5, 5])
    """
    images, labels, anchor, direction, hyper = _validate(model_fn, params, images, labels,
                                                         config, anchor, direction)
    problem = jax.device_put(Problem(images, images if anchor is None else anchor, labels,
                                     np.zeros_like(images) if direction is None
                                     else direction, np.zeros(len(images), bool)))
    return _init_jit(problem, jax.device_put(hyper), config.static)


def optimize_inputs_step(model_fn, params, state: OptimizerState, *,
                         config: OptimizerConfig) -> OptimizerState:
    """One iteration (optax's `update` + apply): evaluates iterate `state.k`, applies the
    stopping rule, and updates the rows still running; frozen rows are unchanged. Run it
    `config.num_iterations` times (or until `state.done.all()`) for a full run. Jitted;
    traceable inside a user's `jax.jit`.

    `config` must be the one given to `optimize_inputs_init` (the state holds its traced
    hyperparameters; the loop settings are read here).

    Shape:
        as `OptimizerState`.
    """
    return _step_jit(model_fn, params, state, config.static)


def optimize_inputs_result(model_fn, params, state: OptimizerState, *,
                           config: OptimizerConfig) -> OptimizeResult:
    """The `OptimizeResult` of a state (the rule's iterate and its CE: one forward pass).

    Shape:
        -> x (B, H, W, C); ce, steps, stopped (B,); trace (steps + 1, B) or None.
    """
    return _result(model_fn, params, state, config.static)


def optimize_inputs_unchecked(model_fn, params, images, labels, *, config: OptimizerConfig,
                              anchor=None, direction=None) -> OptimizeResult:
    """`optimize_inputs` without validation, chunking, compaction or placement: one
    `lax.while_loop` of `optimize_inputs_step`'s iteration over the whole batch, traceable
    inside a user's `jax.jit` (hyperparameter tuples must have one value per row).

    Shape:
        images: (B, H, W, C); labels: (B,) -> `OptimizeResult` with leading size B.
    """
    spec = config.static
    state = _init(_problem(images, labels, anchor, direction),
                  RowHyper(*map(jnp.asarray, config.hyper(images.shape[0]))), spec)
    return _result(model_fn, params, _loop(model_fn, params, spec, state, 0), spec)


def _ladder(chunk: int, g: int) -> list[int]:
    """Batch sizes compaction may use for a chunk of `chunk` rows, largest first: the chunk,
    then `g * 2**k` below it (at most 1 + log2(chunk / g) sizes, whatever the data)."""
    sizes, s = [chunk], g
    while s < chunk:
        sizes.append(s)
        s *= 2
    return sorted(set(sizes), reverse=True)


class _Out(NamedTuple):
    """Per-row results of a chunk, kept on the device until the chunk ends."""

    x: jax.Array
    steps: jax.Array
    stopped: jax.Array
    trace: jax.Array


@functools.partial(jax.jit, static_argnames=("spec",))
def _out_init_jit(problem: Problem, spec: LoopSpec) -> _Out:
    b = problem.x0.shape[0]
    return _Out(jnp.zeros_like(problem.x0), jnp.zeros((b,), jnp.int32),
                jnp.zeros((b,), bool),
                jnp.full((spec.steps + 1 if spec.record else 0, b), jnp.nan, jnp.float32))


def _store(out: _Out, st: OptimizerState, rows, spec: LoopSpec) -> _Out:
    """Writes state slots into result rows `rows` (-1: not stored; scattered out of range)."""
    rows = jnp.where(rows < 0, out.x.shape[0], rows)
    x = st.best_x if spec.keep_best else st.x
    return _Out(out.x.at[rows].set(x, mode="drop"),
                out.steps.at[rows].set(st.steps, mode="drop"),
                out.stopped.at[rows].set(st.done, mode="drop"),   # only the rules set `done`
                out.trace.at[:, rows].set(st.trace, mode="drop") if spec.record else out.trace)


_store_jit = jax.jit(_store, static_argnames=("spec",), donate_argnames=("out",))


@functools.partial(jax.jit, static_argnames=("spec", "mesh"), donate_argnames=("out",))
def _compact_jit(out: _Out, state: OptimizerState, done_rows, idx, pad, spec: LoopSpec,
                 mesh):
    """Stores the finished slots (`done_rows`), then gathers slots `idx` into a smaller batch
    (`pad`: slots that repeat the last active row, frozen). All on the device; with `mesh`
    the new batch stays split over its "data" axis."""
    out = _store(out, state, done_rows, spec)
    if mesh is not None:
        from lst_jax.parallel.mesh import batch_sharding, constrain

        split = lambda t: constrain(t, batch_sharding(mesh))
    else:
        split = lambda t: t
    take = lambda a: jnp.take(a, idx, axis=0)
    rows = split(jax.tree.map(take, state._replace(k=jnp.zeros(state.done.shape),
                                                   trace=state.trace.T)))
    problem = rows.problem._replace(done=rows.problem.done | pad)
    return out, rows._replace(k=state.k, trace=rows.trace.T, done=rows.done | pad,
                              problem=problem)


def _run_chunk(model_fn, params, problem: Problem, hyper: RowHyper, spec: LoopSpec,
               min_batch: int | None, mesh):
    """One chunk of rows (host numpy inputs), placed on the device once; returns the device
    `_Out` and the labels. Whenever at most half of the batch is still active, the active
    rows are compacted, on the device, into the next smaller size of a fixed ladder (the
    chunk, then `min_batch * 2**k`, multiples of the device count; `min_batch=None`: never).
    Rows are independent, so compaction changes no result; it stops paying for frozen rows.
    Programs: one loop per ladder size, one compaction per step down, whatever the data."""
    d, put = 1, jax.device_put
    if mesh is not None:
        from lst_jax.parallel.mesh import num_shards, put_batch

        d, put = num_shards(mesh), (lambda t: put_batch(t, mesh))
    b = len(problem.x0)
    g = -(-max(min_batch or 1, d) // d) * d
    ladder = _ladder(b, g) if min_batch is not None else [b]
    slot_row = np.where(problem.done, -1, np.arange(b)).astype(np.int32)   # -1: padding slot
    problem, hyper = put(problem), put(hyper)
    labels = problem.labels
    state = _init_jit(problem, hyper, spec)
    out = _out_init_jit(problem, spec)
    below = ladder[1:]
    while True:
        limit = below[0] if below else 0
        state = _run_jit(model_fn, params, spec, state, jax.device_put(np.int32(limit)))
        k, done = jax.device_get((state.k, state.done))   # explicit: B flags
        while True:
            if int(k) > _last_k(spec) or done.all():
                return _store_jit(out, state, put(slot_row), spec), labels
            active = np.flatnonzero(~done)
            if not below or len(active) > below[0]:
                break
            new = below[0]                           # one step down the ladder at a time
            idx = np.concatenate([active, np.repeat(active[-1:], new - len(active))])
            pad = np.arange(new) >= len(active)
            out, state = _compact_jit(
                out, state, put(np.where(done, slot_row, -1).astype(np.int32)),
                jax.device_put(idx.astype(np.int32)), jax.device_put(pad), spec, mesh)
            slot_row = np.where(pad, -1, slot_row[idx]).astype(np.int32)
            done = done[idx] | pad
            below = [r for r in ladder if r < new]


def run_batches(model_fn, params, x0, labels, spec: LoopSpec, hyper: RowHyper, *,
                anchor=None, direction=None, chunk: int | None = None,
                min_batch: int | None = COMPACT_MIN_BATCH, mesh=None, progress: bool = False,
                desc: str = "optimising") -> OptimizeResult:
    """The batch runner behind `optimize_inputs` and its uses (no validation): numpy inputs
    and per-row `hyper`, rows in chunks of exactly `chunk` rows over all devices (default:
    all at once; rounded up to a multiple of the mesh's devices), short chunks padded with
    frozen copies, compaction down to `min_batch` rows (None: none). Returns numpy arrays.

    Shape:
        x0, anchor, direction: (N, H, W, C); labels, hyper fields: (N,).
    """
    x0 = np.asarray(x0, np.float32)
    n = len(x0)
    labels = np.asarray(labels, np.int32)
    anchor = x0 if anchor is None else np.asarray(anchor, np.float32)
    direction = np.zeros_like(x0) if direction is None else np.asarray(direction, np.float32)
    if min_batch is not None:
        check_positive_int("min_batch", min_batch)
    # A fixed chunk: every call with the same chunk runs the same programs, whatever n
    # (short chunks are padded with frozen rows, which the first compaction drops). Fewer
    # rows than the chunk are padded only up to the ladder size of n (at most 1.5x the rows
    # and a bounded number of programs), not to a planned chunk that may be 50x larger.
    chunk = n if chunk is None else min(check_positive_int("batch_size", chunk),
                                        ladder_size(n))
    if mesh is not None:
        from lst_jax.parallel.mesh import num_shards, put_replicated

        chunk = -(-chunk // num_shards(mesh)) * num_shards(mesh)
        params = put_replicated(params, mesh)
    else:
        params = jax.device_put(params)
    rows = {"x0": x0, "anchor": anchor, "labels": labels, "direction": direction,
            **{k: np.asarray(v, np.float32) for k, v in hyper._asdict().items()}}
    outs = []
    with Progress(n, desc=desc, unit="inputs", enabled=progress) as bar:
        for start in range(0, n, chunk):
            part = {k: v[start:start + chunk] for k, v in rows.items()}
            m = len(part["x0"])
            if chunk > m:
                part = {k: np.concatenate([v, np.repeat(v[-1:], chunk - m, axis=0)])
                        for k, v in part.items()}
            problem = Problem(part["x0"], part["anchor"], part["labels"], part["direction"],
                              np.arange(chunk) >= m)
            out, lab = _run_chunk(model_fn, params, problem,
                                  RowHyper(*(part[k] for k in HYPER_FIELDS)), spec, min_batch,
                                  mesh)
            x, steps, stopped, trace, ce = jax.device_get(
                (*out, _ce_jit(model_fn, params, out.x, lab)))
            outs.append((x[:m], ce[:m], steps[:m], stopped[:m],
                         trace[:, :m] if spec.record else None))
            bar.update(m)
    cat = lambda i, axis=0: np.concatenate([o[i] for o in outs], axis=axis)
    return OptimizeResult(x=cat(0), ce=cat(1), steps=cat(2), stopped=cat(3),
                          trace=cat(4, axis=1) if spec.record else None)


_STEP_MEMORY = ModelCache()     # per model_fn (weak, bounded): settings -> (fixed, per_row)


def step_memory(model_fn, params, image_shape, spec: LoopSpec) -> tuple[int, int]:
    """(fixed, per_row) bytes of one optimiser iteration on one device, from XLA's memory
    analysis of `_step` compiled (not run) at one and two rows (arguments + outputs +
    temporaries - aliased: the state, the problem, the model's forward and backward).
    Without a memory analysis: the parameters fixed, 16x the image per row. Cached per
    model function (bounded, weak), parameter shapes, image shape and loop settings: a
    planned call compiles the two throwaway programs once, not on every call."""
    key = (tuple(image_shape), spec,
           tuple((tuple(np.shape(a)), str(jnp.result_type(a))) for a in jax.tree.leaves(params)))
    cached = _STEP_MEMORY.get(model_fn, key)
    if cached is None:
        cached = _step_memory(model_fn, params, image_shape, spec)
        _STEP_MEMORY.put(model_fn, key, cached)
    return cached


def _step_memory(model_fn, params, image_shape, spec: LoopSpec) -> tuple[int, int]:
    def program(rows):
        x = jax.ShapeDtypeStruct((rows,) + tuple(image_shape), jnp.float32)
        problem = Problem(x, x, jax.ShapeDtypeStruct((rows,), jnp.int32), x,
                          jax.ShapeDtypeStruct((rows,), jnp.bool_))
        hyper = RowHyper(*[jax.ShapeDtypeStruct((rows,), jnp.float32)] * len(HYPER_FIELDS))
        state = jax.eval_shape(functools.partial(_init, spec=spec), problem, hyper)
        p = jax.tree.map(lambda a: jax.ShapeDtypeStruct(np.shape(a), jnp.result_type(a)),
                         params)
        return _step_jit.lower(model_fn, p, state, spec).compile()

    totals = []
    for rows in (1, 2):
        try:
            m = program(rows).memory_analysis()
        except (NotImplementedError, jax.errors.JaxRuntimeError):
            m = None
        if m is None:
            break
        totals.append(int(m.argument_size_in_bytes + m.output_size_in_bytes
                          + m.temp_size_in_bytes - m.alias_size_in_bytes))
    if len(totals) == 2 and totals[1] > totals[0]:
        per_row = totals[1] - totals[0]
        return max(totals[0] - per_row, 0), per_row
    nbytes = sum(int(np.prod(np.shape(a))) * np.dtype(jnp.result_type(a)).itemsize
                 for a in jax.tree.leaves(params))
    return nbytes, 16 * 4 * int(np.prod(image_shape))


def rows_per_call(batch_size: int | None, mesh, *, memory_budget=None, model_fn=None,
                  params=None, image_shape=None, spec: LoopSpec | None = None) -> int | None:
    """Rows of one program call over all devices: `batch_size` per device (or the most rows
    whose iteration fits `memory_budget` bytes per device, `step_memory`; with both the
    smaller) times the mesh's devices. None: all rows.

    Raises:
        ValueError: batch_size not a positive int; a budget too small for one row.
    """
    if batch_size is None and memory_budget is None:
        return None
    per_device = None if batch_size is None else check_positive_int("batch_size", batch_size)
    if memory_budget is not None:
        from lst_jax.parallel.sharded import parse_bytes

        budget = parse_bytes(memory_budget)
        fixed, per_row = step_memory(model_fn, params, image_shape, spec)
        fits = (budget - fixed) // per_row
        if fits < 1:
            raise ValueError(f"memory_budget={budget} bytes per device is too small: one row "
                             f"of the input optimiser needs about {fixed + per_row} bytes "
                             f"({fixed} fixed + {per_row} per row)")
        per_device = int(fits) if per_device is None else min(per_device, int(fits))
    if mesh is None:
        return per_device
    from lst_jax.parallel.mesh import num_shards

    return per_device * num_shards(mesh)


def optimize_inputs(model_fn, params, images, labels, *, config: OptimizerConfig,
                    anchor=None, direction=None, batch_size: int | None = None,
                    memory_budget=None, mesh=None, progress: bool = False) -> OptimizeResult:
    """Runs the per-row optimisations `config` from every row of `images` (validated).

    Rows are processed in calls of exactly `batch_size` rows per device (None: as many as
    fit `memory_budget` bytes per device, or all at once without one), short calls padded with
    frozen copies, so calls with the same `batch_size` reuse
    one set of compiled programs whatever N. Inside a call, once at most half of the rows
    are still running, the running rows continue in a smaller batch (a fixed ladder: the
    call's rows, then `8 * 2**k`): with early stopping the cost follows the row-steps
    actually needed, not batch size x the slowest row. Compaction happens on the device; at
    most 1 + log2(rows / 8) loop programs are compiled. Results do not depend on chunking
    or compaction (rows are independent) and equal `optimize_inputs_unchecked` (one
    while loop over the whole batch) up to float32 round-off. `mesh=None`: one device; with
    a mesh each batch is split over its `"data"` axis (params replicated).

    Args:
        model_fn, params: the model on inputs of the space of `images`.
        config: `OptimizerConfig` (loop settings compiled in; hyperparameters traced).
        anchor: penalty centre (default `images`); direction: hyperplane normal for
            `config.projection` (required then).

    Returns:
        `OptimizeResult` of `jax.Array`s with leading size N.

    Raises:
        ValueError: non-finite or mismatched inputs, unknown classes, a per-row
            hyperparameter of the wrong length, a projection without `direction`.

    Shape:
        images, anchor, direction: (N, H, W, C) float32; labels: (N,) int.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from lst_jax.connectivity import OptimizerConfig, optimize_inputs
        >>> model_fn = lambda p, x: x.reshape(len(x), -1) @ p
        >>> params = jax.random.normal(jax.random.key(0), (8 * 8 * 3, 4))
        >>> cfg = OptimizerConfig(steps=50, stop="pre_step", lr=0.1, threshold=0.05)
        >>> res = optimize_inputs(model_fn, params, jnp.zeros((2, 8, 8, 3)),
        ...                       jnp.array([0, 3]), config=cfg)
        >>> bool(res.stopped.all()), bool((res.ce < 0.1).all())
        (True, True)
    """
    images, labels, anchor, direction, hyper = _validate(model_fn, params, images, labels,
                                                         config, anchor, direction)
    return as_jax_result(run_batches(
        model_fn, params, images, labels, config.static, hyper, anchor=anchor,
        direction=direction, mesh=mesh, progress=progress,
        chunk=rows_per_call(batch_size, mesh, memory_budget=memory_budget, model_fn=model_fn,
                            params=params, image_shape=images.shape[1:],
                            spec=config.static)))
