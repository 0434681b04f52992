"""A folder of images as a source.

Two layouts, as torchvision's ImageFolder:

- class subfolders (`root/<class>/*.png`): the class of a subfolder is its position in the
  sorted subfolder names, its integer name when every subfolder is an integer, or its entry in
  a class index (`class_index`: name -> class, e.g. ImageNet's wnid -> index; a subfolder
  missing from it is refused, naming it);
- a flat folder (`root/*.png`): every image has the class `label`, or -1 (unknown; commands
  that need labels refuse it) without one.

Files are read with Pillow in sorted order; every image is converted to RGB. Hidden files
(`.name`) are skipped; any other file whose suffix is not an image's is refused, naming it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from lst_jax.data.preprocess import resize_center_crop_uint8
from lst_jax.data.sources import check_indices, stack_images

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm")


def _images_in(d: Path) -> list[Path]:
    files = sorted(p for p in d.iterdir() if p.is_file() and not p.name.startswith("."))
    for p in files:
        if p.suffix.lower() not in IMAGE_SUFFIXES:
            raise ValueError(f"{p} is not an image file (suffixes {' '.join(IMAGE_SUFFIXES)}): "
                             "remove it or move it out of the image folder")
    return files


def read_class_index(path) -> dict[str, int]:
    """A class-index JSON as {folder name: class}: either {"n01440764": 0, ...} or
    torchvision's imagenet_class_index.json {"0": ["n01440764", "tench"], ...}."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"--class-index {path} does not exist") from None
    except (OSError, ValueError) as e:
        raise ValueError(f"--class-index {path} is not a JSON file: {e}") from None
    if not isinstance(raw, dict) or not raw:
        raise ValueError(f"--class-index {path} must hold a JSON object name -> class index")
    try:
        if all(isinstance(v, list) and v for v in raw.values()):      # index -> [name, ...]
            table = {str(v[0]): int(k) for k, v in raw.items()}
        else:
            table = {str(k): int(v) for k, v in raw.items()}
    except (TypeError, ValueError):
        raise ValueError(f"--class-index {path} must map folder names to integer classes "
                         "(or, as torchvision's imagenet_class_index.json, classes to "
                         "[name, ...])") from None
    if min(table.values()) < 0:
        raise ValueError(f"--class-index {path} holds a negative class")
    return table


class FolderSource:
    """Images under `root`, optionally resized (short side) and centre-cropped.

    Without `image_size`/`resize` all images must already have the same size.

    Args:
        class_index: {subfolder name: class} for class subfolders (default: sorted names, or
            the integer names).
        label: the class of every image of a flat folder (default: -1, unknown).

    Shape:
        get(indices) -> images (n, H, W, 3) float32 in [0, 1], labels (n,) int32.
    """

    def __init__(self, root, image_size: int | None = None, resize: int | None = None,
                 interpolation: str = "bilinear", class_index: dict | None = None,
                 label: int | None = None):
        root = Path(root)
        if not root.exists():
            raise FileNotFoundError(f"image folder {root} does not exist")
        if not root.is_dir():
            raise ValueError(f"image folder {root} is not a directory")
        subdirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        files, labels = [], []
        if subdirs:
            if label is not None:
                raise ValueError(f"--label is for a flat folder, but {root} has class "
                                 f"subfolders ({subdirs[0].name}, ...); drop --label (or give "
                                 "--class-index)")
            names = [d.name for d in subdirs]
            if class_index is not None:
                missing = [n for n in names if n not in class_index]
                if missing:
                    raise ValueError(f"class subfolder {root / missing[0]} is not in the "
                                     f"--class-index ({len(missing)} of {len(names)} "
                                     f"subfolders missing: {', '.join(missing[:5])})")
                classes = [int(class_index[n]) for n in names]
                self.num_classes = max(max(class_index.values()) + 1, max(classes) + 1)
            elif all(n.isdigit() for n in names):
                classes = [int(n) for n in names]
                self.num_classes = max(classes) + 1
            else:
                classes = list(range(len(names)))
                self.num_classes = len(names)
            self.classes = names
            for c, d in zip(classes, subdirs):
                fs = _images_in(d)
                files += fs
                labels += [c] * len(fs)
        else:
            if class_index is not None:
                raise ValueError(f"--class-index is for class subfolders, but {root} has none; "
                                 "give the class of its images with --label INT")
            files = _images_in(root)
            labels = [-1 if label is None else int(label)] * len(files)
            self.classes = []
            self.num_classes = None if label is None else int(label) + 1
        if not files:
            raise ValueError(f"no image files ({', '.join(IMAGE_SUFFIXES)}) found in {root}")
        self.root, self.files = root, files
        self.labels = np.asarray(labels, np.int32)
        self.image_size, self.resize, self.interpolation = image_size, resize, interpolation
        self.flat = not subdirs
        self.name = f"folder:{root}" + (f",label={label}" if label is not None else "")
        if class_index is not None:         # other classes, other labels: another source
            import hashlib

            table = json.dumps(sorted((str(k), int(v)) for k, v in class_index.items()))
            self.name += f",class_index={hashlib.sha256(table.encode()).hexdigest()[:12]}"

    def __len__(self) -> int:
        return len(self.files)

    def _read(self, path: Path) -> np.ndarray:
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(path) as im:
                img = np.asarray(im.convert("RGB"))
        except (UnidentifiedImageError, OSError) as e:
            detail = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise ValueError(f"cannot read image {path}: {detail}") from e
        return resize_center_crop_uint8(img, self.image_size, self.resize, self.interpolation)

    def get(self, indices):
        idx = check_indices(indices, len(self), self.name)
        images = stack_images([self._read(self.files[i]) for i in idx], f"images in {self.root}")
        return images, self.labels[np.asarray(idx, np.int64)]
