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
smaller batch of a fixed ladder (compaction), so with early stopping the cost follows the row-steps actually
needed. A sample's result depends neither on the others in its batch nor on compaction
(tested against single-sample runs and fixed batches).
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
from lst_jax.utils.checks import check_positive_int
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
    """Traced per-sample hyperparameters (sweeping them does not recompile).

    Shape:
        lr, weight_decay, mse_weight, tv_weight, threshold: (B,).
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


def _last_k(spec: LoopSpec) -> int:
    """Index of the last iterate evaluated (post_step rules judge the iterate after the last
    update, so they evaluate one more)."""
    return spec.steps if spec.stop == "post_step" else spec.steps - 1


@functools.partial(jax.jit, static_argnames=("spec",))
def _init_jit(problem: Problem, spec: LoopSpec) -> LoopState:
    x0, b = problem.x0, problem.x0.shape[0]
    opt = jax.vmap(make_optimizer(1.0, 0.0).init)(x0)     # Adam's state: zeros, count 0
    # Fresh buffers (copies), not the problem's: the loop donates its state.
    return LoopState(k=jnp.zeros((), jnp.int32), x=jnp.copy(x0), opt=opt,
                     done=jnp.copy(problem.done), steps=jnp.zeros((b,), jnp.int32),
                     best_x=jnp.copy(x0),
                     best_ce=jnp.full((b,), jnp.inf, jnp.float32),
                     trace=jnp.full((spec.steps + 1 if spec.record else 0, b), jnp.nan,
                                    jnp.float32))


@functools.partial(jax.jit, static_argnames=("model_fn", "spec"), donate_argnames=("state",))
def _run_jit(model_fn, params, problem: Problem, hyper: Hyper, spec: LoopSpec,
             state: LoopState, min_active) -> LoopState:
    """Iterates until the last step, or until at most `min_active` samples are still active
    (then the host compacts the batch; 0: never)."""
    update = jax.vmap(lambda g, o, x, lr, wd: make_optimizer(lr, wd).update(g, o, x))

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
        updates, opt = update(g, s.opt, s.x, hyper.lr, hyper.weight_decay)
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
        return (s.k <= _last_k(spec)) & (jnp.sum(~s.done) > min_active)

    return lax.while_loop(cond, body, state)


@functools.partial(jax.jit, static_argnames=("model_fn",))
def _ce_jit(model_fn, params, x, labels):
    return cross_entropy(model_fn(params, x), labels)


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


def _store(out: _Out, st: LoopState, rows, spec: LoopSpec) -> _Out:
    """Writes state slots into result rows `rows` (-1: not stored; scattered out of range)."""
    rows = jnp.where(rows < 0, out.x.shape[0], rows)
    x = st.best_x if spec.keep_best else st.x
    return _Out(out.x.at[rows].set(x, mode="drop"),
                out.steps.at[rows].set(st.steps, mode="drop"),
                out.stopped.at[rows].set(st.done, mode="drop"),   # only the rules set `done`
                out.trace.at[:, rows].set(st.trace, mode="drop") if spec.record else out.trace)


_store_jit = jax.jit(_store, static_argnames=("spec",), donate_argnames=("out",))


@functools.partial(jax.jit, static_argnames=("spec", "mesh"), donate_argnames=("out",))
def _compact_jit(out: _Out, state: LoopState, problem: Problem, hyper: Hyper, done_rows, idx,
                 pad, spec: LoopSpec, mesh):
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
    state = rows._replace(k=state.k, trace=rows.trace.T, done=rows.done | pad)
    problem = split(jax.tree.map(take, problem))
    return (out, state, problem._replace(done=problem.done | pad),
            split(jax.tree.map(take, hyper)))


def _run_chunk(model_fn, params, problem: Problem, hyper: Hyper, spec: LoopSpec,
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
    state = _init_jit(problem, spec)
    out = _out_init_jit(problem, spec)
    below = ladder[1:]
    while True:
        limit = below[0] if below else 0
        state = _run_jit(model_fn, params, problem, hyper, spec, state,
                         jax.device_put(np.int32(limit)))
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
            out, state, problem, hyper = _compact_jit(
                out, state, problem, hyper, put(np.where(done, slot_row, -1).astype(np.int32)),
                jax.device_put(idx.astype(np.int32)), jax.device_put(pad), spec, mesh)
            slot_row = np.where(pad, -1, slot_row[idx]).astype(np.int32)
            done = done[idx] | pad
            below = [r for r in ladder if r < new]


def _as_batch(name, value, b: int) -> np.ndarray:
    try:
        a = np.asarray(value, np.float32)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number or an array of numbers, got "
                         f"{value!r}") from None
    if a.ndim == 0:
        a = np.full((b,), a, np.float32)
    if a.shape != (b,):
        raise ValueError(f"{name} must be a scalar or have shape ({b},), got {a.shape}")
    if np.any(np.isnan(a)) or (name != "threshold" and not np.all(np.isfinite(a))):
        raise ValueError(f"{name} must be finite")
    return a


def optimize_inputs(model_fn, params, x0, labels, spec: LoopSpec, *, lr=1e-3,
                    weight_decay=0.0, mse_weight=0.0, tv_weight=0.0, threshold=-np.inf,
                    anchor=None, direction=None, batch_size: int | None = None,
                    min_batch: int | None = 8, mesh=None, progress: bool = False,
                    desc: str = "optimising") -> OptimizeResult:
    """Runs the per-sample optimisations `spec` on every row of `x0` (no input validation
    beyond shapes; the public wrappers check their arguments).

    Rows are processed in chunks of exactly `batch_size` rows (default: all at once), short
    chunks padded with frozen copies, so calls with the same `batch_size` reuse one set of
    compiled programs whatever N. Inside a chunk, once at most half of the rows are still
    running, the running rows continue in a smaller batch (a fixed ladder: the chunk, then
    `min_batch * 2**k` rows; `None` disables this): with early stopping the cost follows the
    number of row-steps actually needed, not batch size x the slowest row. Compaction happens
    on the device (the optimiser state never visits the host); at most 1 + log2(chunk /
    min_batch) loop programs are compiled. Results do not depend on
    chunking or compaction (rows are independent). With `mesh`, each batch is split over the mesh's
    `"data"` axis (params replicated); batch sizes are then multiples of the device count.

    Args:
        model_fn, params: the model on inputs of the space of `x0`.
        spec: static loop settings (`LoopSpec`).
        lr, weight_decay, mse_weight, tv_weight, threshold: scalars or per-row (N,) values
            (traced: changing them does not recompile).
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
    per_row = {name: _as_batch(name, v, n) for name, v in
               (("lr", lr), ("weight_decay", weight_decay), ("mse_weight", mse_weight),
                ("tv_weight", tv_weight), ("threshold", threshold))}
    for name in ("lr", "weight_decay", "mse_weight", "tv_weight"):
        if np.any(per_row[name] < 0):
            raise ValueError(f"{name} must be non-negative")
    if min_batch is not None:
        check_positive_int("min_batch", min_batch)
    # A fixed chunk: every call with the same batch_size runs the same programs, whatever n
    # (short chunks are padded with frozen rows, which the first compaction drops).
    chunk = n if batch_size is None else check_positive_int("batch_size", batch_size)
    if mesh is not None:
        from lst_jax.parallel.mesh import num_shards, put_replicated

        chunk = -(-chunk // num_shards(mesh)) * num_shards(mesh)
        params = put_replicated(params, mesh)
    else:
        params = jax.device_put(params)
    rows = {"x0": x0, "anchor": anchor, "labels": labels, "direction": direction, **per_row}
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
            hyper = Hyper(*(part[k] for k in ("lr", "weight_decay", "mse_weight",
                                              "tv_weight", "threshold")))
            out, labels = _run_chunk(model_fn, params, problem, hyper, spec, min_batch, mesh)
            x, steps, stopped, trace, ce = jax.device_get(
                (*out, _ce_jit(model_fn, params, out.x, labels)))
            outs.append((x[:m], ce[:m], steps[:m], stopped[:m],
                         trace[:, :m] if spec.record else None))
            bar.update(m)
    cat = lambda i, axis=0: np.concatenate([o[i] for o in outs], axis=axis)
    return OptimizeResult(x=cat(0), ce=cat(1), steps=cat(2), stopped=cat(3),
                          trace=cat(4, axis=1) if spec.record else None)
