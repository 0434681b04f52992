"""Probe families and the chunked confidence evaluator (the swappable middle stage).

A probe family is a pure function `probe_fn(data, idx) -> (images, labels)`: it builds the
probe images for a vector of flat indices from small per-batch `data` (a pytree). An
evaluator maps `(model_fn, params, probe_fn, data, total)` to the source-class confidences
`(total,)` of all probes. `evaluate_in_chunks` is the default: one jitted program, a
`lax.map` over fixed-size chunks of the index range (padded to a chunk multiple), so memory
stays at one chunk of images whatever the number of probes. A sharded evaluator (e.g.
`NamedSharding(mesh, P("data"))` over the padded index axis) can replace it without touching
the probe families or the statistics.
"""

from __future__ import annotations

import functools
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

DEFAULT_CHUNK = 64  # probe images per model call (the reference's 64-point grid batch)

Evaluator = Callable[..., jax.Array]


class Combinations(NamedTuple):
    """Data of the linear-combination probe family (hull grids, linear paths).

    Probe `m = b * P + p` is `sum_v weights[p, v] * vertices[v, b]`, evaluated for class
    `labels[b]`.

    Shape:
        vertices: (V, B, H, W, C); weights: (P, V); labels: (B,) int.
    """

    vertices: jax.Array
    weights: jax.Array
    labels: jax.Array


def _combine(data: Combinations, idx):
    p_count = data.weights.shape[0]
    b, p = idx // p_count, idx % p_count
    w = data.weights[p]                                   # (n, V)
    imgs = None
    for v in range(data.vertices.shape[0]):               # explicit sum: a vertex is exact
        term = w[:, v].reshape(-1, 1, 1, 1) * data.vertices[v][b]
        imgs = term if imgs is None else imgs + term
    return imgs, data.labels[b]


def combination_probes(data: Combinations, idx):
    """Probe family: weighted sums of vertices, not clipped (the Table-2 hull probes).

    >>> import jax.numpy as jnp
    >>> data = Combinations(jnp.ones((2, 3, 8, 8, 3)), jnp.array([[0.5, 0.5]]), jnp.zeros(3))
    >>> combination_probes(data, jnp.arange(3))[0].shape
    (3, 8, 8, 3)

    Shape:
        idx: (n,) int flat indices in [0, B * P) -> images (n, H, W, C), labels (n,).
    """
    return _combine(data, idx)


def combination_probes_clipped(data: Combinations, idx):
    """As `combination_probes`, then clipped to [0, 1] (the triangle figures)."""
    imgs, labels = _combine(data, idx)
    return jnp.clip(imgs, 0.0, 1.0), labels


def class_confidence(model_fn, params, images, labels):
    """Softmax probability of `labels` under `model_fn`.

    Shape:
        images: (n, H, W, C), labels: (n,) -> (n,) float32.
    """
    probs = jax.nn.softmax(model_fn(params, images).astype(jnp.float32), axis=-1)
    return jnp.take_along_axis(probs, labels[:, None].astype(jnp.int32), axis=-1)[:, 0]


def class_log_prob(model_fn, params, images, labels):
    """Log-softmax probability of `labels` under `model_fn` (= minus the cross-entropy);
    finite where the probability underflows.

    Shape:
        images: (n, H, W, C), labels: (n,) -> (n,) float32.
    """
    logp = jax.nn.log_softmax(model_fn(params, images).astype(jnp.float32), axis=-1)
    return jnp.take_along_axis(logp, labels[:, None].astype(jnp.int32), axis=-1)[:, 0]


# What an evaluator returns per probe: `score(model_fn, params, images, labels) -> (n,)`.
SCORES = {"confidence": class_confidence, "log_prob": class_log_prob}


def score_fn(score: str):
    """The per-probe score function named `score` ("confidence" or "log_prob")."""
    if score not in SCORES:
        raise ValueError(f"score must be one of {sorted(SCORES)}, got {score!r}")
    return SCORES[score]


@functools.partial(jax.jit, static_argnames=("model_fn", "probe_fn", "total", "chunk_size",
                                             "score"))
