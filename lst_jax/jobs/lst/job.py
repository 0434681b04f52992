"""Jobs behind the CLI commands: load model and data, run, write the run directory."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from lst_jax.data.photos import PHOTOS, load_photos_for
from lst_jax.data.pool import (
    build_target_pool,
    load_pool,
    predict_probs,
    save_pool,
    select_per_class,
)
from lst_jax.data.reference import DataRef, check_data_shape, load_images, open_images
from lst_jax.jobs.lst.examples import (
    WidthSettings,
    examples_geometry,
    run_examples,
    write_examples,
    write_geometry,
)
from lst_jax.jobs.rundir import RunDir
from lst_jax.models.reference import resolve_model
from lst_jax.models.registry import DEFAULT_MODEL
from lst_jax.traversal import LSTConfig, preset

DATA_SOURCES = ("digits", "photos", "folder", "cifar10", "imagenet2012", "pool")
# The reference's default example classes for ImageNet (goose, Scottish terrier, meerkat,
# academic gown, cleaver).
IMAGENET_EXAMPLE_CLASSES = (99, 199, 299, 400, 499)


def _data_ref(data, *, data_dir=None, folder=None, split=None, interpolation=None):
    """`data` (a `DataRef` or a kind name) with the legacy keyword options folded in."""
    return DataRef.of(data, data_dir=data_dir, folder=folder, split=split,
                      interpolation=interpolation)


def _check_shape(spec, images, what: str):
    if tuple(images.shape[1:]) != tuple(spec.input_size):
        raise ValueError(f"{what} images are {images.shape[1:]} but {spec.name} expects "
                         f"{tuple(spec.input_size)}")


def examples_data(loaded, data, k: int, classes: Sequence[int] | None = None,
                  photos: Sequence[str] | None = None, *, pool=None):
    """The K example images, their labels and display names for a loaded model.

    Args:
        data: "pool" (with `pool`, a directory of `lst-jax pool`) or a `DataRef`.
    """
    spec = loaded.spec
    if isinstance(data, DataRef) and data.kind == "digits":
        images, labels = load_images(data, spec.input_size)
        classes = list(classes) if classes else list(range(k))
        idx = select_per_class([(loaded.model_fn, loaded.params)], images, labels, classes)
        return images[idx], labels[idx], [f"digit {c}" for c in classes]
    if isinstance(data, DataRef) and data.kind == "photos":
        names = list(photos) if photos else list(PHOTOS)[:k]
        images, names = load_photos_for(spec, names)    # the model's own resize filter
        # The photos carry no ImageNet labels: the held class is the model's prediction.
        labels = predict_probs(loaded.model_fn, loaded.params, images).argmax(-1).astype(np.int32)
        return images, labels, names
    if data == "pool":
        if pool is None:
            raise ValueError("--data pool needs --pool DIR (a directory written by "
                             "`lst-jax pool`)")
        p = load_pool(pool)
        _check_shape(spec, p.images, f"pool {pool}")
        sel = np.arange(len(p))[:k] if not classes else np.asarray(
            [int(np.flatnonzero(p.labels == c)[0]) if np.any(p.labels == c) else -1
             for c in classes])
        if np.any(sel < 0):
            raise ValueError(f"classes {[c for c, s in zip(classes, sel) if s < 0]} are not in "
                             f"the pool {pool}")
        return p.images[sel], p.labels[sel], [f"class {c}" for c in p.labels[sel]]
    if not isinstance(data, DataRef):
        raise ValueError(f"unknown data source {data!r}; choose one of {DATA_SOURCES}")
    # the resize filter is bilinear for every model unless --interpolation says otherwise, as
    # in the reference (its DeiT-S AT model was trained with bicubic; spec/lst.md 6 #15)
    source = open_images(data, spec.input_size, resize=spec.resize, labelled=False)
    if data.kind == "folder" and source.flat and data.label is None:
        images, _ = source.get(np.arange(min(k, len(source))))
        _check_shape(spec, images, f"folder {data.folder}")
        labels = predict_probs(loaded.model_fn, loaded.params, images).argmax(-1)
        return images, labels.astype(np.int32), [p.stem for p in source.files[:k]]
    if not classes:
        classes = (IMAGENET_EXAMPLE_CLASSES[:k] if data.kind == "imagenet2012" and k <= 5
                   else range(k))
    p = build_target_pool([(loaded.model_fn, loaded.params)], source, list(classes))
    _check_shape(spec, p.images, data.describe())
    return p.images, p.labels, [f"class {c}" for c in p.labels]


def check_examples_options(spec, data: str, k: int, classes=None, photos=None, *,
                           plane_source: int = 0, plane_grid: int = 10,
                           path_points: int = 21) -> None:
    """Refuses, before any model is loaded, examples options that the data or the figures
    cannot satisfy (each message names the option and its valid range)."""
    from lst_jax.geometry.paths import path_points as make_t

    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 2:
        raise ValueError(f"--k must be an integer >= 2, got {k!r}")
    if isinstance(data, DataRef):
        check_data_shape(data, spec.input_size)
        data = data.kind
    if data not in DATA_SOURCES:
        raise ValueError(f"unknown data source {data!r}; choose one of {DATA_SOURCES}")
    n = len(classes) if classes else len(photos) if data == "photos" and photos else k
    if data != "photos" and data != "folder":
        c = spec.num_classes
        bad = [int(x) for x in classes or () if not 0 <= int(x) < c]
        if bad:
            raise ValueError(f"--classes must lie in 0..{c - 1} ({spec.name} has {c} "
                             f"classes), got {bad}")
        if not classes and data == "digits" and k > c:
            raise ValueError(f"--k must be at most {c} with --data digits (one image per "
                             f"class 0..{c - 1}), got {k}")
    if isinstance(plane_source, bool) or not isinstance(plane_source, (int, np.integer)) \
            or not 0 <= plane_source < n:
        raise ValueError(f"--plane-source must be an image index in 0..{n - 1} (K = {n} "
                         f"images), got {plane_source!r}")
    if isinstance(plane_grid, bool) or not isinstance(plane_grid, (int, np.integer)) \
            or plane_grid < 1:
        raise ValueError(f"--plane-grid must be an integer >= 1 (divisions per triangle "
                         f"edge), got {plane_grid!r}")
    try:
        make_t(path_points)
    except ValueError:
        raise ValueError(f"--path-points must be an integer >= 2 (the two endpoints and "
                         f"those between), got {path_points!r}") from None


def examples_job(model: str = DEFAULT_MODEL, data="digits", k: int = 5,
                 config: LSTConfig | None = None, seed: int = 0, out=None,
                 classes: Sequence[int] | None = None, photos: Sequence[str] | None = None,
                 checkpoint=None, progress: bool = True, widths: WidthSettings | None = None,
                 plane_grid: int = 10, path_points: int = 21, data_dir=None, folder=None,
                 pool=None, interpolation: str | None = None, plane_source: int = 0,
                 compute_dtype=None, mesh="auto") -> Path:
    """The main job: K x K LST examples grid for a model (a registry name, a checkpoint
    directory or an in-memory model, `resolve_model`); returns the run dir.

    `mesh` ("auto", "on", "off" or a Mesh, as in `full_evaluation`): with several devices the
    K(K-1) traversals and the geometry probes are split over them (same numbers).

    Also writes the triangle planes (`figures/plane_src-0.png`), the star paths
    (`figures/star_paths.png`) and, with `widths`, the path-width surfaces
    (`figures/path_widths.png`), with their arrays in `geometry.npz`.
    """
    config = config or preset("paper")
    ref = resolve_model(model, checkpoint)
    model = ref.name
    if data != "pool":
        data = _data_ref(data, data_dir=data_dir, folder=folder, interpolation=interpolation)
    kind = data if data == "pool" else data.kind
    check_examples_options(ref.spec, data, k, classes, photos, plane_source=plane_source,
                           plane_grid=plane_grid, path_points=path_points)
    loaded = ref.load(compute_dtype)
    images, labels, names = examples_data(loaded, data, k, classes, photos, pool=pool)
    run = RunDir(out or Path("runs") / f"examples_{model}_{kind}")
    run.write_manifest(mode="examples", model=model,
                       data=data if data == "pool" else data.key(), k=len(images), seed=seed,
                       config=config.to_dict(), names=names, labels=labels.tolist(),
                       model_spec=loaded.spec, checkpoint_digest=loaded.metadata.get("digest"),
                       widths=widths, plane_grid=plane_grid, path_points=path_points,
                       plane_source=plane_source,
                       compute_dtype=str(jnp.dtype(getattr(loaded.model_fn, "compute_dtype",
                                                           None) or jnp.float32)))
    from lst_jax.jobs.lst.full_eval import resolve_mesh
    from lst_jax.parallel import ShardedEvaluator

    mesh = resolve_mesh(mesh)
    key, wkey = jax.random.split(jax.random.key(seed))
    result = run_examples(loaded.model_fn, loaded.params, images, labels, config, key,
                          progress=progress, log_images=widths is not None, mesh=mesh)
    title = (f"{model}: LST eta={config.step_size:g}, {config.iters} it, "
             f"delta={config.pthresh:g}" + (f", eps={config.adv_step_size:g}"
                                            if config.adv_pert else ""))
    summary = write_examples(run, result, names, title)
    geo = examples_geometry(loaded.model_fn, loaded.params, images, labels, result, config,
                            wkey, plane_source=plane_source, plane_grid=plane_grid,
                            path_points=path_points, widths=widths, progress=progress,
                            evaluate_fn=None if mesh is None else ShardedEvaluator(mesh))
    summary["geometry"] = write_geometry(run, geo, images, result, names, model)
    run.write_json("summary.json", summary)
    return run.root


def pool_job(models: Sequence[str], data="digits", out=None,
             classes: Sequence[int] | None = None, min_conf: float = 0.6, data_dir=None,
             folder=None, split: str | None = None, checkpoint=None,
             progress: bool = True, interpolation: str | None = None,
             scan_seed: int | None = None, preloaded: dict | None = None) -> Path:
    """Builds the target pool shared by `models` (registry names, checkpoint directories or
    in-memory models, `resolve_model`) and writes it as PNGs + manifest.

    Without explicit `classes` every class of the data is wanted and classes without a
    qualifying image are skipped (listed in the manifest); with `classes` a missing class is
    an error. `scan_seed` scans the data in a seeded random order (the reference scanned a
    random permutation of the ImageNet validation set) instead of the natural order.
    `preloaded` maps model names to `LoadedModel`s the caller already restored (float32);
    the other models are restored here.
    """
    if not models:
        raise ValueError("pool needs at least one --models entry")
    data = _data_ref(data, data_dir=data_dir, folder=folder, split=split,
                     interpolation=interpolation)
    preloaded = preloaded or {}
    refs = {m: resolve_model(m, checkpoint) for m in models if m not in preloaded}
    specs = [preloaded[m].spec if m in preloaded else refs[m].spec for m in models]
    sizes = {tuple(s.input_size) for s in specs}
    if len(sizes) > 1:
        raise ValueError(f"the pool models expect different input sizes {sorted(sizes)}")
    # the data checked (shape, labels, files) before any model is loaded
    source = open_images(data, specs[0].input_size, resize=specs[0].resize)
    loaded = [preloaded[m] if m in preloaded else refs[m].load() for m in models]
    models = [m.spec.name for m in loaded]
    order = None if scan_seed is None else np.random.default_rng(scan_seed).permutation(
        len(source))
    pool = build_target_pool([(m.model_fn, m.params) for m in loaded], source, classes,
                             min_conf=min_conf, progress=progress, order=order,
                             skip_missing=classes is None)
    _check_shape(loaded[0].spec, pool.images, data.describe())
    out = Path(out or Path("runs") / f"pool_{data.kind}")
    run = RunDir(out)                   # one writer at a time (the directory's lock)
    return save_pool(pool, run.root, models=list(models), min_conf=min_conf, dataset=source.name,
                     checkpoint_digests=[m.metadata.get("digest") for m in loaded],
                     interpolation=data.interpolation, scan_seed=scan_seed)


def _pool_on_every_process(load):
    """Process 0 runs `load()` (reads or builds the pool on its disk); its images and labels
    are broadcast to the other processes, so only process 0 needs the files."""
    from lst_jax.data.pool import TargetPool
    from lst_jax.parallel import distributed as dist

    main = dist.is_main_process()
    pool = dist.on_main(load)
    if jax.process_count() == 1:
        return pool
    shape = np.zeros(4, np.int32)
    if main:
        shape[:] = pool.images.shape
    n, h, w, c = (int(v) for v in dist.broadcast_from_main(shape))
    arrays = ((pool.images, pool.labels, pool.source_index.astype(np.int32)) if main else
              (np.zeros((n, h, w, c), np.float32), np.zeros(n, np.int32),
               np.zeros(n, np.int32)))
    images, labels, index = dist.broadcast_arrays_from_main(arrays)
    return pool if main else TargetPool(images, labels, index, {})


def full_eval_job(model: str = DEFAULT_MODEL, pool=None, config=None, out=None, *,
                  metrics: str = "all", checkpoint=None, progress: bool = True,
                  data="digits", pool_models: Sequence[str] | None = None,
                  data_dir=None, folder=None, interpolation: str | None = None,
                  mesh="auto", memory_budget=None, compute_dtype=None):
    """Full evaluation of a model (registry name, checkpoint directory or in-memory model,
    `resolve_model`) on a target pool; returns the FullEvalResult (None on processes other
    than 0 of a multi-process run).

    Without `pool`, the pool is built from `data` with `pool_models` (default: the model
    itself) into `<out>/pool` first (or reused from there). Multi-process: only process 0
    reads the pool and writes `out`; `mesh`, `memory_budget` as in `full_evaluation`.
    """
    from lst_jax.jobs.lst.full_eval import FullEvalConfig, basic_distance_fn, full_evaluation

    config = config or FullEvalConfig()
    if metrics not in ("all", "basic", "none"):
        raise ValueError(f"metrics must be 'all', 'basic' or 'none', got {metrics!r}")
    ref = resolve_model(model, checkpoint)
    model = ref.name
    out = Path(out or Path("runs") / f"full_eval_{model}")
    data = _data_ref(data, data_dir=data_dir, folder=folder, interpolation=interpolation)
    pool_dir = Path(pool) if pool is not None else out / "pool"
    if pool is None and not (pool_dir / "manifest.json").is_file():
        spec = ref.spec                             # data checked before the model is loaded
        open_images(data, spec.input_size, resize=spec.resize)
    loaded = ref.load(compute_dtype)

    def load():
        if pool is None and not (pool_dir / "manifest.json").is_file():
            # The pool is selected in float32 whatever the evaluation's compute dtype; the
            # restored parameters are reused, not restored a second time.
            f32 = loaded if getattr(loaded.model_fn, "compute_dtype", None) is None else \
                dataclasses.replace(loaded, model_fn=dataclasses.replace(loaded.model_fn,
                                                                         compute_dtype=None))
            pool_job(list(pool_models or [ref.ref]), data, pool_dir, checkpoint=checkpoint,
                     progress=progress, preloaded={ref.ref: f32})
        p = load_pool(pool_dir)
        _check_shape(loaded.spec, p.images, f"pool {pool_dir}")
        return p

    target_pool = _pool_on_every_process(load)
    if metrics == "none":
        config = dataclasses.replace(config, distances=False)
    return full_evaluation(
        loaded.model_fn, loaded.params, target_pool, config, out, model_name=model,
        distance_fn=basic_distance_fn if metrics == "basic" else None, progress=progress,
        extra_manifest={"pool_dir": str(pool_dir), "model_spec": loaded.spec,
                        "checkpoint_digest": loaded.metadata.get("digest")},
        mesh=mesh, memory_budget=memory_budget)
