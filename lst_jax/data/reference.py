"""One data reference for every command that reads images, and its one loader.

`DataRef` names the images (the `--data` options of every command, parsed once by
`lst_jax.utils.cliargs.add_data_options`); `open_images(ref, input_shape)` resolves it into an
image source shaped for a model's input, and `load_images` reads (a subset of) it into arrays.
Every job reads its images through these two functions:

- `digits` (shipped, 32x32x3; splits train / test / all) and `cifar10` (tfds, 32x32x3) have
  one size: a model of another input shape is refused;
- `photos` (scikit-image samples, no labels), `folder` (ImageFolder layout or a flat folder
  with `label`) and `imagenet2012` (tfds) are resized (short side) and centre-cropped to the
  model's input, torchvision style, with `interpolation`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Sequence

import numpy as np

DATA_KINDS = ("digits", "photos", "folder", "cifar10", "imagenet2012")
INTERPOLATIONS = ("bilinear", "bicubic")
DEFAULT_SPLITS = {"digits": "test", "cifar10": "test", "imagenet2012": "validation"}
FIXED_SHAPES = {"digits": (32, 32, 3), "cifar10": (32, 32, 3)}


@dataclasses.dataclass(frozen=True)
class DataRef:
    """Which images: the kind and where they are (every field a `--data` option).

    Attributes:
        kind: one of `DATA_KINDS`.
        folder: the image folder (kind "folder" only).
        data_dir: tensorflow-datasets data directory (cifar10, imagenet2012; default tfds').
        split: data split (default: `DEFAULT_SPLITS`; folders and photos have none).
        interpolation: resize filter of resized kinds ("bilinear" or "bicubic").
        class_index: JSON file {subfolder name: class} of an ImageFolder (kind "folder").
        label: the class of every image of a flat folder (kind "folder").
    """

    kind: str = "digits"
    folder: str | None = None
    data_dir: str | None = None
    split: str | None = None
    interpolation: str = "bilinear"
    class_index: str | None = None
    label: int | None = None

    def __post_init__(self):
        if self.kind not in DATA_KINDS:
            raise ValueError(f"--data must be one of {', '.join(DATA_KINDS)}, got {self.kind!r}")
        for f in ("folder", "data_dir", "class_index"):
            v = getattr(self, f)
            if v is not None:
                object.__setattr__(self, f, str(v))
        if self.kind == "folder" and not self.folder:
            raise ValueError("--data folder needs --folder DIR (an ImageFolder with one "
                             "subfolder per class, or a flat folder with --label INT)")
        if self.kind != "folder":
            given = [flag for flag, v in (("--folder", self.folder),
                                          ("--class-index", self.class_index),
                                          ("--label", self.label)) if v is not None]
            if given:
                raise ValueError(f"{', '.join(given)} only apply to --data folder, not "
                                 f"--data {self.kind}")
        if self.data_dir is not None and self.kind not in ("cifar10", "imagenet2012"):
            raise ValueError(f"--data-dir is the tensorflow-datasets directory of --data "
                             f"cifar10 / imagenet2012, not of --data {self.kind}")
        if self.split is not None and self.kind not in DEFAULT_SPLITS:
            raise ValueError(f"--split applies to --data {', '.join(DEFAULT_SPLITS)}; "
                             f"--data {self.kind} has no splits")
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"--interpolation must be one of {', '.join(INTERPOLATIONS)}, "
                             f"got {self.interpolation!r}")
        if self.label is not None and (isinstance(self.label, bool) or not isinstance(
                self.label, (int, np.integer)) or self.label < 0):
            raise ValueError(f"--label must be a class index >= 0, got {self.label!r}")
        if self.class_index is not None and self.label is not None:
            raise ValueError("--class-index (class subfolders) and --label (a flat folder) "
                             "exclude each other; give one")

    @classmethod
    def of(cls, data="digits", **fields) -> "DataRef":
        """`data` as a `DataRef`: a DataRef (fields given here must not differ from it) or
        a kind name completed by `fields` (None values are left at their defaults)."""
        fields = {k: v for k, v in fields.items() if v is not None}
        if isinstance(data, DataRef):
            clash = {k: v for k, v in fields.items() if getattr(data, k) != v}
            if clash:
                raise ValueError(f"data is a DataRef ({data.describe()}); do not also pass "
                                 f"{sorted(clash)} that differ from it")
            return data
        return cls(kind=data, **fields)

    def resolved_split(self) -> str | None:
        """The split read: the given one, else the kind's default (None: no splits)."""
        return self.split or DEFAULT_SPLITS.get(self.kind)

    def key(self):
        """What identifies the images in a cache key: the kind alone when nothing else is
        set (so the digits keys stay those of earlier versions), else every set field."""
        extra = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                 if f.name != "kind" and getattr(self, f.name) != f.default}
        if not extra:
            return self.kind
        if self.folder is not None:
            extra["folder"] = str(Path(self.folder).resolve())
        return {"kind": self.kind, **extra}

    def describe(self) -> str:
        """A short human name: `digits`, `cifar10/train`, `folder DIR`."""
        if self.kind == "folder":
            return f"folder {self.folder}"
        split = self.split
        return self.kind + (f"/{split}" if split else "")


def check_input_shape(input_shape) -> tuple[int, int, int]:
    shape = tuple(int(s) for s in input_shape)
    if len(shape) != 3 or shape[2] != 3 or min(shape) < 1:
        raise ValueError(f"the model's input shape must be (H, W, 3), got {shape}")
    return shape


