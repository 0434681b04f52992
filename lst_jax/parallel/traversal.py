"""Level Set Traversal data parallel over (source, target) pairs.

The pairs are padded to a multiple of the device count (with copies of the last real pair),
split over the mesh's `"data"` axis, and handed to the ordinary jitted `traverse`: jit
propagates the input shardings through the scan, so each device walks its own pairs and no
cross-device communication happens until the results are copied back. The padding is dropped
before returning.

Same numbers as one device: the per-pair computation does not depend on the batch, and the
random start `uniform(key, (B, H, W, C))` of the padded batch equals that of the unpadded one
on the real rows, because JAX's default partitionable threefry (`jax_threefry_partitionable`,
on by default since jax 0.5) draws each element from its flat index, and padding only appends
rows.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh

from lst_jax.parallel.mesh import (data_mesh, num_shards, pad_to_multiple, put_batch,
                                   put_replicated, to_host, unpad)
from lst_jax.traversal import run as run_mod
from lst_jax.traversal.config import LSTConfig
from lst_jax.traversal.state import LSTResult
from lst_jax.traversal.step import ModelFn


def _unpad_result(result: LSTResult, n: int) -> LSTResult:
    """Drops padded pairs: axis 1 for per-iteration fields, axis 0 elsewhere."""
    cut0 = lambda t: unpad(t, n, axis=0)
    cut1 = lambda t: unpad(t, n, axis=1)
    return LSTResult(images=cut0(result.images), valid=cut0(result.valid),
                     clean_conf=cut0(result.clean_conf), start=cut0(result.start),
                     initial=cut0(result.initial), record=cut1(result.record),
                     logged_images=None if result.logged_images is None
                     else cut1(result.logged_images))


def sharded_traverse(model_fn: ModelFn, params, sources, targets, labels, key,
                     config: LSTConfig = LSTConfig(), *, target_labels=None,
                     mesh: Mesh | None = None, progress: bool = False,
                     desc: str = "LST") -> LSTResult:
    """`lst_jax.traversal.traverse`, data parallel over the pairs (no input validation).

    Multi-process: every process passes the same global pairs and key; each process's
    devices traverse their rows; every process gets the full result.

    Args:
        mesh: a mesh with a `"data"` axis (default `data_mesh()`: all devices).
        progress: run as jitted chunks of `log_step` iterations with a progress bar (same
            numbers).
        Others: as `level_set_traversal`.

    Returns:
        `LSTResult` of numpy arrays, padding removed.

    Shape:
        sources, targets: (B, H, W, C) float32 in [0, 1]; labels, target_labels: (B,) int;
        any B (padded internally to a multiple of the device count).
    """
    mesh = data_mesh() if mesh is None else mesh
    pairs = {"s": sources, "t": targets, "y": labels}
    if target_labels is not None:
        pairs["yt"] = target_labels
    pairs, n = pad_to_multiple(pairs, num_shards(mesh))
    pairs = put_batch(pairs, mesh)
    params = put_replicated(params, mesh)
    if progress:
        result = run_mod._traverse_chunked(model_fn, params, pairs["s"], pairs["t"], pairs["y"],
                                           pairs.get("yt"), key, config, desc)
    else:
        result = run_mod.traverse(model_fn, params, pairs["s"], pairs["t"], pairs["y"], key,
                                  config, pairs.get("yt"))
    return _unpad_result(to_host(result), n)


def sharded_level_set_traversal(model_fn: ModelFn, params, sources, targets, labels, key,
                                config: LSTConfig = LSTConfig(), *, target_labels=None,
                                mesh: Mesh | None = None, progress: bool = False,
                                desc: str = "LST") -> LSTResult:
    """`level_set_traversal` (input validation included) data parallel over the pairs.

    See `sharded_traverse`; raises the same `ValueError`s as `level_set_traversal`.

    Shape:
        sources, targets: (B, H, W, C) float32 in [0, 1] (NHWC); labels: (B,) int in [0, K).
    """
    if not isinstance(config, LSTConfig):
        raise ValueError(f"config must be an LSTConfig, got {type(config).__name__}")
    sources, targets, labels, target_labels = run_mod.validate_pairs(
        model_fn, params, sources, targets, labels, target_labels)
    to_np = lambda a: None if a is None else np.asarray(a)
    return sharded_traverse(model_fn, params, to_np(sources), to_np(targets), to_np(labels),
                            key, config, target_labels=to_np(target_labels), mesh=mesh,
                            progress=progress, desc=desc)


__all__ = ["sharded_traverse", "sharded_level_set_traversal"]
