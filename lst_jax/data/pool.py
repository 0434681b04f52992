"""Choosing images that a set of models classifies correctly and confidently."""

from __future__ import annotations

import functools
import io
import json
from pathlib import Path
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from lst_jax.utils.files import atomic_write_bytes, write_json_atomic


@functools.partial(jax.jit, static_argnames="model_fn")
def _logits(model_fn, params, x):
    return model_fn(params, x).astype(jnp.float32)


def predict_logits(model_fn, params, images: np.ndarray, batch: int = 256) -> np.ndarray:
    """Logits of `model_fn` on host images, in jitted batches (the last one padded, so one
    compiled program per model and batch size; compiled once per `model_fn` value).

    Shape:
        images: (N, H, W, C) -> (N, K) float32.
    """
    images = np.asarray(images, np.float32)
    size = min(batch, len(images))
    out = []
    for i in range(0, len(images), size):
        x = images[i:i + size]
        m = len(x)
        if m < size:
            x = np.concatenate([x, np.repeat(x[-1:], size - m, axis=0)])
        out.append(np.asarray(_logits(model_fn, params, x))[:m])
    return np.concatenate(out, axis=0)


def predict_probs(model_fn, params, images: np.ndarray, batch: int = 256) -> np.ndarray:
    """Softmax probabilities of `model_fn` on host images, in batches.

    Shape:
        images: (N, H, W, C) in [0, 1] -> (N, K) float32.
    """
    return np.asarray(jax.nn.softmax(predict_logits(model_fn, params, images, batch), axis=-1))


def qualifies(probs: np.ndarray, labels: np.ndarray, min_conf: float) -> np.ndarray:
    """The reference's target rule: predicted class == label and label confidence > min_conf.

    Shape:
        probs: (N, K), labels: (N,) -> (N,) bool.
    """
    conf = probs[np.arange(len(labels)), np.clip(labels, 0, None)]
    return (probs.argmax(-1) == labels) & (conf > min_conf)


def select_per_class(models: Sequence[tuple], images: np.ndarray, labels: np.ndarray,
                     classes: Sequence[int], min_conf: float = 0.6) -> np.ndarray:
    """Index of the first image of each class that every model classifies correctly with
    source-class confidence > `min_conf` (the reference's target-pool rule).

    Args:
        models: sequence of (model_fn, params).
        classes: the classes wanted, in the order of the returned indices.

    Returns:
        (len(classes),) int indices into `images`.

    Raises:
        ValueError: a class has no qualifying image (the message names the class).
    """
    ok = np.ones(len(images), bool)
    for model_fn, params in models:
        ok &= qualifies(predict_probs(model_fn, params, images), labels, min_conf)
    chosen, missing = [], []
    for c in classes:
        idx = np.flatnonzero(ok & (labels == c))
        if idx.size == 0:
            missing.append(int(c))
        else:
            chosen.append(int(idx[0]))
    if missing:
        raise ValueError(f"no image of class(es) {missing} is classified correctly with "
                         f"confidence > {min_conf} by every model")
    return np.asarray(chosen, np.int64)


# --------------------------------------------------------------------------------------------
# The target pool: one image per class, shared by every model of a comparison, stored as PNGs.

POOL_FORMAT = "lst_jax.target_pool/1"


class TargetPool:
    """One image per class, sorted by class (the full evaluation's sources and targets).

    Attributes:
        images: (N, H, W, C) float32 in [0, 1]; labels: (N,) int32, strictly increasing;
        source_index: (N,) int64 index of each image in its data source; meta: dict
        (dataset, selecting models, min_conf, ...).
    """

    def __init__(self, images, labels, source_index, meta: dict | None = None):
        images = np.asarray(images, np.float32)
        labels = np.asarray(labels, np.int32)
        source_index = np.asarray(source_index, np.int64)
        if images.ndim != 4 or labels.shape != (len(images),) or \
                source_index.shape != (len(images),):
            raise ValueError(f"pool arrays disagree: images {images.shape}, labels "
                             f"{labels.shape}, source_index {source_index.shape}")
        order = np.argsort(labels, kind="stable")
        images, labels, source_index = images[order], labels[order], source_index[order]
        if len(np.unique(labels)) != len(labels):
            raise ValueError("a target pool holds one image per class; got repeated classes "
                             f"{sorted(set(labels[np.flatnonzero(np.diff(labels) == 0)]))}")
        self.images, self.labels, self.source_index = images, labels, source_index
        self.meta = dict(meta or {})

    def __len__(self) -> int:
        return len(self.labels)

    def digest(self) -> str:
        """sha256 over the images (float32 bytes), labels and source indices."""
        import hashlib

        h = hashlib.sha256()
        for a in (self.images, self.labels, self.source_index):
            a = np.ascontiguousarray(a)
            h.update(str(a.shape).encode() + str(a.dtype).encode())
            h.update(a.tobytes())
        return h.hexdigest()


