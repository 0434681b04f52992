"""A folder of images as a source.

Two layouts: class subfolders (`root/<class>/*.png`, classes = sorted subfolder names, as
torchvision's ImageFolder; labels are the positions in that order, or the integer names when
every subfolder is an integer) or a flat folder (labels -1: use the model's prediction).
Files are read with Pillow in sorted order; every image is converted to RGB.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lst_jax.data.preprocess import resize_center_crop_uint8
from lst_jax.data.sources import check_indices, stack_images

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm")


def _images_in(d: Path) -> list[Path]:
    return sorted(p for p in d.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


class FolderSource:
    """Images under `root`, optionally resized (short side) and centre-cropped.

    Without `image_size`/`resize` all images must already have the same size.

    Shape:
        get(indices) -> images (n, H, W, 3) float32 in [0, 1], labels (n,) int32.
    """

    def __init__(self, root, image_size: int | None = None, resize: int | None = None,
                 interpolation: str = "bilinear"):
        root = Path(root)
        if not root.exists():
            raise FileNotFoundError(f"image folder {root} does not exist")
        if not root.is_dir():
            raise ValueError(f"image folder {root} is not a directory")
        subdirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        files, labels = [], []
        if subdirs:
            names = [d.name for d in subdirs]
            numeric = all(n.isdigit() for n in names)
            self.classes = names
            for i, d in enumerate(subdirs):
                fs = _images_in(d)
                files += fs
                labels += [int(d.name) if numeric else i] * len(fs)
            self.num_classes = (max(int(n) for n in names) + 1) if numeric else len(names)
        else:
            files = _images_in(root)
            labels = [-1] * len(files)
            self.classes, self.num_classes = [], None
        if not files:
            raise ValueError(f"no image files ({', '.join(IMAGE_SUFFIXES)}) found in {root}")
        self.root, self.files = root, files
        self.labels = np.asarray(labels, np.int32)
        self.image_size, self.resize, self.interpolation = image_size, resize, interpolation
        self.name = f"folder:{root}"

    def __len__(self) -> int:
        return len(self.files)

    def _read(self, path: Path) -> np.ndarray:
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(path) as im:
                img = np.asarray(im.convert("RGB"))
        except (UnidentifiedImageError, OSError) as e:
            raise ValueError(f"cannot read image {path}: {e}") from e
        return resize_center_crop_uint8(img, self.image_size, self.resize, self.interpolation)

    def get(self, indices):
        idx = check_indices(indices, len(self), self.name)
        images = stack_images([self._read(self.files[i]) for i in idx], f"images in {self.root}")
        return images, self.labels[np.asarray(idx, np.int64)]
