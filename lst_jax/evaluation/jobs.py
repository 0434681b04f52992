"""Jobs behind the CLI commands: load model and data, run, write the run directory."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import jax
import numpy as np

from lst_jax.data.digits import load_digits32
from lst_jax.data.photos import PHOTOS, load_photos
from lst_jax.data.pool import predict_probs, select_per_class
from lst_jax.evaluation.examples import run_examples, write_examples
from lst_jax.evaluation.rundir import RunDir
from lst_jax.models.registry import DEFAULT_MODEL, load_model
from lst_jax.traversal import LSTConfig, preset

DATA_SOURCES = ("digits", "photos")


def examples_data(loaded, data: str, k: int, classes: Sequence[int] | None = None,
                  photos: Sequence[str] | None = None):
    """The K example images, their labels and display names for a loaded model."""
    spec = loaded.spec
    if data == "digits":
        if tuple(spec.input_size) != (32, 32, 3):
            raise ValueError(f"the digits data are 32x32x3 but {spec.name} expects "
                             f"{spec.input_size}; use --data photos for ImageNet-size models")
        images, labels = load_digits32("test")
        classes = list(classes) if classes else list(range(k))
        idx = select_per_class([(loaded.model_fn, loaded.params)], images, labels, classes)
        return images[idx], labels[idx], [f"digit {c}" for c in classes]
    if data == "photos":
        names = list(photos) if photos else list(PHOTOS)[:k]
        h, w, _ = spec.input_size
        order = 3 if spec.interpolation == "bicubic" else 1
        images, names = load_photos(names, size=h, resize=spec.resize or h, order=order)
        # The photos carry no ImageNet labels: the held class is the model's prediction.
        labels = predict_probs(loaded.model_fn, loaded.params, images).argmax(-1).astype(np.int32)
        return images, labels, names
    raise ValueError(f"unknown data source {data!r}; choose one of {DATA_SOURCES}")


def examples_job(model: str = DEFAULT_MODEL, data: str = "digits", k: int = 5,
                 config: LSTConfig | None = None, seed: int = 0, out=None,
                 classes: Sequence[int] | None = None, photos: Sequence[str] | None = None,
                 checkpoint=None, progress: bool = True) -> Path:
    """The main job: K x K LST examples grid for a registry model; returns the run dir."""
    config = config or preset("paper")
    if k < 2:
        raise ValueError(f"k must be at least 2, got {k}")
    loaded = load_model(model, checkpoint)
    images, labels, names = examples_data(loaded, data, k, classes, photos)
    run = RunDir(out or Path("runs") / f"examples_{model}_{data}")
    run.write_manifest(mode="examples", model=model, data=data, k=len(images), seed=seed,
                       config=config.to_dict(), names=names, labels=labels.tolist(),
                       model_spec=loaded.spec, checkpoint_digest=loaded.metadata.get("digest"))
    result = run_examples(loaded.model_fn, loaded.params, images, labels, config,
                          jax.random.key(seed), progress=progress)
    title = (f"{model}: LST eta={config.step_size:g}, {config.iters} it, "
             f"delta={config.pthresh:g}" + (f", eps={config.adv_step_size:g}"
                                            if config.adv_pert else ""))
    write_examples(run, result, names, title)
    return run.root
