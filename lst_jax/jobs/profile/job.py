"""`lst-jax profile`: every analysis on every model, cached per unit, one report."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Sequence

from lst_jax.data.reference import DataRef, check_data_shape, load_images, open_images
from lst_jax.jobs.profile.analyses import ANALYSES, ProfileContext
from lst_jax.jobs.profile.compare import (
    ROBUSTNESS_METRICS,
    add_corruption_errors,
    correlations,
    metric_label,
)
from lst_jax.jobs.profile.config import DEFAULT_BASELINE, ProfileConfig, data_suite, profile_preset
from lst_jax.jobs.rundir import RunDir
from lst_jax.parallel import distributed as dist
from lst_jax.utils.cliargs import data_options_argv
from lst_jax.utils.progress import Progress

# One signature per method for the report's first figure.
KEY_METRICS = ("hull_mean_conf", "star_min_conf", "lst_rmse", "iaside_score",
               "barrier_adv_max_median", "detect_auroc_optimization")
# The label set of the data kinds whose labels are known (folders and photos: the models').
DATA_LABEL_SETS = {"digits": "digits", "cifar10": "cifar10", "imagenet2012": "imagenet"}


def _label_set(spec) -> str:
    return spec.label_set or f"{spec.num_classes} unnamed classes"


def validate_models(models: Sequence[str], baseline: str | None = None, data=None) -> dict:
    """Checks the model list before any work: non-empty, no repeats, known models (registry
    names or checkpoint directories), one input shape and one label set (the baseline's
    too), and a label set that fits `data` (a `DataRef`) where the data's labels are known.

    Returns:
        dict: each given model (and the baseline) -> its `ModelRef`.

    Raises:
        ValueError: one line naming the models concerned.
    """
    from lst_jax.models.reference import resolve_model

    if not models:
        raise ValueError("profile needs at least one model (--models A [B ...])")
    dupes = sorted({str(m) for m in models if list(models).count(m) > 1})
    if dupes:
        raise ValueError(f"models are listed more than once: {dupes}")
    refs = {m: resolve_model(m) for m in list(models) + ([baseline] if baseline else [])}
    kinds = {(_label_set(r.spec), tuple(r.spec.input_size)) for r in refs.values()}
    if len(kinds) > 1:
        detail = ", ".join(f"{m}: label set {_label_set(r.spec)}, input "
                           f"{'x'.join(map(str, r.spec.input_size))}" for m, r in refs.items())
        raise ValueError(f"a profile compares models on the same data: these models (and the "
                         f"mCE baseline) differ in label set or input shape ({detail})")
    label_set = next(iter(kinds))[0]
    if data is not None:
        from lst_jax.data.reference import DataRef

        dref = DataRef.of(data)
        want = DATA_LABEL_SETS.get(dref.kind)
        if want is not None and label_set in DATA_LABEL_SETS.values() and label_set != want:
            raise ValueError(f"the models ({', '.join(map(str, refs))}) classify the "
                             f"{label_set} labels, but --data {dref.kind} has {want} labels")
    return refs


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
    dref = DataRef.of("digits" if data is None else data)
    lead = validate_models(models, None, dref)[models[0]]
    baseline = config.baseline
    if baseline is None or (isinstance(baseline, str) and baseline == DEFAULT_BASELINE
                            and lead.spec.label_set != "digits"):
        # the digits' baseline model on the digits, else the first model
        baseline = DEFAULT_BASELINE if lead.spec.label_set == "digits" else models[0]
    given = validate_models(models, baseline, dref)
    config = dataclasses.replace(config, baseline=baseline)
    # registry names or checkpoint directories -> the models' names (rows, cache keys)
    refs = {m: given[m] for m in list(models) + [config.baseline]}
    if len({refs[m].name for m in models}) != len(models):
        raise ValueError("two of the models have the same name: "
                         f"{[f'{m} -> {refs[m].name}' for m in models]}")
    by_name: dict = {}
    for r in refs.values():   # e.g. an in-memory model named like the registry baseline
        first = by_name.setdefault(r.name, r)
        if first is not r and first.digest() != r.digest():
            raise ValueError(f"two different models (other parameters) are named "
                             f"{r.name!r} among the models and the baseline; rename one")
    given_names = [m if isinstance(m, str) else refs[m].name for m in models]
    models = [refs[m].name for m in models]
    config = dataclasses.replace(config, baseline=refs[config.baseline].name)
    specs = {r.name: r.spec for r in refs.values()}
    shape = lead.spec.input_size
    check_data_shape(dref, shape)
    suite = data_suite(dref, shape)
    config = config.with_data(dref).for_suite(suite)
    out = Path(out or Path("runs") / "profile")
    # only the robustness analysis reads the images here (the first `num_images`); the
    # others read theirs from `data` themselves, so a large split is never loaded whole
    num_total = len(open_images(dref, shape))
    images, labels = load_images(dref, shape, limit=config.robustness.num_images) \
        if "robustness" in config.analyses else (None, None)
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
    radius = (config.robustness.headline_radius if "robustness" in config.analyses
              else None)
    profile = {
        "models": models, "baseline": config.baseline, "data": dref.key(),
        "data_description": dref.describe(), "split": dref.resolved_split(),
        "num_images": int(num_total),
        "images_per_analysis": images_per_analysis(results, models),
        "corruption_table": (config.robustness.table if "robustness" in config.analyses
                             else None),
        "pgd_radius": radius, "preset": preset_name or "custom",
        "command": command or " ".join(
            ["lst-jax profile --models", *given_names]
            + (["--preset", preset_name] if preset_name else [])
            + data_options_argv(dref)),
        "config": _config_dict(config), "metrics": table, "correlations": corr,
        "mce_left_out": mce_left_out,
        "results": results, "timing_seconds": timing}
    figures = _figures(run, profile, results, config)
    from lst_jax.jobs.profile.report import write_report

    write_report(run, profile, figures)
    run.write_manifest(mode="profile", models=models, config=profile["config"],
                       preset=profile["preset"])
    return profile


def images_per_analysis(results: dict, models) -> dict:
    """How many test images each analysis used (`Analysis.images`): analysis -> {what: count}
    where every profiled model used the same count, else {what: {model: count}}."""
    out = {}
    for a, by_model in results.items():
        counts = {m: ANALYSES[a].images(by_model[m]) for m in models}
        merged = {}
        for what in dict.fromkeys(k for c in counts.values() for k in c):
            per = {m: counts[m].get(what) for m in models}
            merged[what] = next(iter(per.values())) if len(set(per.values())) == 1 else per
        out[a] = merged
    return out


def _config_dict(config: ProfileConfig) -> dict:
    return {"robustness": config.robustness.to_dict(), "lst": config.lst.to_dict(),
            "lst_metrics": config.lst_metrics, "iaside": config.iaside.to_dict(),
            "barrier": config.barrier.to_dict(), "detect": config.detect.to_dict(),
            "baseline": config.baseline, "analyses": list(config.analyses)}


def _figures(run: RunDir, profile: dict, results: dict, config: ProfileConfig) -> dict:
    from lst_jax.jobs.profile.compare import UNIT_INTERVAL_METRICS
    from lst_jax.jobs.profile.report import metric_errors, scalar_metrics
    from lst_jax.plots import profile as plots
    from lst_jax.plots.profile import plot_corruption_curves

    models, table = profile["models"], profile["metrics"]
    labels = {k: metric_label(k, profile.get("pgd_radius")) for m in models for k in table[m]}
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


__all__ = ["profile_job", "validate_models", "images_per_analysis"]
