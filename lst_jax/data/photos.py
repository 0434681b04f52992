"""The scikit-image sample photos (shipped inside the wheel) as ImageNet-size inputs."""

from __future__ import annotations

import numpy as np

# name -> (skimage.data loader name, ImageNet-1k class index of the main object, or -1)
PHOTOS: dict[str, tuple[str, int]] = {
    "astronaut": ("astronaut", -1),
    "chelsea": ("chelsea", 285),      # Egyptian cat
    "coffee": ("coffee", 967),        # espresso
    "rocket": ("rocket", 812),        # space shuttle
    "motorcycle": ("stereo_motorcycle", 670),  # motor scooter/motorcycle
    "hubble": ("hubble_deep_field", -1),
    "immunohistochemistry": ("immunohistochemistry", -1),
}


def _load(name: str) -> np.ndarray:
    from skimage import data

    loader, _ = PHOTOS[name]
    img = getattr(data, loader)()
    if isinstance(img, tuple):  # stereo_motorcycle returns (left, right, disparity)
        img = img[0]
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=-1)
    return img[..., :3]


def resize_center_crop(img: np.ndarray, size: int = 224, resize: int | None = 256,
                       order: int = 1) -> np.ndarray:
    """Resize the short side to `resize` (torchvision Resize), then centre-crop `size`.

    Args:
        img: (H, W, C) uint8 or float in [0, 1].
        order: interpolation order (1 bilinear, 3 bicubic).

    Shape:
        (H, W, C) -> (size, size, C) float32 in [0, 1].
    """
    from skimage.transform import resize as sk_resize

    x = img.astype(np.float32) / 255.0 if img.dtype == np.uint8 else img.astype(np.float32)
    resize = resize or size
    h, w = x.shape[:2]
    scale = resize / min(h, w)
    nh, nw = max(resize, round(h * scale)), max(resize, round(w * scale))
    x = sk_resize(x, (nh, nw), order=order, anti_aliasing=True, preserve_range=True)
    top, left = (nh - size) // 2, (nw - size) // 2
    return np.clip(x[top:top + size, left:left + size], 0.0, 1.0).astype(np.float32)


def load_photos(names=("chelsea", "coffee", "rocket", "motorcycle", "astronaut"),
                size: int = 224, resize: int | None = 256, order: int = 1):
    """Sample photos as (images (N, size, size, 3) float32 in [0, 1], names).

    Raises:
        ValueError: unknown photo name.
    """
    unknown = [n for n in names if n not in PHOTOS]
    if unknown:
        raise ValueError(f"unknown sample photo(s) {unknown}; available: {sorted(PHOTOS)}")
    images = np.stack([resize_center_crop(_load(n), size, resize, order) for n in names])
    return images, list(names)


def spline_order(interpolation: str) -> int:
    """scikit-image interpolation order of a resize filter name: 3 for "bicubic", else 1."""
    return 3 if interpolation == "bicubic" else 1


def load_photos_for(spec, names):
    """Sample photos preprocessed as the registry model `spec` expects (short side resized to
    `spec.resize`, or straight to the input size; centre crop; `spec.interpolation`).

    Shape:
        -> (images (N, H, H, 3) float32 in [0, 1] with H = spec.input_size[0], names).
    """
    h = spec.input_size[0]
    return load_photos(names, size=h, resize=spec.resize or h,
                       order=spline_order(spec.interpolation))
