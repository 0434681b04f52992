"""The geometry evaluators (hull grids, linear paths, path widths) sharded over the mesh.

`lst_jax.geometry` builds probes from small per-batch data inside the evaluator
(`probe_fn(data, idx) -> (images, labels)` for flat probe indices, see
`lst_jax.geometry.probes`). `ShardedEvaluator` is a drop-in `evaluate_fn` for all of them:
the probe index vector `arange(total)` is the batch of `sharded_apply` (padded to a multiple
of the device count, split `P("data")`, cut into chunks of one fixed size or of a memory
budget), while the model parameters and the probe data (vertices, directions, keys) are
replicated `P()`. Each device builds and evaluates only its own probes; nothing else moves
until the confidences are copied back.

    from lst_jax.geometry import multi_hull_confidences
    from lst_jax.parallel import ShardedEvaluator, data_mesh

    ev = ShardedEvaluator(data_mesh(), memory_budget="2GiB")
    conf = multi_hull_confidences(model_fn, params, sources, outputs, labels, evaluate_fn=ev)
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import numpy as np
from jax.sharding import Mesh

from lst_jax.geometry.probes import SCORES, score_fn
from lst_jax.parallel.mesh import data_mesh, num_shards
from lst_jax.parallel.sharded import (
    MemoryEstimate,
    estimate_memory,
    parse_bytes,
    plan_chunk_size,
    sharded_apply,
)
from lst_jax.utils.checks import check_positive_int


def _is_key(a) -> bool:
    return hasattr(a, "dtype") and jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key)


def _strip_keys(data):
    """Typed PRNG key leaves -> their raw uint32 data (host transfers and multi-process
    placement need plain arrays); returns (data, ((leaf index, impl), ...))."""
    leaves, treedef = jax.tree.flatten(data)
    keys = tuple((i, str(jax.random.key_impl(a))) for i, a in enumerate(leaves) if _is_key(a))
    for i, _ in keys:
        leaves[i] = jax.random.key_data(leaves[i])
    return jax.tree.unflatten(treedef, leaves), keys


@dataclasses.dataclass(frozen=True)
class _ProbeScore:
    """`fn(params, idx)` for `sharded_apply`: build probes `idx`, return their scores
    (`lst_jax.geometry.probes.SCORES`: confidence or log-probability of the probe's label).

    Hashable by value (model_fn, probe_fn, key layout, score), so every call with the same
    model and probe family reuses one compiled program.
    """

    model_fn: Callable
    probe_fn: Callable
    keys: tuple = ()
    score: str = "confidence"

    def __call__(self, params_data, idx):
        params, data = params_data
        if self.keys:
            leaves, treedef = jax.tree.flatten(data)
            for i, impl in self.keys:
                leaves[i] = jax.random.wrap_key_data(leaves[i], impl=impl)
            data = jax.tree.unflatten(treedef, leaves)
        images, labels = self.probe_fn(data, idx)
        return SCORES[self.score](self.model_fn, params, images, labels)


@dataclasses.dataclass(frozen=True)
class ShardedEvaluator:
    """An `evaluate_fn` for `lst_jax.geometry` that splits the probes over a device mesh.

    Same numbers as the default one-device `evaluate_in_chunks` (tested to 1e-6 on 8 devices,
    probe counts not a multiple of 8); pass it as `evaluate_fn=` to `hull_confidences`,
    `multi_hull_confidences`, `linear_path_confidences`, `evaluate_combinations` or
    `path_widths`.

    Attributes:
        mesh: mesh with a `"data"` axis (default at call time: `data_mesh()`, all devices of
            all processes).
        chunk_size: probes per chunk over all devices (rounded up to a device multiple).
        per_device_chunk: probes per device per chunk (alternative to `chunk_size`).
        memory_budget: per-device bytes (int or `"512MiB"`) one chunk may use, parameters and
            probe data included; the chunk is planned from XLA's memory analysis
            (`lst_jax.parallel.plan_chunk_size`). Default without any of the three: 128 probes
            per device.
        progress: progress bar over the probes.

    Multi-process: call it on every process with the same arguments (the geometry functions
    do so when the script does); every process gets all confidences.

    Shape:
        `__call__(model_fn, params, probe_fn, data, total, score="confidence")` -> (total,)
        float32 numpy (`score="log_prob"`: log-softmax of the probe's label).
    """

    mesh: Mesh | None = None
    chunk_size: int | None = None
    per_device_chunk: int | None = None
    memory_budget: int | str | None = None
    progress: bool = False

    def __post_init__(self):
        for name in ("chunk_size", "per_device_chunk"):
            if getattr(self, name) is not None:
                check_positive_int(name, getattr(self, name))
        if self.chunk_size is not None and self.per_device_chunk is not None:
            raise ValueError("give chunk_size or per_device_chunk, not both")
        if self.memory_budget is not None:
            parse_bytes(self.memory_budget)   # validates early

    def _setup(self, model_fn, params, probe_fn, data, total, score="confidence"):
        if isinstance(total, bool) or not isinstance(total, (int, np.integer)) or total < 1:
            raise ValueError(f"total must be a positive number of probes, got {total!r}")
        mesh = self.mesh if self.mesh is not None else data_mesh()
        chunk = self.chunk_size
        if self.per_device_chunk is not None:
            chunk = self.per_device_chunk * num_shards(mesh)
        data, keys = _strip_keys(data)
        score_fn(score)
        fn = _ProbeScore(model_fn, probe_fn, keys, score)
        return mesh, chunk, fn, (params, data), np.arange(int(total), dtype=np.int32)

    def plan(self, model_fn, params, probe_fn, data, total: int) -> int:
        """The global chunk size (probes per sharded model call) this evaluator would use."""
        mesh, chunk, fn, pd, idx = self._setup(model_fn, params, probe_fn, data, total)
        return plan_chunk_size(fn, pd, idx, mesh, chunk_size=chunk,
                               memory_budget=self.memory_budget)

    def estimate(self, model_fn, params, probe_fn, data, total: int) -> MemoryEstimate:
        """Per-device bytes of one chunk as `fixed + per_example * probes_per_device`
        (`lst_jax.parallel.estimate_memory` of this evaluator's program)."""
        mesh, _, fn, pd, idx = self._setup(model_fn, params, probe_fn, data, total)
        return estimate_memory(fn, pd, idx, mesh)

    def __call__(self, model_fn, params, probe_fn, data, total: int,
                 score: str = "confidence") -> np.ndarray:
        mesh, chunk, fn, pd, idx = self._setup(model_fn, params, probe_fn, data, total, score)
        return sharded_apply(fn, pd, idx, mesh, chunk_size=chunk,
                             memory_budget=self.memory_budget, progress=self.progress,
                             desc="probes")


__all__ = ["ShardedEvaluator"]
