"""`lst-jax profile`: every analysis on every model, cached per unit, one report."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Sequence

from lst_jax.data.reference import DataRef, check_data_shape, load_images
from lst_jax.evaluation.rundir import RunDir
from lst_jax.parallel import distributed as dist
from lst_jax.profile.analyses import ANALYSES, ProfileContext
from lst_jax.profile.compare import (ROBUSTNESS_METRICS, add_corruption_errors, correlations,
                                     metric_label)
from lst_jax.profile.config import ProfileConfig, profile_preset
from lst_jax.utils.progress import Progress

SUPPORTED_DATA = ("digits",)
# One signature per method for the report's first figure.
KEY_METRICS = ("hull_mean_conf", "star_min_conf", "lst_rmse", "iaside_score",
               "barrier_adv_max_median", "detect_auroc_optimization")


def validate_models(models: Sequence[str], baseline: str):
    """Checks the model list before any work: non-empty, no repeats, known names, one dataset
    and one input shape (the baseline's too). Returns the registry specs."""
    from lst_jax.models.registry import get_spec

    if not models:
        raise ValueError("profile needs at least one model (--models A [B ...])")
    dupes = sorted({str(m) for m in models if list(models).count(m) > 1})
    if dupes:
        raise ValueError(f"models are listed more than once: {dupes}")
    specs = {m: get_spec(m) for m in list(models) + [baseline]}
    kinds = {(s.dataset, tuple(s.input_size)) for s in specs.values()}
    if len(kinds) > 1:
        detail = ", ".join(f"{m}: {s.dataset} {'x'.join(map(str, s.input_size))}"
                           for m, s in specs.items())
        raise ValueError(f"a profile compares models on the same data: these models (and the "
                         f"mCE baseline) differ in dataset or input shape ({detail})")
    data = next(iter(kinds))[0]
    if data not in SUPPORTED_DATA:
        raise ValueError(f"profile runs on the shipped {', '.join(SUPPORTED_DATA)} data; "
                         f"{data!r} models are not supported yet")
    return specs


def profile_job(models: Sequence[str], config: ProfileConfig | str = "quick", out=None, *,
                progress: bool = True, command: str | None = None,
                preset_name: str | None = None, data=None) -> dict:
    """Profiles `models` (registry names, checkpoint directories or in-memory models,
    `resolve_model`; `config.baseline` too) with every analysis of `config`; returns the
    profile dict (also written as profile.json next to report.md / report.html / profile.csv).

    Every (analysis, model) unit is cached under `<out>/cache/` keyed by the model, its
    checkpoint digest and the analysis' full settings: a second call recomputes nothing, a
    changed setting reruns only the analysis it affects, a killed run resumes.

    `data` (a `lst_jax.data.reference.DataRef`, default the digits test split) gives the
    images of every analysis; it must have the models' input shape (checked before any work).

    Several processes (`jax.distributed`): call it on every process. The units run one
    after the other, each split over the processes in its own way (LST and robustness data
    parallel over every device, I-ASIDE by coalition blocks, connectivity by pair chunks);
    process 0 alone writes (the same files as one process) and the others return None.
    """
    if isinstance(config, str):
        preset_name = config
        config = profile_preset(config)
    if not isinstance(config, ProfileConfig):
        raise ValueError(f"config must be a ProfileConfig or a preset name, got {config!r}")
    models = list(models)
    specs = validate_models(models, config.baseline)
    # names, checkpoint directories or in-memory models -> the models' names (rows, keys)
    from lst_jax.models.reference import resolve_model

    refs = {m: resolve_model(m) for m in specs}
    if len({refs[m].name for m in models}) != len(models):
        raise ValueError("two of the models have the same name: "
                         f"{[f'{m} -> {refs[m].name}' for m in models]}")
    by_name: dict = {}
    for r in refs.values():   # e.g. an in-memory model named like the registry baseline
        first = by_name.setdefault(r.name, r)
        if first is not r and first.digest() != r.digest():
            raise ValueError(f"two different models (other parameters) are named "
                             f"{r.name!r} among the models and the baseline; rename one")
    models = [refs[m].name for m in models]
    config = dataclasses.replace(config, baseline=refs[config.baseline].name)
    specs = {refs[m].name: s for m, s in specs.items()}
    dref = DataRef.of("digits" if data is None else data)
    shape = specs[models[0]].input_size
    check_data_shape(dref, shape)
    config = config.with_data(dref)
    out = Path(out or Path("runs") / "profile")
    images, labels = load_images(dref, shape)
    ctx = ProfileContext(config=config, cache=out / "cache", images=images, labels=labels,
                         names=tuple(specs), profiled=tuple(models), data=dref,
                         progress=progress, refs={r.name: r for r in refs.values()})
    for m in specs:    # fail before any work on a missing checkpoint
        ctx.digest(m)
    main = dist.is_main_process()
    ctx.progress = progress and main
    units = [(a, m) for a in config.analyses for m in models]
    if "robustness" in config.analyses and config.baseline not in models:
        units.insert(0, ("robustness", config.baseline))
    results: dict = {a: {} for a in config.analyses}
    with Progress(len(units), desc="profile", unit="unit", enabled=ctx.progress) as bar:
        for i, (a, m) in enumerate(units):
            bar.write(f"profile [{i + 1}/{len(units)}] {ANALYSES[a].title}: {m}")
            results[a][m] = ANALYSES[a].run(ctx, m)
            bar.update(1)
    if not main:
        return None
    run = RunDir(out)
    table = {m: {} for m in models}
    for a in config.analyses:
        for m in models:
            table[m].update(ANALYSES[a].metrics(results[a][m]))
    mce_left_out = []
    if "robustness" in config.analyses:
        base = results["robustness"][config.baseline]
        for m in models:
            mce_left_out = add_corruption_errors(table[m], results["robustness"][m], base)
    corr = correlations(table, models) if len(models) >= 2 else {}
    timing = {m: {a: results[a][m].get("seconds") for a in config.analyses} for m in models}
    profile = {
        "models": models, "baseline": config.baseline, "data": dref.key(),
        "num_images": int(len(images)), "preset": preset_name or "custom",
        "command": command or f"lst-jax profile --models {' '.join(models)}"
                              + (f" --preset {preset_name}" if preset_name else ""),
        "config": _config_dict(config), "metrics": table, "correlations": corr,
        "mce_left_out": mce_left_out,
        "results": results, "timing_seconds": timing}
    figures = _figures(run, profile, results, config)
    from lst_jax.profile.report import write_report

    write_report(run, profile, figures)
    run.write_manifest(mode="profile", models=models, config=profile["config"],
                       preset=profile["preset"])
    return profile


def _config_dict(config: ProfileConfig) -> dict:
    return {"robustness": config.robustness.to_dict(), "lst": config.lst.to_dict(),
            "lst_metrics": config.lst_metrics, "iaside": config.iaside.to_dict(),
            "barrier": config.barrier.to_dict(), "detect": config.detect.to_dict(),
            "baseline": config.baseline, "analyses": list(config.analyses)}


def _figures(run: RunDir, profile: dict, results: dict, config: ProfileConfig) -> dict:
    from lst_jax.plots import profile as plots
    from lst_jax.plots.profile import plot_corruption_curves
    from lst_jax.profile.compare import UNIT_INTERVAL_METRICS
    from lst_jax.profile.report import metric_errors, scalar_metrics

    models, table = profile["models"], profile["metrics"]
    labels = {k: metric_label(k) for m in models for k in table[m]}
    errors = metric_errors(profile, run.root)

    def plot_metrics_against(*args, **kw):   # ± 1 SE bars; axes from 0 (to 1 where bounded)
        return plots.plot_metrics_against(*args, errors=errors,
                                          unit_interval=UNIT_INTERVAL_METRICS, **kw)
    geometry = [k for k in scalar_metrics(table, models) if k not in ROBUSTNESS_METRICS]
    figs = {}
    key = [k for k in KEY_METRICS if k in geometry]
    if "robustness" in results and key and len(models) >= 2:
        figs["Key signatures against PGD robust accuracy"] = plot_metrics_against(
            table, models, key, "robust_accuracy", run.path("figures/key_signatures.png"),
            labels=labels)
    if "robustness" in results:
        figs["Corruption accuracy"] = plot_corruption_curves(
            results["robustness"], models, run.path("figures/corruption_accuracy.png"))
        if geometry and len(models) >= 2:
            figs["Every geometry metric against PGD robust accuracy"] = plot_metrics_against(
                table, models, geometry, "robust_accuracy",
                run.path("figures/metrics_vs_robust_accuracy.png"), labels=labels)
            figs["Every geometry metric against mCE"] = plot_metrics_against(
                table, models, geometry, "mce", run.path("figures/metrics_vs_mce.png"),
                labels=labels)
    return figs


__all__ = ["profile_job", "validate_models"]
