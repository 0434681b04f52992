"""The shipped default data: scikit-learn's 8x8 digits upscaled to 32x32x3.

The 1797 digits ship inside the scikit-learn wheel (no download). Each 8x8 image (grey levels
0..16) is upscaled x4 by nearest neighbour, divided by 16 and repeated over 3 channels, giving
CIFAR-shaped images in [0, 1]. The train/test split is fixed: a permutation seeded with 0,
the first 1500 images train, the remaining 297 test.
"""

from __future__ import annotations

import functools

import numpy as np

NUM_CLASSES = 10
IMAGE_SHAPE = (32, 32, 3)
NUM_TRAIN = 1500
SPLIT_SEED = 0


@functools.lru_cache(maxsize=1)
def _all_digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()
    images = d.images.astype(np.float32) / 16.0                       # (N, 8, 8)
    images = images.repeat(4, axis=1).repeat(4, axis=2)                # (N, 32, 32)
    images = np.repeat(images[..., None], 3, axis=-1)                  # (N, 32, 32, 3)
    order = np.random.RandomState(SPLIT_SEED).permutation(len(images))
    return images[order], d.target.astype(np.int32)[order]


def load_digits32(split: str = "test") -> tuple[np.ndarray, np.ndarray]:
    """Digits as (images (N, 32, 32, 3) float32 in [0, 1], labels (N,) int32).

    Args:
        split: "train" (1500 images), "test" (297 images) or "all" (1797).
    """
    images, labels = _all_digits()
    if split == "train":
        sl = slice(0, NUM_TRAIN)
    elif split == "test":
        sl = slice(NUM_TRAIN, None)
    elif split == "all":
        sl = slice(None)
    else:
        raise ValueError(f"unknown digits split {split!r}; use 'train', 'test' or 'all'")
    return images[sl].copy(), labels[sl].copy()
