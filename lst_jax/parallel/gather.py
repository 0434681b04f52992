"""Rows of a table split over the devices, gathered without materialising the table.

A table too large to replicate (I-ASIDE's image spectra: about 1.2 MB per 224x224 image) is
split along its rows over the mesh's `"data"` axis (`P("data")`, R = N / D rows per device).
`gather_rows` fetches arbitrary rows for a batch of indices that is itself split over
`"data"`: inside `jax.shard_map`, the shards travel around the ring of devices
(`jax.lax.ppermute`, D - 1 hops); at each step every device keeps the requested rows it finds
in the shard passing by. Peak per device: its own shard, one shard in flight and the
gathered rows. A gather moves no arithmetic, so the result equals plain indexing exactly.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from lst_jax.parallel.mesh import DATA_AXIS, leading_size, num_shards


def _take(shard, local, hit, out):
    """Rows `local` of `shard` where `hit`, `out` elsewhere (a select: bits unchanged).

    Shape: shard (R, ...); local, hit (m...); out (m..., ...) -> (m..., ...).
    """
    rows = shard[jnp.clip(local, 0, shard.shape[0] - 1)]
    mask = hit.reshape(hit.shape + (1,) * (shard.ndim - 1))
    return jnp.where(mask, rows, out)


def _ring_gather(rows, indices, d: int):
    """Per device (inside shard_map): the requested rows of every device's shard."""
    r = leading_size(rows, "rows")
    me = jax.lax.axis_index(DATA_AXIS)
    perm = [(i, (i + 1) % d) for i in range(d)]

    def take(step, shard, out):
        local = indices - ((me - step) % d) * r      # the shard came from device me - step
        hit = (local >= 0) & (local < r)
        return jax.tree.map(lambda s, o: _take(s, local, hit, o), shard, out)

    def body(step, carry):
        shard, out = carry
        shard = jax.lax.ppermute(shard, DATA_AXIS, perm)
        return shard, take(step, shard, out)

    # Step 0, the own shard: its rows where requested (the others are overwritten later:
    # every index lies in exactly one shard).
    own = jax.tree.map(lambda s: s[jnp.clip(indices - me * r, 0, r - 1)], rows)
    _, out = jax.lax.fori_loop(1, d, body, (rows, own))
    return out


def gather_rows(rows, indices, mesh: Mesh | None):
    """`rows[indices]` for rows split over the mesh's `"data"` axis, inside `jit`.

    Args:
        rows: array or pytree of arrays with a common leading size N_pad (a multiple of the
            device count), placed with `P("data")` (`lst_jax.parallel.put_batch`); all
            leaves travel together.
        indices: int32 rows to fetch, each in [0, N_pad); leading size a multiple of the
            device count (split over `"data"` too: each device fetches its own part).
        mesh: the mesh of `rows`; None or one device: plain indexing.

    Every requested row is found in exactly one shard and selected there (no arithmetic),
    so the result equals `rows[indices]` bit for bit.

    Returns:
        The rows, split over `"data"` along the leading axis of `indices`.

    Shape:
        rows leaves (N_pad, ...); indices (n, ...) -> leaves (n, ..., ...).
    """
    d = 1 if mesh is None else num_shards(mesh)
    if d == 1:
        return jax.tree.map(lambda a: a[indices], rows)
    for name, size in (("rows", leading_size(rows, "rows")), ("indices", indices.shape[0])):
        if size % d:
            raise ValueError(f"{name} has leading size {size}, not a multiple of the {d} "
                             "devices of the mesh; pad it first (pad_to_multiple)")
    ring = jax.shard_map(lambda a, i: _ring_gather(a, i, d), mesh=mesh,
                         in_specs=(P(DATA_AXIS), P(DATA_AXIS)), out_specs=P(DATA_AXIS))
    return ring(rows, indices)


def per_shard(fn, mesh: Mesh | None):
    """`fn` run by each device on its own rows (`jax.shard_map` over `"data"`, every
    argument and output split along its leading axis); None or one device: `fn` itself.

    For per-example work that XLA's sharding propagation would otherwise replicate (an FFT
    of a batch split over `"data"` is all-gathered first): each device then computes only
    its rows, with the same per-example arithmetic.

    Shape:
        arguments (n, ...) with n a multiple of the device count -> outputs (n, ...).
    """
    if mesh is None or num_shards(mesh) == 1:
        return fn
    return jax.shard_map(fn, mesh=mesh, in_specs=P(DATA_AXIS), out_specs=P(DATA_AXIS))


__all__ = ["gather_rows", "per_shard"]
