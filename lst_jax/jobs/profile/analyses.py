"""The analyses of a profile, each a cached per-model unit of work.

An analysis turns (model, its sub-config of the profile) into a JSON result stored in a
`cached_unit` directory keyed by the model name, its checkpoint digest and the full
sub-config: the same call later returns the stored result without computing, a changed
setting lands in a new directory (only that analysis reruns), and a killed unit resumes from
its own finished chunks. `metrics(result)` extracts the scalars of the report table.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable

import numpy as np

from lst_jax.jobs.rundir import cached_unit, jsonable, unit_seconds


@dataclasses.dataclass
class ProfileContext:
    """What every analysis of one profile shares: settings, cache, data and models."""

    config: Any                      # ProfileConfig
    cache: Path                      # root of the cached units
    images: np.ndarray | None        # (N, H, W, C) the robustness analysis' test images
    labels: np.ndarray | None        # (N,) (None: no robustness analysis)
    names: tuple                     # every model of the profile (profiled + baseline)
    profiled: tuple                  # the profiled names, in order
    data: Any = None                 # the DataRef of the images (None: the digits test split)
    progress: bool = False
    refs: dict = dataclasses.field(default_factory=dict)   # name -> ModelRef (or ref)
    _pool: Any = None
    _loaded: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        from lst_jax.data.reference import DataRef

        self.data = DataRef.of("digits" if self.data is None else self.data)

    @property
    def data_name(self):
        """The data in cache keys (`DataRef.key`: "digits" for the shipped digits)."""
        return self.data.key()

    def ref(self, name: str):
        """The `ModelRef` of a model of the profile (`resolve_model`)."""
        from lst_jax.models.reference import resolve_model

        return resolve_model(self.refs.get(name, name))

    def model(self, name: str):
        """The loaded model (built on first use only: a fully cached profile builds no
        model)."""
        if name not in self._loaded:
            self._loaded[name] = self.ref(name).load()
        return self._loaded[name]

    def digest(self, name: str) -> str:
        """The verified digest of `name`'s restored parameters (`ModelRef.digest`: one
        restore per process, no model build)."""
        return self.ref(name).digest()

    def relative(self, path) -> str:
        """`path` relative to the profile directory (the parent of the cache), so that a
        profile stays valid when its directory moves."""
        return str(Path(path).resolve().relative_to(self.cache.resolve().parent))

    def model_key(self, name: str) -> dict:
        return {"model": name, "params_digest": self.digest(name), "data": self.data_name}

    def pool(self):
        """The LST target pool shared by all profiled models (one image per class that every
        profiled model classifies correctly with confidence > 0.6), built once and cached."""
        if self._pool is None:
            from lst_jax.data.pool import load_pool
            from lst_jax.jobs.lst.job import _pool_on_every_process, pool_job
            from lst_jax.jobs.rundir import unit_dir
            from lst_jax.parallel.distributed import process_local

            names = sorted(self.profiled)
            key = {"models": names, "digests": [self.digest(n) for n in names],
                   "data": self.data_name}
            root = unit_dir(self.cache, "pool", self.data.kind, key)

            def load():      # several processes: process 0 alone, the pool is broadcast
                if not (root / "manifest.json").is_file():
                    with process_local():
                        pool_job([self.ref(n) for n in names], data=self.data,
                                 out=root, progress=self.progress)
                return load_pool(root)

            self._pool = _pool_on_every_process(load)
        return self._pool


@dataclasses.dataclass(frozen=True)
class Analysis:
    """One analysis: `run(ctx, name) -> dict` (a JSON-able result, cached per unit) and
    `metrics(result) -> {metric: float}` (the scalars of the report table) and
    `images(result) -> {what: count}` (how many test images, or pairs, it used)."""

    name: str
    title: str
    run: Callable
    metrics: Callable
    images: Callable = lambda r: {}


def _cached(kind: str, config: Callable, compute: Callable) -> Callable:
    """`run(ctx, name)` of an analysis whose unit is a `cached_unit` of `config(ctx, name)`
    computed by `compute(ctx, name, run_dir)`."""
    def run(ctx, name):
        out = cached_unit(ctx.cache, kind, name, config(ctx, name),
                          lambda rd: compute(ctx, name, rd))
        if out is None:      # not process 0 of a multi-process run
            return None
        return {**out, "run_dir": ctx.relative(out["run_dir"])}

    return run


# ------------------------------------------------------------------------------ robustness
def _robustness_config(ctx, name):
    return {"analysis": "robustness", **ctx.model_key(name),
            **ctx.config.robustness.to_dict(), "seed": ctx.config.robustness_seed}


def _robustness_compute(ctx, name, run):
    import time

    import jax

    from lst_jax.parallel import data_mesh
    from lst_jax.robustness import robustness_measurements

    m = ctx.model(name)
    cfg = ctx.config.robustness
    t0 = time.perf_counter()
    r = robustness_measurements(m.model_fn, m.params, ctx.images, ctx.labels,
                                key=jax.random.key(ctx.config.robustness_seed), config=cfg,
                                pgd_key=jax.random.key(ctx.config.robustness_seed + 1),
                                mesh=data_mesh(), progress=ctx.progress)
    r = jax.device_get(r)
    pgd = {f"{k}/255": float(a) for k, a in zip(cfg.pgd_radii, r.pgd_accuracy)}
    return {"clean_accuracy": float(r.clean_accuracy), "pgd_accuracy": pgd,
            "robust_accuracy": pgd[f"{cfg.headline_radius}/255"],
            "corruption_accuracy": r.corruption_accuracy.astype(float).tolist(),
            "corruptions": list(cfg.corruptions), "severities": list(cfg.severities),
            "mean_corruption_accuracy": float(r.corruption_accuracy.astype(float).mean()),
            "num_images": int(r.num_images),
            "seconds": round(time.perf_counter() - t0, 2)}


def _robustness_metrics(r):
    return {"clean_accuracy": r["clean_accuracy"], "robust_accuracy": r["robust_accuracy"],
            "mean_corruption_accuracy": r["mean_corruption_accuracy"]}


# ------------------------------------------------------------------------------------- LST
def _lst_config(ctx, name):
    return {"analysis": "lst", **ctx.model_key(name), "full_eval": ctx.config.lst.to_dict(),
            "metrics": ctx.config.lst_metrics, "pool_digest": ctx.pool().digest()}


def _lst_compute(ctx, name, run):
    import time

    from lst_jax.jobs.lst.full_eval import basic_distance_fn, collect_results, full_evaluation

    m = ctx.model(name)
    t0 = time.perf_counter()
    # Several processes: all traverse (data parallel), process 0 alone has `run` and writes.
    full_evaluation(m.model_fn, m.params, ctx.pool(), ctx.config.lst,
                    run.path("full_eval") if run is not None else None,
                    model_name=name, progress=ctx.progress, mesh="auto",
                    distance_fn=basic_distance_fn if ctx.config.lst_metrics == "basic" else None)
    if run is None:
        return None
    res = collect_results(run.path("full_eval"), label=name)
    names = list(res.stat_names)
    ps = res.per_source
    star_min = ps[:, names.index("p_src")] + ps[:, names.index("edge_min")]
    delta = ctx.config.lst.lst.pthresh
    return {"table1": {k: list(v) for k, v in res.table1.items()},
            "table2": {k: list(v) for k, v in res.table2.items()},
            "star_min_conf": float(np.mean(star_min)),
            "hull_frac_above_delta": res.table2[f"frac_{_nearest_delta(delta, names)}"][0],
            "delta": delta, "num_sources": int(len(res.source_index)),
            "seconds": round(time.perf_counter() - t0, 2)}


def _nearest_delta(delta, names) -> str:
    ds = [float(n[5:]) for n in names if n.startswith("frac_")]
    return f"{min(ds, key=lambda d: abs(d - delta)):g}"


def _lst_metrics(r):
    out = {f"lst_{k}": v[0] for k, v in r["table1"].items()}
    out.update(hull_mean_conf=r["table2"]["mean"][0],
               hull_frac_above_delta=r["hull_frac_above_delta"],
               star_min_conf=r["star_min_conf"])
    return out




# --------------------------------------------------------------------------------- I-ASIDE
def _iaside_run(ctx, name):
    from lst_jax.jobs.iaside.job import iaside_model_run

    r = iaside_model_run(ctx.ref(name), ctx.config.iaside, ctx.cache / "iaside", data=ctx.data,
                         progress=ctx.progress)
    if r is None:        # not process 0 of a multi-process run
        return None
    keep = ("model", "K", "M", "fill", "score", "signed_score", "score_se", "distribution",
            "shapley", "shapley_se", "seconds", "run_dir")
    out = jsonable({k: r[k] for k in keep if k in r})
    out["run_dir"] = ctx.relative(r["run_dir"])
    return out


def low_band_count(num_bands: int) -> int:
    """The "low-frequency" bands of the profile: the lowest quarter (at least one)."""
    return max(1, num_bands // 4)


def _iaside_metrics(r):
    d = np.asarray(r["distribution"], np.float64)
    return {"iaside_score": r["score"], "iaside_signed_score": r["signed_score"],
            "iaside_low_band_importance": float(d[:low_band_count(len(d))].sum())}


# ---------------------------------------------------------------------------- connectivity
def _connectivity_run(ctx, name):
    from lst_jax.jobs.connectivity.job import barrier_model_run, detect_model_run

    root = ctx.cache / "connectivity"
    ref = ctx.ref(name)      # a checkpoint directory is found by its ModelRef, not its name
    barrier = barrier_model_run(ref, ctx.config.barrier, root, progress=ctx.progress)
    detect = detect_model_run(ref, ctx.config.detect, root, progress=ctx.progress)
    if barrier is None:  # not process 0 of a multi-process run
        return None
    seconds = sum(unit_seconds(r["run_dir"]) or 0.0 for r in (barrier, detect))
    for r in (barrier, detect):
        r["run_dir"] = ctx.relative(r["run_dir"])
    return jsonable({"barrier": barrier, "detect": detect, "seconds": round(seconds, 2)})


def _connectivity_metrics(r):
    out = {}
    for group, short in (("real", "real"), ("adversarial", "adv")):
        g = r["barrier"][group]
        out[f"barrier_{short}_max_median"] = g["max_median"]
        out[f"barrier_{short}_gap_median"] = g["gap_median"]
    for attack, d in r["detect"]["attacks"].items():
        out[f"detect_auroc_{attack}"] = d["auroc"]
    return out


def _connectivity_images(r):
    return {"barrier pairs": r["barrier"]["real"]["n"],
            "detector images": r["detect"]["n_clean"]}


ANALYSES: dict[str, Analysis] = {a.name: a for a in [
    Analysis("robustness", "Robustness (clean, PGD, corruptions)",
             _cached("robustness", _robustness_config, _robustness_compute),
             _robustness_metrics, lambda r: {"images": r["num_images"]}),
    Analysis("lst", "Level Set Traversal (Tables 1-2, star paths)",
             _cached("lst", _lst_config, _lst_compute), _lst_metrics,
             lambda r: {"source images": r["num_sources"]}),
    Analysis("iaside", "I-ASIDE (spectral importance, robustness score)", _iaside_run,
             _iaside_metrics, lambda r: {"images": r["K"]}),
    Analysis("connectivity", "Input-space connectivity (barriers, detector)",
             _connectivity_run, _connectivity_metrics, _connectivity_images),
]}

__all__ = ["ANALYSES", "Analysis", "ProfileContext"]
