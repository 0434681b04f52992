"""The device mesh and the placement helpers every sharded evaluator uses.

One mesh axis, `"data"`, spans every device of every process. Model parameters are
replicated (`P()`), batches are split along their leading axis (`P("data")`), and batches are
padded to a multiple of the device count first (and the padding dropped after).

**Axis type: Auto.** Since jax 0.8 `jax.make_mesh` defaults to `AxisType.Explicit`
("sharding in types"): every traced op then needs an unambiguous sharding rule, and plain
indexing of the results (`out[:n]`) raises `ShardingTypeError` outside a mesh context. The
model functions lst_jax evaluates are arbitrary user code, so `data_mesh` builds the mesh with
`AxisType.Auto`: inputs are placed explicitly (`jax.device_put` with a `NamedSharding`) and
XLA's sharding propagation does the rest, exactly as for a single device. Pass
`axis_type=AxisType.Explicit` to opt in to sharding in types.

Multi-process (several hosts, `jax.distributed.initialize` done first): `data_mesh()` covers
all devices of all processes; every process calls the same functions with the same *global*
host data (`put_batch` keeps only the rows of this process's devices) and gets the full
result back (`to_host` gathers across processes).
"""

from __future__ import annotations

import functools
from typing import Sequence

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

DATA_AXIS = "data"


def data_mesh(devices: Sequence[jax.Device] | None = None, *,
              axis_type: AxisType = AxisType.Auto) -> Mesh:
    """A 1-D mesh with axis `"data"` over `devices` (default: all devices of all processes;
    this process's only inside `distributed.process_local()`).

    Built with `jax.make_mesh`, which orders the devices for the hardware topology (TPU rings,
    process-contiguous GPU/CPU order). `jax.local_devices()` gives a mesh of this process only.

    Shape:
        -> Mesh with `mesh.shape == {"data": len(devices)}`.
    """
    if devices is None:
        from lst_jax.parallel.distributed import default_devices

        devices = default_devices()
    devices = list(devices)
    if not devices:
        raise ValueError("devices must contain at least one device")
    return jax.make_mesh((len(devices),), (DATA_AXIS,), axis_types=(axis_type,),
                         devices=devices)


def num_shards(mesh: Mesh) -> int:
    """Number of devices along the `"data"` axis (the batch must be a multiple of it)."""
    if DATA_AXIS not in mesh.shape:
        raise ValueError(f"mesh must have a {DATA_AXIS!r} axis, got axes {tuple(mesh.shape)}")
    return int(mesh.shape[DATA_AXIS])


def replicated(mesh: Mesh) -> NamedSharding:
    """`NamedSharding(mesh, P())`: a full copy on every device (parameters, keys)."""
    return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """`NamedSharding(mesh, P("data"))`: leading axis split over the devices."""
    return NamedSharding(mesh, P(DATA_AXIS))


