"""A jitted, sharded, chunked evaluator for per-example functions.

`sharded_apply(fn, params, batch, mesh)` evaluates `fn(params, x)` on N examples: in chunks of
a fixed size (a multiple of the device count; the last chunk padded), each chunk split over the
mesh's `"data"` axis with the parameters replicated (leaves already placed on the mesh, e.g. a
table split over `"data"`, keep their sharding), one compiled program for every chunk, the
padding dropped and the results gathered to host numpy arrays.

The chunk size comes from an explicit `chunk_size` or from a per-device `memory_budget` in
bytes: XLA's own memory analysis of the compiled program (`compiled.memory_analysis()`) at
one and two examples per device gives the fixed cost (parameters) and the cost per example
(inputs, outputs, temporaries), and the chunk is the largest that fits.
"""

from __future__ import annotations

import functools
import logging
import re
from typing import Any, Callable, NamedTuple

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding

from lst_jax.parallel.mesh import (
    batch_sharding,
    constrain,
    data_mesh,
    leading_size,
    num_shards,
    pad_to_multiple,
    placed_sharding,
    put_batch,
    put_params,
    round_up,
    to_host,
)
from lst_jax.utils.cache import ModelCache
from lst_jax.utils.checks import check_positive_int
from lst_jax.utils.progress import Progress

logger = logging.getLogger(__name__)

# Examples per device and chunk when neither chunk_size nor memory_budget is given.
DEFAULT_CHUNK_PER_DEVICE = 128