def build_target_pool(models: Sequence[tuple], source, classes: Sequence[int] | None = None,
                      *, min_conf: float = 0.6, batch: int = 256, order=None,
                      skip_missing: bool = False, progress: bool = False) -> TargetPool:
    """The first image of each class (in source order) that every model classifies correctly
    with confidence > `min_conf` (reference `get_targets`), streamed in batches.

    Args:
        models: sequence of (model_fn, params); the pool is shared by all of them.
        source: an `ImageSource` (see `lst_jax.data.sources`) with labels.
        classes: classes wanted (default: all `source.num_classes`).
        order: optional permutation of source indices to scan (default: natural order).
        skip_missing: leave out classes without a qualifying image (listed in
            `meta["missing_classes"]`) instead of raising.

    Raises:
        ValueError: a class has no qualifying image (named in the message; unless
        `skip_missing`), fewer than 2 images qualify with `skip_missing`, or no models.
    """
    from lst_jax.utils.progress import Progress

    if not models:
        raise ValueError("build_target_pool needs at least one (model_fn, params)")
    if classes is None:
        if getattr(source, "num_classes", None) is None:
            raise ValueError("the source has no class count; pass the classes explicitly")
        classes = range(source.num_classes)
    wanted = [int(c) for c in classes]
    if len(set(wanted)) != len(wanted):
        raise ValueError(f"classes must be distinct, got {wanted}")
    order = np.arange(len(source)) if order is None else np.asarray(order, np.int64)
    found: dict[int, tuple[int, np.ndarray]] = {}
    fns = [jax.jit(lambda p, x, f=f: jax.nn.softmax(f(p, x), -1)) for f, _ in models]
    with Progress(len(order), desc="target pool", unit="img", enabled=progress) as bar:
        for start in range(0, len(order), batch):
            idx = order[start:start + batch]
            images, labels = source.get(idx)
            rel = np.isin(labels, [c for c in wanted if c not in found])
            if rel.any():
                ok = rel.copy()
                for fn, (_, params) in zip(fns, models):
                    ok &= qualifies(np.asarray(fn(params, jnp.asarray(images))), labels,
                                    min_conf)
                for i in np.flatnonzero(ok):
                    c = int(labels[i])
                    if c not in found:
                        found[c] = (int(idx[i]), images[i])
            bar.update(len(idx))
            if len(found) == len(wanted):
                break
    missing = [c for c in wanted if c not in found]
    msg = (f"no image of class(es) {missing[:20]}{' ...' if len(missing) > 20 else ''} is "
           f"classified correctly with confidence > {min_conf} by every model")
    if missing and not skip_missing:
        raise ValueError(msg)
    got = [c for c in wanted if c in found]
    if len(got) < 2:
        raise ValueError(msg + f"; only {len(got)} class(es) qualify, a pool needs 2")
    return TargetPool(np.stack([found[c][1] for c in got]), got, [found[c][0] for c in got],
                      {"dataset": getattr(source, "name", "?"), "min_conf": min_conf,
                       "missing_classes": missing})