def _evaluate_jit(model_fn, params, probe_fn, data, total: int, chunk_size: int,
                  score: str = "confidence"):
    n_chunks = -(-total // chunk_size)
    idx = jnp.minimum(jnp.arange(n_chunks * chunk_size), total - 1)  # pad with the last probe
    idx = idx.reshape(n_chunks, chunk_size)

    def one(ids):
        imgs, labels = probe_fn(data, ids)
        return SCORES[score](model_fn, params, imgs, labels)

    return lax.map(one, idx).reshape(-1)[:total]


def evaluate_in_chunks(model_fn, params, probe_fn, data, total: int, *,
                       batch_size: int = DEFAULT_CHUNK, score: str = "confidence") -> jax.Array:
    """Scores of `total` probes, `batch_size` images per model call (jitted, pure; one
    device).

    `score` is "confidence" (softmax probability of the probe's label, the default) or
    "log_prob" (its log-softmax, i.e. minus the cross-entropy). Compiles once per
    (model_fn, probe_fn, data shapes, total, batch_size, score).

    >>> import jax, jax.numpy as jnp
    >>> model_fn = lambda p, x: x.reshape(len(x), -1) @ p
    >>> params = jax.random.normal(jax.random.key(0), (8 * 8 * 3, 4))
    >>> vertices = jax.random.uniform(jax.random.key(1), (2, 3, 8, 8, 3))   # V=2, B=3
    >>> weights = jnp.array([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]])          # P=3
    >>> data = Combinations(vertices, weights, jnp.zeros(3, jnp.int32))
    >>> evaluate_in_chunks(model_fn, params, combination_probes, data, 9, batch_size=4).shape
    (9,)

    Shape:
        -> (total,) float32, entry m = p_{label_m}(probe_m) (or its log).
    """
    if total < 1:
        raise ValueError(f"total must be a positive number of probes, got {total}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) \
            or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    score_fn(score)
    return _evaluate_jit(model_fn, params, probe_fn, data, int(total),
                         int(min(batch_size, total)), score)


def default_evaluator(batch_size: int = DEFAULT_CHUNK) -> Evaluator:
    """`evaluate_in_chunks` with a fixed batch size, as an `evaluate_fn`."""
    return functools.partial(evaluate_in_chunks, batch_size=batch_size)


def resolve_evaluator(evaluate_fn: Evaluator | None, mesh=None, batch_size: int | None = None,
                      memory_budget=None) -> Evaluator:
    """The evaluator of a geometry function's placement keywords.

    `evaluate_fn` wins (then `mesh` and `memory_budget` must be None; `batch_size` is the
    evaluator's business). Otherwise `mesh=None` without `memory_budget`: one device,
    `evaluate_in_chunks` with `batch_size` probes per call (default `DEFAULT_CHUNK`); a
    `mesh` or a `memory_budget`: `lst_jax.parallel.ShardedEvaluator` over the mesh (None: the
    default device), `batch_size` probes per device per call, planned from the budget.
    """
    if evaluate_fn is not None:
        if mesh is not None or memory_budget is not None:
            raise ValueError("give evaluate_fn or mesh / memory_budget, not both")
        return evaluate_fn
    if mesh is None and memory_budget is None:
        return default_evaluator(DEFAULT_CHUNK if batch_size is None else batch_size)
    from lst_jax.parallel import ShardedEvaluator, data_mesh

    mesh = data_mesh(jax.local_devices()[:1]) if mesh is None else mesh
    return ShardedEvaluator(mesh=mesh, per_device_chunk=batch_size,
                            memory_budget=memory_budget)


def evaluate_combinations(model_fn, params, vertices, weights, labels, *, clip: bool = False,
                          batch_size: int | None = None, mesh=None, memory_budget=None,
                          evaluate_fn: Evaluator | None = None,
                          score: str = "confidence") -> jax.Array:
    """Source-class confidence at every weighted combination of vertices, per image.

    >>> import jax, jax.numpy as jnp
    >>> model_fn = lambda p, x: x.reshape(len(x), -1) @ p
    >>> params = jax.random.normal(jax.random.key(0), (8 * 8 * 3, 4))
    >>> vertices = jax.random.uniform(jax.random.key(1), (2, 3, 8, 8, 3))   # V=2, B=3
    >>> weights = jnp.array([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]])          # P=3
    >>> evaluate_combinations(model_fn, params, vertices, weights, jnp.zeros(3, jnp.int32)).shape
    (3, 3)

    Args:
        vertices: V stacked image batches (e.g. source, output 1, output 2).
        weights: P rows of V weights (e.g. a `TriangleGrid.weights`).
        clip: clip each probe to [0, 1] before the model (the reference clips in figures,
            not in Table 2).
        batch_size, mesh, memory_budget, evaluate_fn: placement (`resolve_evaluator`):
            probes per device per model call (default 64), a device mesh (None: one
            device), bytes per device, or an evaluator of your own.
        score: "confidence" (default) or "log_prob" (minus the cross-entropy).

    Shape:
        vertices: (V, B, H, W, C); weights: (P, V); labels: (B,) -> (B, P) float32.
    """
    vertices = jnp.asarray(vertices, jnp.float32)
    weights = jnp.asarray(weights, jnp.float32)
    labels = jnp.asarray(labels, jnp.int32)
    if vertices.ndim != 5:
        raise ValueError(f"vertices must have shape (V, B, H, W, C), got {vertices.shape}")
    if weights.ndim != 2 or weights.shape[1] != vertices.shape[0]:
        raise ValueError(f"weights must have shape (P, {vertices.shape[0]}), got "
                         f"{weights.shape}")
    b, p = vertices.shape[1], weights.shape[0]
    if labels.shape != (b,):
        raise ValueError(f"labels must have shape ({b},), got {labels.shape}")
    evaluate_fn = resolve_evaluator(evaluate_fn, mesh, batch_size, memory_budget)
    probe_fn = combination_probes_clipped if clip else combination_probes
    score_fn(score)
    kw = {} if score == "confidence" else {"score": score}  # custom evaluators: default only
    conf = evaluate_fn(model_fn, params, probe_fn, Combinations(vertices, weights, labels),
                       b * p, **kw)
    return jnp.asarray(conf).reshape(b, p)
