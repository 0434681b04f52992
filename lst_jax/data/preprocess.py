"""ImageNet-style preprocessing with torchvision's semantics, on uint8 arrays via Pillow.

`Resize(256)` scales the short side to 256 (long side `int(256 * long / short)`, PIL
bilinear or bicubic), `CenterCrop(224)` cuts the centre (offsets rounded as torchvision does),
`ToTensor` divides by 255. The result stays on the 8-bit lattice (`k / 255`), so it round-trips
through 8-bit PNG losslessly.
"""

from __future__ import annotations

import numpy as np

INTERPOLATIONS = ("bilinear", "bicubic", "nearest")


def to_uint8_rgb(img: np.ndarray) -> np.ndarray:
    """(H, W), (H, W, 1), (H, W, 3) or (H, W, 4) uint8 -> (H, W, 3) uint8 (alpha dropped)."""
    img = np.asarray(img)
    if img.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got dtype {img.dtype}")
    if img.ndim == 2:
        img = img[..., None]
    if img.ndim != 3 or img.shape[-1] not in (1, 3, 4):
        raise ValueError(f"expected an image of shape (H, W[, 1|3|4]), got {img.shape}")
    if img.shape[-1] == 1:
        img = np.repeat(img, 3, axis=-1)
    return np.ascontiguousarray(img[..., :3])


def resize_center_crop_uint8(img: np.ndarray, size: int | None = 224,
                             resize: int | None = 256,
                             interpolation: str = "bilinear") -> np.ndarray:
    """torchvision `Resize(resize)` + `CenterCrop(size)` of a uint8 image (Pillow backend).

    Args:
        img: (H, W, C) uint8.
        size: crop size (None: no crop); resize: short-side length (None: no resize).
        interpolation: "bilinear" (reference default), "bicubic" or "nearest".

    Shape:
        (H, W, C) uint8 -> (size, size, C) uint8.
    """
    from PIL import Image

    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, got {interpolation!r}")
    img = to_uint8_rgb(img)
    if resize is not None:
        h, w = img.shape[:2]
        if h <= w:
            nh, nw = resize, int(resize * w / h)
        else:
            nh, nw = int(resize * h / w), resize
        if (nh, nw) != (h, w):
            method = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC,
                      "nearest": Image.NEAREST}[interpolation]
            img = np.asarray(Image.fromarray(img).resize((nw, nh), method))
    if size is not None:
        h, w = img.shape[:2]
        if h < size or w < size:
            raise ValueError(f"image of size {h}x{w} is smaller than the crop {size}; "
                             "set a resize of at least the crop size")
        top, left = int(round((h - size) / 2.0)), int(round((w - size) / 2.0))
        img = img[top:top + size, left:left + size]
    return np.ascontiguousarray(img)


def uint8_to_float(img: np.ndarray) -> np.ndarray:
    """uint8 -> float32 in [0, 1] (`x / 255`, as torchvision's ToTensor)."""
    return np.asarray(img, np.float32) / np.float32(255.0)