def pixel_scale(images: np.ndarray, max_level: int = 255) -> int:
    """The largest integer s <= 255 with `round(x * s) / s == x` exactly in float32 for all
    pixels (255 for 8-bit data, 240 for the digits' k/16 levels), so that 8-bit PNG values
    `round(x * s)` decode losslessly as `v / s`.

    Raises:
        ValueError: no such scale (the images are not on an 8-bit lattice).
    """
    x = np.asarray(images, np.float32)
    for s in range(max_level, 0, -1):
        v = np.round(x * np.float32(s))
        if v.min() >= 0 and v.max() <= max_level and \
                np.array_equal(v.astype(np.float32) / np.float32(s), x):
            return s
    raise ValueError("the pool images are not exactly representable as 8-bit PNG levels "
                     "(x = k / s for integers k <= s <= 255); quantise them first")


def save_pool(pool: TargetPool, directory, **meta) -> Path:
    """Writes the pool as lossless 8-bit PNGs `target_<class>.png` plus `manifest.json`.

    Pixel values are stored as `round(x * s)` with the scale s of `pixel_scale` (recorded in
    the manifest); `load_pool` decodes `v / s` and checks the digest, so the round trip is
    exact. Files are written atomically.
    """
    from PIL import Image

    root = Path(directory)
    s = pixel_scale(pool.images)
    width = max(4, len(str(int(pool.labels.max()))))
    files = []
    for img, c in zip(pool.images, pool.labels):
        v = np.round(img * np.float32(s)).astype(np.uint8)
        pil = Image.fromarray(v[..., 0] if v.shape[-1] == 1 else v)
        name = f"target_{int(c):0{width}d}.png"
        buf = io.BytesIO()
        pil.save(buf, format="PNG")
        atomic_write_bytes(root / name, lambda f, b=buf.getvalue(): f.write(b))
        files.append(name)
    manifest = {
        "format": POOL_FORMAT, "classes": pool.labels.tolist(), "files": files,
        "source_index": pool.source_index.tolist(), "pixel_scale": s,
        "image_shape": list(pool.images.shape[1:]), "digest": pool.digest(),
        **pool.meta, **meta,
    }
    write_json_atomic(root / "manifest.json", manifest)
    return root


def load_pool(directory) -> TargetPool:
    """Reads a pool written by `save_pool` (sorted by class; digest verified).

    Raises:
        FileNotFoundError: missing directory, manifest or PNG; ValueError: malformed manifest,
        wrong image size or a digest mismatch.
    """
    from PIL import Image

    directory = Path(directory)
    mf = directory / "manifest.json"
    if not directory.is_dir():
        raise FileNotFoundError(f"target pool directory {directory} does not exist (create "
                                "one with `lst-jax pool`)")
    if not mf.is_file():
        raise FileNotFoundError(f"{directory} is not a target pool: no manifest.json (create "
                                "one with `lst-jax pool`)")
    try:
        m = json.loads(mf.read_text())
        classes, files = list(m["classes"]), list(m["files"])
        index, s = list(m["source_index"]), int(m["pixel_scale"])
        shape = tuple(int(v) for v in m["image_shape"])
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"malformed target pool manifest {mf}: {e!r}") from e
    if m.get("format") != POOL_FORMAT or not (len(classes) == len(files) == len(index)) \
            or not 1 <= s <= 255 or len(shape) != 3:
        raise ValueError(f"malformed target pool manifest {mf} (format {m.get('format')!r})")
    images = []
    for f in files:
        p = directory / f
        if not p.is_file():
            raise FileNotFoundError(f"target pool image {p} listed in {mf} is missing")
        with Image.open(p) as im:
            v = np.asarray(im)
        if v.ndim == 2:
            v = v[..., None]
        if v.shape != shape:
            raise ValueError(f"{p} has shape {v.shape}, the manifest says {shape}")
        images.append(v.astype(np.float32) / np.float32(s))
    meta = {k: v for k, v in m.items() if k not in ("classes", "files", "source_index",
                                                     "pixel_scale", "image_shape", "digest",
                                                     "format")}
    pool = TargetPool(np.stack(images), classes, index, meta)
    if m.get("digest") and pool.digest() != m["digest"]:
        raise ValueError(f"target pool {directory} does not match its manifest digest (files "
                         "changed after it was written)")
    return pool