def round_up(n: int, multiple: int) -> int:
    """Smallest multiple of `multiple` that is >= n."""
    return -(-int(n) // int(multiple)) * int(multiple)


def leading_size(tree, name: str = "batch", axis: int = 0) -> int:
    """The common size along `axis` (the batch axis) of every leaf of `tree`.

    Raises:
        ValueError: a leaf has no such axis, or the sizes differ.
    """
    leaves = jax.tree.leaves(tree)
    if not leaves:
        raise ValueError(f"{name} has no arrays")
    sizes = set()
    for leaf in leaves:
        if np.ndim(leaf) <= axis:
            what = "a scalar" if np.ndim(leaf) == 0 else f"shape {tuple(np.shape(leaf))}"
            raise ValueError(f"{name} leaves need a batch axis {axis}, got {what}")
        sizes.add(int(np.shape(leaf)[axis]))
    if len(sizes) != 1:
        raise ValueError(f"{name} leaves must share the leading (batch) size, got {sorted(sizes)}")
    return sizes.pop()


def pad_to_multiple(tree, multiple: int, *, axis: int = 0):
    """Pads every leaf along `axis` to a multiple of `multiple` with copies of its last entry.

    Copies of a real example (not zeros) keep padded rows well-behaved (finite, in range,
    correctly classified if the real one is); they are dropped by `unpad`.

    Returns:
        (padded tree of numpy arrays, original size n).

    Shape:
        leaves (..., n, ...) along `axis` -> (..., round_up(n, multiple), ...).
    """
    n = leading_size(tree, axis=axis)
    pad = round_up(n, multiple) - n

    def f(a):
        a = np.asarray(a)
        if pad == 0:
            return a
        last = np.take(a, [n - 1], axis=axis)
        return np.concatenate([a, np.repeat(last, pad, axis=axis)], axis=axis)

    return jax.tree.map(f, tree), n


def unpad(tree, n: int, *, axis: int = 0):
    """Keeps the first `n` entries of every leaf along `axis` (inverse of `pad_to_multiple`)."""
    return jax.tree.map(lambda a: np.take(np.asarray(a), np.arange(n), axis=axis), tree)


def _place(tree, sharding: NamedSharding):
    """`jax.device_put(tree, sharding)`, without the cross-process equality check.

    With several processes, `jax.device_put` of host data to a global sharding all-gathers the
    whole value to assert that every process passed the same (a collective and a compile per
    call); `make_array_from_callback` lets each process copy just its own devices' slices.
    """
    if jax.process_count() == 1:
        return jax.device_put(tree, sharding)

    def put(a):
        if isinstance(a, jax.Array) and not a.is_fully_addressable:
            return jax.device_put(a, sharding)
        h = np.asarray(a)
        return jax.make_array_from_callback(h.shape, sharding, lambda idx: h[idx])

    return jax.tree.map(put, tree)


def put_replicated(tree, mesh: Mesh):
    """Places `tree` (params, host or device arrays) fully on every device of `mesh`.

    Leaves that already carry this sharding are kept as they are, so replicating once and
    passing the result to many calls costs one transfer. In a multi-process run every process
    must pass the same values (not checked).
    """
    target = replicated(mesh)

    def put(a):
        if isinstance(a, jax.Array) and a.sharding == target:
            return a
        return _place(a, target)

    return jax.tree.map(put, tree)


def placed_sharding(a, mesh: Mesh) -> NamedSharding:
    """The sharding `put_params` gives leaf `a`: its own if it is a jax.Array already placed
    on `mesh` (a row-split table, `put_batch`), else `replicated(mesh)`."""
    s = getattr(a, "sharding", None) if isinstance(a, jax.Array) else None
    if isinstance(s, NamedSharding) and s.mesh == mesh:
        return s
    return replicated(mesh)


def put_params(tree, mesh: Mesh):
    """Places the fixed arguments of a sharded program: leaves already placed on `mesh`
    keep their sharding (a table split over `"data"` stays split, never re-replicated),
    every other leaf is replicated (`put_replicated`).

    Shape:
        any pytree -> the same pytree of jax.Arrays on `mesh`.
    """
    def put(a):
        placed = isinstance(a, jax.Array) and placed_sharding(a, mesh) == a.sharding
        return a if placed else _place(a, replicated(mesh))

    return jax.tree.map(put, tree)


def put_batch(tree, mesh: Mesh):
    """Splits host arrays along their leading axis over the `"data"` axis of `mesh`.

    The leading size must be a multiple of the device count (see `pad_to_multiple`). With
    several processes, pass the same global arrays on every process (not checked): each
    copies only the rows of its own devices.

    Shape:
        leaves (N, ...) with N % num_shards(mesh) == 0 -> global jax.Arrays (N, ...).
    """
    n = leading_size(tree)
    d = num_shards(mesh)
    if n % d:
        raise ValueError(f"batch size {n} is not a multiple of the {d} devices of the mesh; "
                         "pad it first (pad_to_multiple)")
    return _place(tree, batch_sharding(mesh))


def put_process_local(tree, mesh: Mesh):
    """Builds global arrays from this process's rows only (`make_array_from_process_local_data`).

    Each process passes its own contiguous block of rows (equal sizes on every process, e.g.
    from `distributed.process_share` after padding); the global batch is their concatenation
    in process order.

    Shape:
        leaves (N / process_count, ...) -> global jax.Arrays (N, ...).
    """
    sharding = batch_sharding(mesh)
    return jax.tree.map(lambda a: jax.make_array_from_process_local_data(sharding,
                                                                         np.asarray(a)), tree)


def constrain(tree, sharding: NamedSharding):
    """Inside `jit`: asks for `sharding` on every leaf (`with_sharding_constraint` on Auto
    meshes, `jax.sharding.reshard` on Explicit ones)."""
    if all(t == AxisType.Auto for t in sharding.mesh.axis_types):
        return jax.tree.map(lambda a: jax.lax.with_sharding_constraint(a, sharding), tree)
    return jax.tree.map(lambda a: jax.sharding.reshard(a, sharding), tree)


@functools.partial(jax.jit, static_argnames=("sharding",))
def _constrain(tree, sharding):
    return constrain(tree, sharding)


def to_host(tree):
    """numpy copies of (possibly multi-process) jax arrays, complete on every process.

    Arrays spread over several processes are all-gathered in one jitted program per tree
    structure (a collective: every process must call it, in the same order).
    """
    leaves, treedef = jax.tree.flatten(tree)
    spread = [i for i, a in enumerate(leaves)
              if isinstance(a, jax.Array) and not a.is_fully_addressable]
    if spread:
        from lst_jax.parallel.distributed import collective

        meshes = {getattr(leaves[i].sharding, "mesh", None) for i in spread}
        with collective("gathering results"):
            if len(meshes) == 1 and None not in meshes:
                full = _constrain([leaves[i] for i in spread], replicated(meshes.pop()))
                got = [np.asarray(a.addressable_data(0)) for a in full]
            else:  # arrays on different meshes: one gather each
                from jax.experimental import multihost_utils

                got = [np.asarray(multihost_utils.process_allgather(leaves[i], tiled=True))
                       for i in spread]
        for i, a in zip(spread, got):
            leaves[i] = a
    return jax.tree.unflatten(treedef, [np.asarray(a) for a in leaves])


def allgather_host(tree):
    """Stacks every process's host arrays (same shapes and dtypes on every process).

    One jitted all-gather for the whole tree (a collective: call it on every process).

    Shape:
        leaves (...) -> (process_count, ...) on every process.
    """
    if jax.process_count() == 1:
        return jax.tree.map(lambda a: np.asarray(a)[None], tree)
    devices = np.array(jax.devices()).reshape(jax.process_count(), jax.local_device_count())
    mesh = Mesh(devices, ("processes", "local"), axis_types=(AxisType.Auto, AxisType.Auto))
    rows = NamedSharding(mesh, P("processes"))
    glob = jax.tree.map(
        lambda a: jax.make_array_from_process_local_data(rows, np.asarray(a)[None]), tree)
    return to_host(glob)


__all__ = ["DATA_AXIS", "data_mesh", "num_shards", "replicated", "batch_sharding", "round_up",
           "leading_size", "pad_to_multiple", "unpad", "put_replicated", "put_params",
           "placed_sharding", "put_batch", "put_process_local", "to_host", "allgather_host",
           "constrain"]