def check_data_shape(ref: DataRef, input_shape) -> tuple[int, int, int]:
    """Refuses, before any image is read, data that cannot have the model's `input_shape`:
    the fixed-size kinds (digits, cifar10: 32x32x3) at another size, a non-square input for
    the resized kinds. Returns the shape as (H, W, 3)."""
    if not isinstance(ref, DataRef):
        raise ValueError(f"data must be a DataRef, got {type(ref).__name__}")
    h, w, _ = check_input_shape(input_shape)
    fixed = FIXED_SHAPES.get(ref.kind)
    if fixed is not None and fixed != (h, w, 3):
        raise ValueError(f"the {ref.kind} images are {'x'.join(map(str, fixed))} but the model "
                         f"expects {h}x{w}x3; use a model of that input size or resized data "
                         "(--data folder / imagenet2012 / photos)")
    if fixed is None and h != w:
        raise ValueError(f"--data {ref.kind} is resized and centre-cropped to a square; the "
                         f"model expects {h}x{w}")
    return h, w, 3


def open_images(ref: DataRef, input_shape, *, split: str | None = None,
                resize: int | None = None, labelled: bool = True):
    """The image source of `ref` shaped for a model of `input_shape`.

    Args:
        input_shape: the model's (H, W, 3); images of resized kinds are cut to it.
        split: overrides `ref.split` (kinds with splits only).
        resize: short side before the centre crop (default: H for folders and photos,
            round(H * 256 / 224) for ImageNet, 256 at 224 as torchvision).
        labelled: refuse images without classes (photos, a flat folder without `label`).

    Returns:
        an `ImageSource` (`lst_jax.data.sources`); `get(idx)` -> ((n, H, W, 3) float32 in
        [0, 1], (n,) int32 labels, -1 = unknown).

    Raises:
        ValueError: the data's shape differs from `input_shape`, or unlabelled data where
        labels are needed (before any image is read).
    """
    from lst_jax.data.folder import read_class_index
    from lst_jax.data.sources import open_source

    h, w, _ = check_data_shape(ref, input_shape)
    if split is not None:
        ref = dataclasses.replace(ref, split=split)
    if ref.kind == "photos" and labelled:
        raise ValueError("--data photos carries no class labels; this command needs "
                         "labelled images (digits, cifar10, imagenet2012, or a folder "
                         "with class subfolders or --label)")
    resized = ref.kind not in FIXED_SHAPES
    if resized and resize is None:
        resize = round(h * 256 / 224) if ref.kind == "imagenet2012" else h
    source = open_source(
        ref.kind, split=ref.resolved_split(), data_dir=ref.data_dir, folder=ref.folder,
        image_size=h if resized else None, resize=resize if resized else None,
        interpolation=ref.interpolation,
        class_index=read_class_index(ref.class_index) if ref.class_index else None,
        label=ref.label)
    if labelled and getattr(source, "flat", False) and ref.label is None:
        raise ValueError(f"--folder {ref.folder} holds images but no class subfolders; this "
                         "command needs labels: pass --label INT (the class of every image), "
                         "or put each class's images in FOLDER/<class>/")
    return source


def first_per_class(labels: np.ndarray, per_class: int,
                    classes: Sequence[int] | None = None) -> np.ndarray:
    """Indices of the first `per_class` images of each class (of `classes`, default all), in
    source order.

    Shape:
        labels: (N,) -> (n,) int64 ascending.
    """
    labels = np.asarray(labels)
    wanted = np.unique(labels[labels >= 0]) if classes is None else np.asarray(classes)
    keep = [np.flatnonzero(labels == c)[:per_class] for c in wanted]
    return np.sort(np.concatenate(keep + [np.zeros(0, np.int64)])).astype(np.int64)


def source_labels(source, batch: int = 256) -> np.ndarray:
    """Every label of `source` (an attribute of array and folder sources; read in batches
    otherwise, e.g. tfds).

    Shape:
        -> (len(source),) int32.
    """
    labels = getattr(source, "labels", None)
    if labels is not None:
        return np.asarray(labels, np.int32)
    n = len(source)
    return np.concatenate([source.get(np.arange(s, min(s + batch, n)))[1]
                           for s in range(0, n, batch)] + [np.zeros(0, np.int32)])


def load_images(ref: DataRef, input_shape, *, split: str | None = None,
                limit: int | None = None, per_class: int | None = None,
                classes: Sequence[int] | None = None, resize: int | None = None,
                labelled: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """The images of `ref` (see `open_images`) as arrays: all of them, the first `limit`, or
    the first `per_class` of each class (of `classes`, default all), in source order.

    Shape:
        -> images (n, H, W, 3) float32 in [0, 1], labels (n,) int32.
    """
    source = open_images(ref, input_shape, split=split, resize=resize, labelled=labelled)
    n = len(source)
    if per_class is not None:
        index = first_per_class(source_labels(source), per_class, classes)
    else:
        index = np.arange(n if limit is None else min(int(limit), n))
        if classes is not None:
            labels = source_labels(source)[index]
            index = index[np.isin(labels, np.asarray(classes))]
    images, labels = source.get(index)
    if len(images) and tuple(images.shape[1:]) != tuple(input_shape):
        raise ValueError(f"the {ref.describe()} images are {tuple(images.shape[1:])} but the "
                         f"model expects {tuple(input_shape)}")
    return images, labels
