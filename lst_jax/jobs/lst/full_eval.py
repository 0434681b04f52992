"""Full evaluation (Tables 1 and 2): every pool image is a source, 5 rounds of random
derangements of the pool give each source 5 different targets, LST runs in batches, then
distances (Table 1) and confidence over the triangles (source, output r1, output r2) for all
round pairs (Table 2). `../spec/lst.md` sections 3.2-3.4 and 6.

Fixes with respect to the reference, all deliberate:
- pairing by **global pool index**: source `i` gets target `pool[perm_r[i]]` whatever the
  batch layout (the reference mis-paired the last, smaller batch, #5);
- the pool is sorted by class (#6) and filtered **once**: the sources are the first
  `num_samples` pool images the model classifies correctly (#21);
- derangements by seeded rejection sampling (uniform over derangements), LST noise from
  `fold_in(fold_in(key(seed), round), batch)` (#7);
- RMSE uses the actual image size (#12); results are `.npz` + JSON, never pickles (#18).

Resumable: every finished LST batch and every finished hull chunk is one `.npz` written
atomically; a re-run of the same command skips them and gives identical results; a different
config in the same directory is refused.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from lst_jax.data.pool import TargetPool, predict_probs
from lst_jax.geometry import (
    multi_hull_confidences,
    per_source_statistics,
    round_pairs,
    triangle_grid,
    triangle_statistics,
)
from lst_jax.geometry.hull import DELTAS, stat_names
from lst_jax.jobs.lst.tables import (
    model_label,
    render_table1,
    render_table2,
    table1_stats,
    table2_stats,
    write_tables,
)
from lst_jax.jobs.rundir import RunDir
from lst_jax.parallel import distributed as dist
from lst_jax.traversal import LSTConfig, level_set_traversal, preset
from lst_jax.utils.checks import check_positive_int
from lst_jax.utils.progress import Progress

DistanceFn = Callable[[np.ndarray, np.ndarray], dict]


@dataclasses.dataclass(frozen=True)
class FullEvalConfig:
    """Settings of a full evaluation (everything that changes its numbers).

    Attributes:
        lst: traversal hyperparameters (default: the `paper` preset).
        num_samples: sources used (the first kept pool images; reference 1000).
        rounds: derangement rounds, i.e. targets per source (reference 5).
        batch_size: LST batch (the last batch is padded to it: one compiled program).
        seed: derangements and traversal noise.
        grid, grid_n: Table-2 triangle grid ("reference" = 64 points for n = 10, "exact").
        chunk_size: probe images per model call in the hull evaluation.
        distances: compute Table 1 (needs the metrics, or an injected distance function).
    """

    lst: LSTConfig = dataclasses.field(default_factory=lambda: preset("paper"))
    num_samples: int = 1000
    rounds: int = 5
    batch_size: int = 64
    seed: int = 0
    grid: str = "reference"
    grid_n: int = 10
    chunk_size: int = 64
    distances: bool = True

    def __post_init__(self):
        if not isinstance(self.lst, LSTConfig):
            raise ValueError(f"lst must be an LSTConfig, got {type(self.lst).__name__}")
        for name in ("num_samples", "batch_size", "chunk_size", "grid_n"):
            check_positive_int(name, getattr(self, name))
        if isinstance(self.rounds, bool) or not isinstance(self.rounds, int) or self.rounds < 2:
            raise ValueError(f"rounds must be an integer >= 2 (Table 2 needs two outputs per "
                             f"source), got {self.rounds!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {self.seed!r}")
        triangle_grid(kind=self.grid, n=self.grid_n)  # validates grid kind and resolution

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["lst"] = self.lst.to_dict()
        return d


# --------------------------------------------------------------------------------------------
# Pairing


def derangement(n: int, rng: np.random.Generator) -> np.ndarray:
    """A uniformly random permutation of range(n) without fixed points (rejection sampling).

    Shape:
        -> (n,) int64 with p[i] != i for all i.
    """
    if n < 2:
        raise ValueError(f"a derangement needs at least 2 elements, got {n} (the pool needs "
                         "at least two images)")
    ar = np.arange(n)
    while True:
        p = rng.permutation(n)
        if not np.any(p == ar):
            return p


def round_derangements(n: int, rounds: int, seed: int) -> np.ndarray:
    """One derangement of the pool per round, round r from `default_rng([seed, r])`.

    Shape:
        -> (rounds, n) int64.
    """
    return np.stack([derangement(n, np.random.default_rng([seed, r])) for r in range(rounds)])


class PairPlan(NamedTuple):
    """Who is paired with whom (indices into the pool).

    Shape:
        source_index: (N,) sorted pool indices of the sources (model-filtered);
        target_index: (R, N) target of each source in each round, `perms[r, source_index]`;
        perms: (R, n_pool) the derangements of all pool indices.
    """

    source_index: np.ndarray
    target_index: np.ndarray
    perms: np.ndarray


def plan_pairs(kept: np.ndarray, num_samples: int, rounds: int, seed: int) -> PairPlan:
    """Sources = the first `num_samples` kept pool indices; targets by global pool index.

    Args:
        kept: (n_pool,) bool, pool images the model classifies correctly (argmax filter).
    """
    kept = np.asarray(kept, bool)
    source_index = np.flatnonzero(kept)[:num_samples]
    if source_index.size == 0:
        raise ValueError("the model classifies no pool image correctly: nothing to evaluate")
    perms = round_derangements(len(kept), rounds, seed)
    return PairPlan(source_index, perms[:, source_index], perms)


def batch_bounds(n: int, batch_size: int) -> list[tuple[int, int]]:
    """[(start, stop)] of consecutive batches; the last may be smaller."""
    return [(s, min(s + batch_size, n)) for s in range(0, n, batch_size)]


# --------------------------------------------------------------------------------------------
# The unit of work


def _pad(a: np.ndarray, size: int) -> np.ndarray:
    if len(a) == size:
        return a
    return np.concatenate([a, np.repeat(a[:1], size - len(a), axis=0)], axis=0)


def lst_batch(model_fn, params, sources, targets, labels, target_labels, key,
              config: LSTConfig, *, pad_to: int | None = None,
              distance_fn: DistanceFn | None = None, progress: bool = False,
              mesh=None) -> dict:
    """One batch of pairs in, arrays out: LST outputs, confidences and distances.

    The batch is padded to `pad_to` (repeating its first pair) so that every batch runs the
    same compiled program; the padding is dropped from the results.

    With a `mesh` the pairs are traversed data parallel over its devices
    (`level_set_traversal(..., mesh=mesh)`; same numbers as one device to float round-off). With
    several processes, call it on every process with the same batch: each process's devices
    traverse their rows, each process measures the distances of its `process_share` of the
    pairs, and every process gets all the arrays.

    Shape:
        sources, targets: (n, H, W, C) in [0, 1]; labels, target_labels: (n,) int
        -> dict of arrays with leading axis n: outputs (n, H, W, C), valid, clean_conf,
        final_conf, final_target_conf, accepted_frac, and `dist_<key>` for each distance.
    """
    n = len(sources)
    size = max(n, pad_to or n)
    args = (model_fn, params, _pad(np.asarray(sources), size), _pad(np.asarray(targets), size),
            _pad(np.asarray(labels), size))
    kw = dict(key=key, config=config, target_labels=_pad(np.asarray(target_labels), size),
              progress=progress,
              desc=f"LST batch of {n}")
    res = jax.device_get(level_set_traversal(*args, mesh=mesh, **kw))
    out = {
        "outputs": np.asarray(res.images[:n], np.float32),
        "valid": np.asarray(res.valid[:n]),
        "clean_conf": np.asarray(res.clean_conf[:n]),
        "final_conf": np.asarray(res.record.conf_source[-1, :n]),
        "final_target_conf": np.asarray(res.record.conf_target[-1, :n]),
        "accepted_frac": np.asarray(res.record.accepted[:, :n].mean(0), np.float32),
    }
    if distance_fn is not None:
        for k, v in _distances(distance_fn, out["outputs"],
                               np.asarray(targets, np.float32)).items():
            out[f"dist_{k}"] = v
    return out


def _checked_distances(distance_fn, outputs, targets) -> dict:
    n = len(outputs)
    d = {}
    for k, v in distance_fn(outputs, targets).items():
        v = np.asarray(v, np.float32).reshape(-1)
        if v.shape != (n,):
            raise ValueError(f"distance_fn returned {k!r} with shape {v.shape}, expected "
                             f"({n},)")
        d[k] = v
    return d


def _distances(distance_fn, outputs, targets) -> dict:
    """`distance_fn` on all pairs; with several processes each measures its share."""
    if jax.process_count() == 1:
        return _checked_distances(distance_fn, outputs, targets)
    n = len(outputs)
    share = dist.process_share(n)
    if len(share):
        d = _checked_distances(distance_fn, outputs[share.start:share.stop],
                               targets[share.start:share.stop])
    else:  # more processes than pairs: same keys, no rows
        d = {k: v[:0] for k, v in _checked_distances(distance_fn, outputs[:1],
                                                     targets[:1]).items()}
    gathered = dist.gather_shares(d, n)
    return {k: gathered[k] for k in d}      # pytree ops sort dict keys; keep fn's order


def hull_batch(model_fn, params, sources, outputs, labels, grid, pairs, *,
               pad_to: int | None = None, chunk_size: int = 64, evaluate_fn=None) -> dict:
    """One batch of sources in, Table-2 arrays out: hull confidences of every round-pair
    triangle and their statistics. Padded to `pad_to` sources like `lst_batch`.

    Shape:
        sources: (n, H, W, C); outputs: (R, n, H, W, C); labels: (n,)
        -> {"conf": (n, T, P), "triangle_stats": (n, T, 8)}.
    """
    n = len(sources)
    size = max(n, pad_to or n)
    conf = multi_hull_confidences(
        model_fn, params, _pad(np.asarray(sources), size),
        np.stack([_pad(np.asarray(o), size) for o in outputs]), _pad(np.asarray(labels), size),
        grid=grid, pairs=pairs, batch_size=chunk_size, evaluate_fn=evaluate_fn)
    conf = np.asarray(conf)[:n]
    stats = triangle_statistics(conf, grid=grid, deltas=DELTAS)
    return {"conf": conf, "triangle_stats": np.asarray(stats)}


def _require_metrics():
    try:
        from lst_jax.metrics import image_distances
    except ImportError as e:  # the metrics module lands from another branch
        raise ValueError("Table 1 needs lst_jax.metrics (RMSE, L-inf, SSIM, LPIPS), which is "
                         f"not available ({e}); run with distances off (--no-distances) or "
                         "pass a distance_fn") from e
    return image_distances


def default_distance_fn(outputs, targets) -> dict:
    """Table-1 distances from `lst_jax.metrics.image_distances` (RMSE, L-inf, SSIM, LPIPS)."""
    return _require_metrics()(outputs, targets)


def basic_distance_fn(outputs, targets) -> dict:
    """RMSE (L2 / sqrt(H W C)) and L-inf per pair, without the metrics module.

    Shape:
        outputs, targets: (B, H, W, C) -> {"rmse": (B,), "linf": (B,)}.
    """
    d = (np.asarray(outputs, np.float64) - np.asarray(targets, np.float64))
    d = d.reshape(d.shape[0], -1)
    return {"rmse": np.sqrt(np.mean(d * d, axis=1)), "linf": np.max(np.abs(d), axis=1)}


def function_id(fn) -> str | None:
    if fn is None:
        return None
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', type(fn).__name__)}"


# --------------------------------------------------------------------------------------------
# The run


@dataclasses.dataclass
class FullEvalResult:
    """Aggregated arrays of a finished run (images stay in the per-batch files).

    Shape (N sources, R rounds, T = R(R-1)/2 triangles, P grid points):
        source_index (N,), labels (N,), target_index (R, N), final_conf (R, N),
        clean_conf (N,), valid (R, N), distances: key -> (R, N), triangle_stats (N, T, S),
        per_source (N, S), stat_names (S,), table1/table2: name -> (mean, std, count).
    """

    root: Path
    source_index: np.ndarray
    labels: np.ndarray
    target_index: np.ndarray
    clean_conf: np.ndarray
    final_conf: np.ndarray
    valid: np.ndarray
    distances: dict
    triangle_stats: np.ndarray
    per_source: np.ndarray
    stat_names: tuple
    table1: dict
    table2: dict
    label: str = ""


def _lst_name(r: int, b: int) -> str:
    return f"lst/r{r}_b{b:05d}.npz"


def _hull_name(b: int) -> str:
    return f"hull/b{b:05d}.npz"


MESH_MODES = ("auto", "on", "off")


def resolve_mesh(mesh="auto", memory_budget=None):
    """The mesh a full evaluation runs on: None (one device, the plain path) or a Mesh.

    Args:
        mesh: "auto" (all devices of all processes when there are several devices or
            processes, or when a memory budget is set; otherwise one device), "on" (always
            the sharded path, also on one device), "off" / None (one device; refused in a
            multi-process run), or a `jax.sharding.Mesh` with a `"data"` axis.
    """
    from lst_jax.parallel import data_mesh, num_shards

    if mesh is None:
        mesh = "off"
    if isinstance(mesh, str):
        if mesh not in MESH_MODES:
            raise ValueError(f"mesh must be one of {MESH_MODES} or a Mesh, got {mesh!r}")
        if mesh == "off":
            if jax.process_count() > 1:
                raise ValueError("mesh='off' (one device) cannot be used in a multi-process "
                                 "run; use 'auto'")
            return None
        if mesh == "on" or memory_budget is not None or jax.device_count() > 1 \
                or jax.process_count() > 1:
            return data_mesh()
        return None
    num_shards(mesh)   # validates the "data" axis
    return mesh


def full_evaluation(model_fn, params, pool: TargetPool, config: FullEvalConfig, out, *,
                    model_name: str | None = None, distance_fn: DistanceFn | None = None,
                    evaluate_fn=None, progress: bool = True, on_batch=None,
                    extra_manifest: dict | None = None, mesh="auto",
                    memory_budget=None) -> FullEvalResult | None:
    """Runs (or resumes) a full evaluation into the run directory `out`.

    Devices: with several devices (or processes) the LST batches are traversed data parallel
    over all of them (`level_set_traversal(..., mesh=)`) and the hull probes are split over them
    (`ShardedEvaluator`); numbers agree with one device to float round-off.

    Several processes (`jax.distributed` initialised, e.g. by `lst_jax.parallel.
    initialize_distributed`): call it on every process with the same arguments. Only
    process 0 touches `out`: it decides which batches are missing (`pending_items`), every
    process works on every pending batch with its own devices' share of the pairs / probes,
    results are gathered and process 0 writes them. The files are those of a one-process run
    on the same total number of devices. If a process dies, the others stop with
    `ProcessFailure`; finished batches stay on disk and the same call resumes.

    Args:
        model_fn, params: the classifier (`model_fn(params, images) -> logits`).
        pool: the target pool (sources and targets; sorted by class).
        config: `FullEvalConfig`.
        out: run directory; a finished batch found there is skipped, a different config is
            refused (ValueError).
        model_name: registry name recorded in the manifest and used as the table label.
        distance_fn: `(outputs, targets) -> {key: (B,)}` for Table 1 (default
            `lst_jax.metrics.image_distances`); ignored when `config.distances` is False.
        evaluate_fn: confidence evaluator for the hull probes (see `lst_jax.geometry`;
            default: `ShardedEvaluator` on the mesh, `config.chunk_size` probes per device,
            or `evaluate_in_chunks` on one device).
        on_batch: called as `on_batch(kind, name)` after each persisted batch ("lst"/"hull").
        mesh: "auto", "on", "off" or a Mesh (see `resolve_mesh`).
        memory_budget: per-device bytes (or "2GiB") for one chunk of hull probes; replaces
            `config.chunk_size` (does not change the numbers beyond round-off, so it is not
            part of the run's config).

    Returns:
        `FullEvalResult` (None on processes other than 0); the directory also holds
        manifest.json, plan.npz, lst/*.npz, hull/*.npz, results.npz, summary.json and the
        tables (md, tex, csv).
    """
    from lst_jax.models.checkpoint import tree_digest
    from lst_jax.parallel import ShardedEvaluator, num_shards, put_replicated

    if not isinstance(config, FullEvalConfig):
        raise ValueError(f"config must be a FullEvalConfig, got {type(config).__name__}")
    if not isinstance(pool, TargetPool):
        raise ValueError(f"pool must be a TargetPool, got {type(pool).__name__}")
    if len(pool) < 2:
        raise ValueError(f"the target pool needs at least 2 images, got {len(pool)}")
    if config.distances and distance_fn is None:
        _require_metrics()  # fail before any work if the metrics are unavailable
        distance_fn = default_distance_fn
    dist_fn = distance_fn if config.distances else None
    mesh = resolve_mesh(mesh, memory_budget)
    main = dist.is_main_process()
    progress = progress and main
    layout = {"processes": jax.process_count(),
              "devices": 1 if mesh is None else num_shards(mesh),
              "memory_budget": memory_budget}

    # Sources: the pool filtered once by this model; targets by global pool index. Every
    # process computes the plan (deterministic); process 0 checks it against the run dir.
    probs = predict_probs(model_fn, params, pool.images, batch=config.batch_size)
    kept = probs.argmax(-1) == pool.labels
    plan = plan_pairs(kept, config.num_samples, config.rounds, config.seed)
    clean_conf = probs[plan.source_index, pool.labels[plan.source_index]]
    plan_arrays = dict(source_index=plan.source_index, target_index=plan.target_index,
                       perms=plan.perms, labels=pool.labels[plan.source_index],
                       clean_conf=clean_conf.astype(np.float32))
    run = dist.on_main(lambda: _open_run(
        out, config, model_name, params_digest=tree_digest(params), pool=pool,
        distance_fn=dist_fn, plan_arrays=plan_arrays, extra_manifest=extra_manifest,
        compute_dtype=getattr(model_fn, "compute_dtype", None)))

    params_run = params if mesh is None else put_replicated(params, mesh)
    if evaluate_fn is None and mesh is not None:
        evaluate_fn = ShardedEvaluator(
            mesh, per_device_chunk=None if memory_budget is not None else config.chunk_size,
            memory_budget=memory_budget)
    n = len(plan.source_index)
    bounds = batch_bounds(n, config.batch_size)
    key = jax.random.key(config.seed)
    labels_all = pool.labels
    t0 = time.perf_counter()
    units = [(r, b) for r in range(config.rounds) for b in range(len(bounds))]
    todo = dist.pending_items(len(units), lambda u: run.exists(_lst_name(*units[u])))
    with Progress(len(units), desc="full eval: LST", unit="batch", enabled=progress) as bar:
        bar.update(len(units) - len(todo))
        for u in todo:
            r, b = units[u]
            s, e = bounds[b]
            src = plan.source_index[s:e]
            tgt = plan.target_index[r, s:e]
            arrays = lst_batch(model_fn, params_run, pool.images[src], pool.images[tgt],
                               labels_all[src], labels_all[tgt],
                               jax.random.fold_in(jax.random.fold_in(key, r), b), config.lst,
                               pad_to=config.batch_size, distance_fn=dist_fn, mesh=mesh)
            if main:
                run.save_npz(_lst_name(r, b), source_index=src, target_index=tgt, **arrays)
            bar.update(1)
            if on_batch is not None:
                on_batch("lst", _lst_name(r, b))

    grid = triangle_grid(kind=config.grid, n=config.grid_n)
    pairs = round_pairs(config.rounds)
    todo = dist.pending_items(len(bounds), lambda b: run.exists(_hull_name(b)))
    with Progress(len(bounds), desc="full eval: hulls", unit="batch", enabled=progress) as bar:
        bar.update(len(bounds) - len(todo))
        for b in todo:
            s, e = bounds[b]
            src = plan.source_index[s:e]
            # Process 0 reads the LST outputs (only it has the run directory) and sends them.
            if main:
                outs = np.stack([run.load_npz(_lst_name(r, b))["outputs"]
                                 for r in range(config.rounds)])
            else:
                outs = np.zeros((config.rounds, e - s) + pool.images.shape[1:], np.float32)
            outs = dist.broadcast_arrays_from_main(outs)
            arrays = hull_batch(model_fn, params_run, pool.images[src], outs, labels_all[src],
                                grid, pairs, pad_to=config.batch_size,
                                chunk_size=config.chunk_size, evaluate_fn=evaluate_fn)
            if main:
                run.save_npz(_hull_name(b), source_index=src, **arrays)
            bar.update(1)
            if on_batch is not None:
                on_batch("hull", _hull_name(b))

    result = None
    if main:
        result = collect_results(run.root,
                                 label=model_label(model_name) if model_name else "")
        summary = {
            "model": model_name, "label": result.label, "num_sources": n,
            "pool_size": len(pool), "rounds": config.rounds, "triangles": len(pairs),
            "grid_points": grid.num_points, "dropped_sources": int((~kept).sum()),
            "seconds_this_call": round(time.perf_counter() - t0, 2), "parallel": layout,
            "table1": result.table1, "table2": result.table2,
            "valid_fraction": float(result.valid.mean()),
        }
        run.write_json("summary.json", summary)
    dist.barrier("full evaluation written")
    return result


def _open_run(out, config, model_name, *, params_digest, pool, distance_fn, plan_arrays,
              extra_manifest, compute_dtype=None) -> RunDir:
    """Creates or resumes the run directory (process 0 only): manifest and pairing plan."""
    run = RunDir(out)
    run_config = {
        **config.to_dict(),
        "model": model_name,
        "params_digest": params_digest,
        "pool_digest": pool.digest(),
        "distance_fn": function_id(distance_fn),
    }
    if compute_dtype is not None:   # float32 runs keep the manifests of earlier versions
        run_config["compute_dtype"] = str(jnp.dtype(compute_dtype))
    run.ensure_manifest(run_config, mode="full_eval", pool=pool.meta, pool_size=len(pool),
                        **(extra_manifest or {}))
    if run.exists("plan.npz"):
        old = run.load_npz("plan.npz")
        if any(not np.array_equal(old[k], plan_arrays[k]) for k in ("source_index",
                                                                     "target_index")):
            raise ValueError(f"{run.path('plan.npz')} disagrees with the recomputed pairing; "
                             "the run directory was produced by other code or data")
    else:
        run.save_npz("plan.npz", **plan_arrays)
    return run


def read_results(root, label: str | None = None) -> FullEvalResult:
    """The aggregated arrays and table statistics of a finished run, from its batch files.

    Read only: writes nothing (`collect_results` also writes them into the run).

    Raises:
        FileNotFoundError: not a run directory; ValueError: the run is unfinished (the message
        counts the missing batch files).
    """
    root = Path(root)
    if not (root / "manifest.json").is_file() or not (root / "plan.npz").is_file():
        raise FileNotFoundError(f"{root} is not a full-evaluation run directory (no "
                                "manifest.json / plan.npz)")
    run = RunDir(root, lock=False)   # only read: `lst-jax tables` never writes into a run
    manifest = run.read_json("manifest.json")
    cfg = manifest["config"]
    plan = run.load_npz("plan.npz")
    n, rounds = len(plan["source_index"]), int(cfg["rounds"])
    bounds = batch_bounds(n, int(cfg["batch_size"]))
    missing = [name for name in ([_lst_name(r, b) for r in range(rounds)
                                  for b in range(len(bounds))]
                                 + [_hull_name(b) for b in range(len(bounds))])
               if not run.exists(name)]
    if missing:
        raise ValueError(f"run {root} is unfinished: {len(missing)} batch file(s) missing "
                         f"(e.g. {missing[0]}); re-run the same full-eval command to resume")
    per_round = []
    for r in range(rounds):
        parts = [run.load_npz(_lst_name(r, b)) for b in range(len(bounds))]
        per_round.append({k: np.concatenate([p[k] for p in parts]) for k in parts[0]
                          if k != "outputs"})
    hull = [run.load_npz(_hull_name(b)) for b in range(len(bounds))]
    tri = np.concatenate([h["triangle_stats"] for h in hull])
    per_source = np.asarray(per_source_statistics(tri))
    names = stat_names(deltas=DELTAS)
    dist_keys = [k[5:] for k in per_round[0] if k.startswith("dist_")]
    distances = {k: np.stack([pr[f"dist_{k}"] for pr in per_round]) for k in dist_keys}
    t1, t2 = table1_stats(distances), table2_stats(per_source, names)
    label = label or model_label(cfg.get("model") or root.name)
    result = FullEvalResult(
        root=root, source_index=plan["source_index"], labels=plan["labels"],
        target_index=plan["target_index"], clean_conf=plan["clean_conf"],
        final_conf=np.stack([pr["final_conf"] for pr in per_round]),
        valid=np.stack([pr["valid"] for pr in per_round]), distances=distances,
        triangle_stats=tri, per_source=per_source, stat_names=names, table1=t1, table2=t2,
        label=label)
    return result


def collect_results(root, label: str | None = None) -> FullEvalResult:
    """`read_results`, then writes results.npz and the tables (table1/table2 .md/.tex/.csv,
    tables.md) into the run directory `root`."""
    result = read_results(root, label)
    run = RunDir(result.root)
    run.save_npz("results.npz", source_index=result.source_index, labels=result.labels,
                 target_index=result.target_index, clean_conf=result.clean_conf,
                 final_conf=result.final_conf, valid=result.valid,
                 triangle_stats=result.triangle_stats, per_source=result.per_source,
                 stat_names=np.asarray(result.stat_names),
                 **{f"dist_{k}": v for k, v in result.distances.items()})
    write_tables(run, [(result.label, result.table1)] if result.table1 else [],
                 [(result.label, result.table2)])
    return result


def tables_for_runs(run_dirs, out, labels=None) -> dict:
    """Side-by-side paper tables for several finished runs, written into `out` only.

    The runs are read, never written (`read_results`); `out` must not be one of them or lie
    inside one.

    Returns:
        {"table1": markdown, "table2": markdown, "paths": {...}}.
    """
    run_dirs = [Path(p) for p in run_dirs]
    if not run_dirs:
        raise ValueError("tables needs at least one run directory")
    if labels is not None and len(labels) != len(run_dirs):
        raise ValueError(f"got {len(labels)} labels for {len(run_dirs)} runs")
    out_abs = Path(out).resolve()
    for p in run_dirs:
        if out_abs == p.resolve() or p.resolve() in out_abs.parents:
            raise ValueError(f"the tables output {out} is inside the run directory {p}; "
                             "tables never write into the runs they compare")
    results = [read_results(p, label=(labels[i] if labels else None))
               for i, p in enumerate(run_dirs)]
    rows1 = [(r.label, r.table1) for r in results if r.table1]
    rows2 = [(r.label, r.table2) for r in results]
    outdir = RunDir(out)
    paths = write_tables(outdir, rows1, rows2)
    outdir.write_json("tables.json", {
        "runs": [str(p) for p in run_dirs],
        "table1": {r.label: r.table1 for r in results},
        "table2": {r.label: r.table2 for r in results}})
    return {"table1": render_table1(rows1)[0], "table2": render_table2(rows2)[0],
            "paths": paths}


__all__ = ["FullEvalConfig", "FullEvalResult", "full_evaluation", "read_results",
           "collect_results", "tables_for_runs", "derangement", "round_derangements",
           "plan_pairs", "lst_batch", "hull_batch", "batch_bounds", "default_distance_fn",
           "basic_distance_fn", "resolve_mesh", "MESH_MODES"]