_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def parse_bytes(value) -> int:
    """Bytes from an int or a string such as `"512MiB"`, `"2GB"`, `"1.5 GiB"`, `"4096"`."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        n = int(value)
    elif isinstance(value, str):
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", value)
        if not m or m.group(2).lower() not in _UNITS:
            raise ValueError(f"memory_budget must be bytes or a size like '512MiB', '2GB', "
                             f"got {value!r}")
        n = int(float(m.group(1)) * _UNITS[m.group(2).lower()])
    else:
        raise ValueError(f"memory_budget must be an int (bytes) or a string like '512MiB', "
                         f"got {value!r}")
    if n <= 0:
        raise ValueError(f"memory_budget must be positive, got {value!r}")
    return n


@functools.partial(jax.jit, static_argnames=("fn", "out_sharding"))
def _apply(fn, params, x, out_sharding: NamedSharding):
    return constrain(fn(params, x), out_sharding)


def _dtype(a):
    return a.dtype if hasattr(a, "dtype") else np.result_type(a)


def _specs(tree, size: int | None, sharding):
    """ShapeDtypeStructs of `tree` (with the leading axis replaced by `size` if given);
    `sharding`: one for every leaf, or a function of the leaf."""
    def f(a):
        shape = tuple(np.shape(a))
        if size is not None:
            shape = (size,) + shape[1:]
        s = sharding(a) if callable(sharding) else sharding
        return jax.ShapeDtypeStruct(shape, _dtype(a), sharding=s)

    return jax.tree.map(f, tree)


# (shapes, chunk) already checked per fn (eval_shape traces the model): weakly keyed by fn
# and bounded, so it neither grows without limit nor keeps models alive.
_CHECKED = ModelCache()


def _check_outputs(fn, params, batch, chunk: int):
    """fn must map a (chunk, ...) batch to per-example outputs (leading axis chunk)."""
    key = (_params_key(params), _tree_key(batch), chunk)
    if _CHECKED.get(fn, key):
        return
    try:
        out = jax.eval_shape(fn, _specs(params, None, None), _specs(batch, chunk, None))
    except Exception as e:
        raise ValueError(f"fn(params, batch) fails on a chunk of {chunk} examples: "
                         f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from e
    for leaf in jax.tree.leaves(out):
        if leaf.ndim == 0 or leaf.shape[0] != chunk:
            raise ValueError(
                f"fn must return per-example outputs with leading axis {chunk} (the chunk), got "
                f"an output of shape {tuple(leaf.shape)}")
    _CHECKED.put(fn, key, True)


class MemoryEstimate(NamedTuple):
    """Per-device bytes of one chunk: `fixed + per_example * examples_per_device`.

    `source` is `"xla"` (compiled memory analysis) or `"heuristic"` (backend without one:
    parameters + 4x the input and output bytes).
    """

    fixed: int
    per_example: int
    source: str

    def bytes_for(self, per_device: int) -> int:
        return self.fixed + self.per_example * per_device


_ESTIMATES = ModelCache()   # per fn (weak, bounded): (mesh, shapes) -> MemoryEstimate


def _tree_key(tree):
    """Structure, per-example shapes and dtypes of a batch (its leading size left out)."""
    return (jax.tree.structure(tree),
            tuple((tuple(np.shape(a)[1:]), str(_dtype(a))) for a in jax.tree.leaves(tree)))


def _params_key(params):
    """Structure, shapes and dtypes of the parameters."""
    return (jax.tree.structure(params),
            tuple((tuple(np.shape(a)), str(_dtype(a))) for a in jax.tree.leaves(params)))


def estimate_memory(fn: Callable, params, batch, mesh: Mesh) -> MemoryEstimate:
    """Per-device memory of `sharded_apply`'s program, as a function of the chunk size.

    Compiles (without running) the sharded program at one and two examples per device and
    reads XLA's memory analysis (arguments + outputs + temporaries - aliased); the result is
    cached per (fn, mesh, shapes).

    Shape:
        batch: leaves (N, ...) (only shapes and dtypes are used).
    """
    shardings = [placed_sharding(a, mesh) for a in jax.tree.leaves(params)]
    key = (mesh, _params_key(params), tuple(s.spec for s in shardings), _tree_key(batch))
    cached = _ESTIMATES.get(fn, key)
    if cached is not None:
        return cached
    d = num_shards(mesh)
    p_specs = _specs(params, None, lambda a: placed_sharding(a, mesh))
    totals = []
    for per_device in (1, 2):
        x_specs = _specs(batch, per_device * d, batch_sharding(mesh))
        # A model that fails to lower or compile is an error of the caller's: it propagates.
        compiled = _apply.lower(fn, p_specs, x_specs, batch_sharding(mesh)).compile()
        try:
            m = compiled.memory_analysis()
        except (NotImplementedError, jax.errors.JaxRuntimeError) as e:
            # Only a backend without a memory analysis (XLA answers UNIMPLEMENTED) falls back.
            logger.info("no XLA memory analysis on %s (%s): heuristic memory estimate",
                        jax.default_backend(), e)
            m = None
        if m is None:
            totals = None
            break
        totals.append(int(m.argument_size_in_bytes + m.output_size_in_bytes
                          + m.temp_size_in_bytes - m.alias_size_in_bytes))
    if totals is not None and totals[1] > totals[0]:
        per_example = totals[1] - totals[0]
        est = MemoryEstimate(max(totals[0] - per_example, 0), per_example, "xla")
    else:
        nbytes = lambda t: sum(int(np.prod(np.shape(a))) * np.dtype(_dtype(a)).itemsize
                               for a in jax.tree.leaves(t))
        out = jax.eval_shape(fn, _specs(params, None, None), _specs(batch, 1, None))
        per_example = 4 * (nbytes(_specs(batch, 1, None)) + nbytes(out))
        est = MemoryEstimate(nbytes(params), per_example, "heuristic")
    _ESTIMATES.put(fn, key, est)
    return est


def plan_chunk_size(fn: Callable, params, batch, mesh: Mesh | None = None, *,
                    chunk_size: int | None = None, memory_budget=None) -> int:
    """The global chunk size `sharded_apply` uses (a multiple of the device count).

    Args:
        chunk_size: examples per chunk over all devices; rounded up to a device multiple.
        memory_budget: per-device bytes (int or `"512MiB"`-style string) one chunk may use,
            parameters included; the largest chunk whose estimate fits (`estimate_memory`).
            With both, the smaller chunk wins. With neither: `DEFAULT_CHUNK_PER_DEVICE`
            examples per device.

    Never larger than the padded batch, so small batches compile a small program.

    Raises:
        ValueError: chunk_size not a positive int; memory_budget unparsable or too small
            for one example per device.
    """
    mesh = data_mesh() if mesh is None else mesh
    d = num_shards(mesh)
    n = leading_size(batch)
    chunk = DEFAULT_CHUNK_PER_DEVICE * d
    if chunk_size is not None:
        chunk = round_up(check_positive_int("chunk_size", chunk_size), d)
    if memory_budget is not None:
        budget = parse_bytes(memory_budget)
        est = estimate_memory(fn, params, batch, mesh)
        per_device = (budget - est.fixed) // est.per_example
        if per_device < 1:
            raise ValueError(
                f"memory_budget={budget} bytes per device is too small: one example per device "
                f"needs about {est.bytes_for(1)} bytes ({est.fixed} fixed + {est.per_example} "
                f"per example, {est.source} estimate)")
        chunk = min(chunk, int(per_device) * d) if chunk_size is not None \
            else int(per_device) * d
    return min(chunk, round_up(n, d))


def sharded_apply(fn: Callable, params, batch, mesh: Mesh | None = None, *,
                  chunk_size: int | None = None, memory_budget=None, progress: bool = False,
                  desc: str = "evaluating") -> Any:
    """Evaluates a per-example function over a large batch on every device, in chunks.

    `fn(params, x)` must treat examples independently (e.g. a model in eval mode, a
    confidence on a batch of hull points) and return a pytree of arrays whose leading axis is
    the batch. The batch is cut into chunks of one fixed size (a multiple of the device count,
    see `plan_chunk_size`); the last is padded with copies of the last example. Each chunk is
    split over the mesh's `"data"` axis (`P("data")`), `params` are replicated (`P()`; a leaf
    already placed on `mesh`, e.g. rows split with `put_batch`, keeps its sharding:
    `put_params`), and one compiled program serves every chunk (and later calls with the
    same fn, shapes, mesh). The next chunk is dispatched before the previous one is copied
    back, so transfers overlap compute.

    Multi-process: call it on every process with the same `batch` (the global data); each
    process transfers only its devices' rows, and every process gets the full result.

    Args:
        fn: `fn(params, x) -> y`, jittable and hashable (pass the same function object every
            time to reuse the compiled program; a fresh `lambda`/`partial` recompiles).
        params: pytree (host or device arrays); place it once with `put_replicated` (or
            `put_params`) to avoid a transfer per call.
        batch: array or pytree of arrays with a common leading size N (host data).
        mesh: a mesh with a `"data"` axis (default `data_mesh()`: all devices).
        chunk_size, memory_budget: see `plan_chunk_size`.
        progress: show a progress bar over examples.

    Returns:
        The pytree `fn` returns, as numpy arrays with leading size N.

    Shape:
        batch leaves (N, ...) -> output leaves (N, ...).
    """
    mesh = data_mesh() if mesh is None else mesh
    n = leading_size(batch)
    if n == 0:
        raise ValueError("batch is empty (leading size 0)")
    chunk = plan_chunk_size(fn, params, batch, mesh, chunk_size=chunk_size,
                            memory_budget=memory_budget)
    _check_outputs(fn, params, batch, chunk)
    host = jax.tree.map(np.asarray, batch)
    params = put_params(params, mesh)
    out_sharding = batch_sharding(mesh)
    outs, pending = [], None
    with Progress(n, desc=desc, unit="ex", enabled=progress) as bar:
        for start in range(0, n, chunk):
            stop = min(start + chunk, n)
            x, _ = pad_to_multiple(jax.tree.map(lambda a: a[start:stop], host), chunk)
            y = _apply(fn, params, put_batch(x, mesh), out_sharding)
            if pending is not None:
                outs.append(_finish(*pending))
                bar.update(pending[1])
            pending = (y, stop - start)
        outs.append(_finish(*pending))
        bar.update(pending[1])
    return jax.tree.map(lambda *a: np.concatenate(a, axis=0), *outs)


def _finish(y, m: int):
    return jax.tree.map(lambda a: a[:m], to_host(y))


__all__ = ["sharded_apply", "plan_chunk_size", "estimate_memory", "MemoryEstimate",
           "parse_bytes", "DEFAULT_CHUNK_PER_DEVICE"]
