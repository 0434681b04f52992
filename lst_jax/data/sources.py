"""Random-access image sources: `len(src)`, `src.get(indices) -> (images, labels)`.

Every source returns float32 NHWC images in [0, 1] and int32 labels (-1 when unknown).
`open_source` builds one by name: the shipped digits, the scikit-image photos, a folder of
images, or a tensorflow-datasets data source (cifar10, imagenet2012) prepared by the user.
"""

from __future__ import annotations

from typing import Protocol, Sequence

import numpy as np

SOURCE_KINDS = ("digits", "photos", "folder", "cifar10", "imagenet2012")


class ImageSource(Protocol):
    name: str
    num_classes: int | None

    def __len__(self) -> int: ...

    def get(self, indices: Sequence[int]) -> tuple[np.ndarray, np.ndarray]: ...


def check_indices(indices, n: int, name: str) -> list[int]:
    """The indices as a flat list of ints, each in [0, n) (ValueError naming the source)."""
    idx = [int(i) for i in np.asarray(indices).reshape(-1)]
    bad = [i for i in idx if not 0 <= i < n]
    if bad:
        raise ValueError(f"indices {bad[:5]} out of range for {name} ({n} images)")
    return idx


def stack_images(images: Sequence[np.ndarray], what: str) -> np.ndarray:
    """uint8 RGB images of one size -> float32 NHWC in [0, 1] (`x / 255`).

    `what` names the images in the error raised when their sizes differ.

    Shape:
        n x (H, W, 3) uint8 -> (n, H, W, 3) float32; no images -> (0, 1, 1, 3).
    """
    from lst_jax.data.preprocess import uint8_to_float

    shapes = sorted({im.shape for im in images})
    if len(shapes) > 1:
        raise ValueError(f"{what} have different sizes {shapes[:4]}; pass an image size "
                         "(image_size, and resize) to crop them to one size")
    if not images:
        return np.zeros((0, 1, 1, 3), np.float32)
    return uint8_to_float(np.stack(images))


class ArraySource:
    """An in-memory source over (images, labels) arrays.

    Shape:
        images: (N, H, W, C) float32 in [0, 1]; labels: (N,) int.
    """

    def __init__(self, images, labels, name: str = "arrays", num_classes: int | None = None):
        images = np.asarray(images, np.float32)
        labels = np.asarray(labels, np.int32)
        if images.ndim != 4:
            raise ValueError(f"images must have shape (N, H, W, C), got {images.shape}")
        if labels.shape != (images.shape[0],):
            raise ValueError(f"labels must have shape ({images.shape[0]},), got {labels.shape}")
        self.images, self.labels, self.name, self.num_classes = images, labels, name, num_classes

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def get(self, indices):
        idx = np.asarray(indices, np.int64)
        return self.images[idx], self.labels[idx]


def open_source(kind: str, *, split: str | None = None, data_dir=None, folder=None,
                image_size: int | None = None, resize: int | None = None,
                interpolation: str = "bilinear", photos: Sequence[str] | None = None,
                class_index: dict | None = None, label: int | None = None) -> ImageSource:
    """An image source by name.

    Args:
        kind: "digits" (shipped; split default "test"), "photos" (scikit-image samples,
            labels -1), "folder" (`folder=` path), "cifar10" (tfds, split default "test"),
            "imagenet2012" (tfds, split default "validation", resize 256 + crop 224).
        data_dir: tensorflow-datasets data directory (default: tfds' own default).
        image_size, resize, interpolation: crop size, short-side resize and filter for
            photos / folder / ImageNet images.
        class_index, label: the classes of a folder's subfolders / of a flat folder.

    Most callers want `lst_jax.data.reference.open_images`, which shapes the source for a
    model and checks the options.
    """
    if kind == "digits":
        from lst_jax.data.digits import NUM_CLASSES, load_digits32

        x, y = load_digits32(split or "test")
        return ArraySource(x, y, name=f"digits-{split or 'test'}", num_classes=NUM_CLASSES)
    if kind == "photos":
        from lst_jax.data.photos import PHOTOS, load_photos, spline_order

        names = list(photos) if photos else list(PHOTOS)[:5]
        x, names = load_photos(names, size=image_size or 224, resize=resize or 256,
                               order=spline_order(interpolation))
        return ArraySource(x, np.full(len(x), -1, np.int32), name="photos")
    if kind == "folder":
        from lst_jax.data.folder import FolderSource

        if folder is None:
            raise ValueError("the folder source needs a directory (--folder DIR)")
        return FolderSource(folder, image_size=image_size, resize=resize,
                            interpolation=interpolation, class_index=class_index, label=label)
    if kind in ("cifar10", "imagenet2012"):
        from lst_jax.data.tfds import TfdsSource

        return TfdsSource(kind, split=split, data_dir=data_dir, image_size=image_size,
                          resize=resize, interpolation=interpolation)
    raise ValueError(f"unknown data source {kind!r}; choose one of {SOURCE_KINDS}")
