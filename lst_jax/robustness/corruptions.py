"""Common corruptions in pure JAX: a small "-C" benchmark for any NHWC [0, 1] image set.

Eight corruptions of Hendrycks & Dietterich, *Benchmarking Neural Network Robustness to Common
Corruptions and Perturbations* (ICLR 2019, arXiv 1903.12261), severities 1..5; severity 0 is
the clean image. Written from the definitions (not from their code). Three severity tables:

- `"cifar10"`: the parameters of their CIFAR-10-C (32x32 natural images; `make_cifar_c.py`
  of github.com/hendrycks/robustness);
- `"imagenet"`: the parameters of their ImageNet-C (224x224 natural images;
  `make_imagenet_c.py` of the same repository; `gaussian_blur` is one of its "extra"
  corruptions, the other seven are in the 15 of the benchmark);
- `"digits"` [ours]: the digits are 4x-upscaled 8x8 glyphs with 17 grey levels on a black
  background, which shrug off most CIFAR-10-C severities (the normal digits ResNet keeps
  >= 96% on noise, blur, JPEG and pixelation at severity 5) and collapse at once under
  contrast. This table was set by eye so that severity 1 costs the normal digits ResNet a few
  points and severity 5 most of its accuracy, as ImageNet-C's severities do for ImageNet models
  (JPEG stays harmless down to quality 5: 8x8 DCT blocks cover 2x2 glyph pixels).

| name | what | `cifar10` c, severity 1..5 | `imagenet` c, severity 1..5 | `digits` c, severity 1..5 |
|---|---|---|---|---|
| `gaussian_noise` | x + N(0, c^2) | 0.04, 0.06, 0.08, 0.09, 0.10 | 0.08, 0.12, 0.18, 0.26, 0.38 | 0.1, 0.2, 0.3, 0.4, 0.5 |
| `shot_noise` | Poisson(c x) / c | 500, 250, 100, 75, 50 | 60, 25, 12, 5, 3 | 20, 10, 5, 3, 2 |
| `impulse_noise` | salt and pepper on a fraction c of the values | 0.01, 0.02, 0.03, 0.05, 0.07 | 0.03, 0.06, 0.09, 0.17, 0.27 | 0.03, 0.06, 0.1, 0.2, 0.3 |
| `gaussian_blur` | Gaussian filter, sigma c (truncate 4 sigma, edges 'nearest') | 0.4, 0.6, 0.7, 0.8, 1.0 | 1, 2, 3, 4, 6 | 1.0, 1.5, 2.0, 2.5, 3.0 |
| `contrast` | (x - mean) c + mean, per image and channel | 0.75, 0.5, 0.4, 0.3, 0.15 | 0.4, 0.3, 0.2, 0.1, 0.05 | 0.9, 0.8, 0.7, 0.6, 0.5 |
| `brightness` | HSV value + c | 0.05, 0.1, 0.15, 0.2, 0.3 | 0.1, 0.2, 0.3, 0.4, 0.5 | 0.05, 0.1, 0.15, 0.2, 0.3 |
| `jpeg` | JPEG-like quantisation at quality c (`jpeg_quantize`) | 80, 65, 58, 50, 40 | 25, 18, 15, 10, 7 | 50, 30, 20, 10, 5 |
| `pixelate` | Pillow-BOX downsampling to int(c H), BOX upsampling back | 0.95, 0.9, 0.85, 0.75, 0.65 | 0.6, 0.5, 0.4, 0.3, 0.25 | 12, 9, 6, 5, 4 px of 32 |

Not implemented (so in no table): the other corruptions of the benchmarks (defocus, glass,
motion and zoom blur; snow, frost, fog; elastic transform; the extras speckle noise, spatter,
saturate). ImageNet-C's original parameters assume 224x224 inputs; at other sizes the table
applies unchanged (the profile picks it for inputs larger than 64 pixels a side).

Every result is clipped to [0, 1]. Randomness is explicit and per image: image `i` of a set
draws from `fold_in(key, i)`, so the arrays do not depend on how a set is batched, and a
corrupted set is a pure function of `(images, corruption, severity, key)`.

Deviations, on purpose: the originals round to uint8 after every corruption (we keep float32);
`jpeg` is a JPEG-like quantisation in float (YCbCr, 8x8 DCT, the standard quantisation tables
scaled as libjpeg does, no chroma subsampling, no entropy coding) instead of libjpeg (tested to
stay within a few grey levels of Pillow's JPEG at the same quality); `brightness` uses the
exact identity that shifting the HSV value rescales the RGB vector (no HSV round trip).
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

SEVERITIES = (1, 2, 3, 4, 5)

PARAMS = {   # CIFAR-10-C
    "gaussian_noise": (0.04, 0.06, 0.08, 0.09, 0.10),
    "shot_noise": (500.0, 250.0, 100.0, 75.0, 50.0),
    "impulse_noise": (0.01, 0.02, 0.03, 0.05, 0.07),
    "gaussian_blur": (0.4, 0.6, 0.7, 0.8, 1.0),
    "contrast": (0.75, 0.5, 0.4, 0.3, 0.15),
    "brightness": (0.05, 0.1, 0.15, 0.2, 0.3),
    "jpeg": (80, 65, 58, 50, 40),
    "pixelate": (0.95, 0.9, 0.85, 0.75, 0.65),
}
DIGITS_PARAMS = {   # [ours], see the module docstring
    "gaussian_noise": (0.1, 0.2, 0.3, 0.4, 0.5),
    "shot_noise": (20.0, 10.0, 5.0, 3.0, 2.0),
    "impulse_noise": (0.03, 0.06, 0.1, 0.2, 0.3),
    "gaussian_blur": (1.0, 1.5, 2.0, 2.5, 3.0),
    "contrast": (0.9, 0.8, 0.7, 0.6, 0.5),
    "brightness": (0.05, 0.1, 0.15, 0.2, 0.3),
    "jpeg": (50, 30, 20, 10, 5),
    "pixelate": (12 / 32, 9 / 32, 6 / 32, 5 / 32, 4 / 32),
}
# ImageNet-C: the parameters of `make_imagenet_c.py` in github.com/hendrycks/robustness
# (Hendrycks & Dietterich 2019), for 224x224 images.
IMAGENET_PARAMS = {
    "gaussian_noise": (0.08, 0.12, 0.18, 0.26, 0.38),
    "shot_noise": (60.0, 25.0, 12.0, 5.0, 3.0),
    "impulse_noise": (0.03, 0.06, 0.09, 0.17, 0.27),
    "gaussian_blur": (1.0, 2.0, 3.0, 4.0, 6.0),
    "contrast": (0.4, 0.3, 0.2, 0.1, 0.05),
    "brightness": (0.1, 0.2, 0.3, 0.4, 0.5),
    "jpeg": (25, 18, 15, 10, 7),
    "pixelate": (0.6, 0.5, 0.4, 0.3, 0.25),
}
TABLES = {"cifar10": PARAMS, "imagenet": IMAGENET_PARAMS, "digits": DIGITS_PARAMS}
CORRUPTIONS = tuple(PARAMS)
# corruption families, as ImageNet-C groups them
FAMILIES = {"noise": ("gaussian_noise", "shot_noise", "impulse_noise"),
            "blur": ("gaussian_blur",),
            "weather": ("brightness",),
            "digital": ("contrast", "jpeg", "pixelate")}


# ----------------------------------------------------------------------------- per image
def _gaussian_noise(x, key, c):
    return x + c * jax.random.normal(key, x.shape, x.dtype)


def _shot_noise(x, key, c):
    return jax.random.poisson(key, x * c, x.shape).astype(x.dtype) / c


def _impulse_noise(x, key, c):
    # skimage.util.random_noise(mode="s&p", amount=c): a fraction c of the values (every
    # channel on its own) replaced, half by 0 and half by 1.
    k1, k2 = jax.random.split(key)
    hit = jax.random.uniform(k1, x.shape) < c
    salt = jax.random.uniform(k2, x.shape) < 0.5
    return jnp.where(hit, salt.astype(x.dtype), x)


def gaussian_kernel_1d(sigma: float, truncate: float = 4.0) -> np.ndarray:
    """scipy/skimage's normalised 1-D Gaussian: radius `int(truncate * sigma + 0.5)`."""
    radius = int(truncate * float(sigma) + 0.5)
    t = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-0.5 * (t / sigma) ** 2)
    return (k / k.sum()).astype(np.float32)


def _blur_axis(x, k, axis):
    r = (len(k) - 1) // 2
    pad = [(0, 0)] * x.ndim
    pad[axis] = (r, r)
    xp = jnp.pad(x, pad, mode="edge")                 # scipy mode "nearest"
    n = x.shape[axis]
    out = None
    for j, w in enumerate(k):
        term = w * jax.lax.slice_in_dim(xp, j, j + n, axis=axis)
        out = term if out is None else out + term
    return out


def _gaussian_blur(x, key, c):
    k = gaussian_kernel_1d(c)
    return _blur_axis(_blur_axis(x, k, 0), k, 1)


def _contrast(x, key, c):
    mean = jnp.mean(x, axis=(0, 1), keepdims=True)
    return (x - mean) * c + mean


def _brightness(x, key, c):
    # HSV: value v = max over channels; with hue and saturation fixed, RGB is proportional to
    # v, so v -> clip(v + c) rescales the pixel; black pixels (v = 0, saturation 0) become grey.
    v = jnp.max(x, axis=-1, keepdims=True)
    v_new = jnp.clip(v + c, 0.0, 1.0)
    safe = jnp.where(v > 0, v, 1.0)
    return jnp.where(v > 0, x * (v_new / safe), v_new)


# JPEG (ITU T.81, Annex K) quantisation tables and libjpeg's quality scaling.
_Q_LUMA = np.array([
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99],
    np.float64).reshape(8, 8)
_Q_CHROMA = np.array([
    17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99,
    24, 26, 56, 99, 99, 99, 99, 99, 47, 66, 99, 99, 99, 99, 99, 99,
    99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99,
    99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99],
    np.float64).reshape(8, 8)


def quantisation_table(quality: int, chroma: bool = False) -> np.ndarray:
    """libjpeg's table for `quality` in 1..100 (`jpeg_quality_scaling`), entries in 1..255."""
    if not 1 <= int(quality) <= 100:
        raise ValueError(f"quality must be in 1..100, got {quality}")
    q = int(quality)
    scale = 5000 // q if q < 50 else 200 - 2 * q
    base = _Q_CHROMA if chroma else _Q_LUMA
    return np.clip(np.floor((base * scale + 50) / 100), 1, 255).astype(np.float32)


def _dct_matrix(n: int = 8) -> np.ndarray:
    """Orthonormal DCT-II matrix D (D @ x is the 1-D DCT of x)."""
    k = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    d = np.cos(math.pi * (2 * i + 1) * k / (2 * n)) * math.sqrt(2 / n)
    d[0] /= math.sqrt(2)
    return d.astype(np.float32)


_RGB2YCC = np.array([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5],
                     [0.5, -0.418688, -0.081312]], np.float32)


def jpeg_quantize(x, quality: int):
    """JPEG-like lossy round trip of one image: RGB -> YCbCr (levels 0..255, centred), 8x8
    block DCT, division by the quality-scaled table, rounding, and back. Grey images (C = 1)
    use the luminance table only. H and W must be multiples of 8 (zero padded otherwise).

    Shape:
        x: (H, W, C) in [0, 1], C in {1, 3} -> (H, W, C).
    """
    h, w, c = x.shape
    ph, pw = -h % 8, -w % 8
    y = jnp.pad(x, ((0, ph), (0, pw), (0, 0)), mode="edge") * 255.0
    if c == 3:
        y = y @ jnp.asarray(_RGB2YCC).T
        tables = np.stack([quantisation_table(quality), quantisation_table(quality, True),
                           quantisation_table(quality, True)], -1)
    elif c == 1:
        tables = quantisation_table(quality)[..., None]
    else:
        raise ValueError(f"jpeg needs 1 or 3 channels, got {c}")
    shift = jnp.asarray([128.0, 0.0, 0.0] if c == 3 else [128.0], jnp.float32).reshape(1, 1, c)
    y = y - shift                       # JPEG's level shift (Cb, Cr are already centred)
    hh, ww = (h + ph) // 8, (w + pw) // 8
    blocks = y.reshape(hh, 8, ww, 8, c).transpose(0, 2, 1, 3, 4)        # (hh, ww, 8, 8, c)
    d = jnp.asarray(_dct_matrix())
    coef = jnp.einsum("ij,abjkc,lk->abilc", d, blocks, d)
    q = jnp.asarray(tables)[None, None]                               # (1, 1, 8, 8, c)
    coef = jnp.round(coef / q) * q
    blocks = jnp.einsum("ji,abjkc,kl->abilc", d, coef, d)
    y = blocks.transpose(0, 2, 1, 3, 4).reshape(h + ph, w + pw, c)
    y = y + shift
    if c == 3:
        y = y @ jnp.asarray(np.linalg.inv(_RGB2YCC)).T
    return y[:h, :w] / 255.0


def _jpeg(x, key, c):
    return jpeg_quantize(x, int(c))


def box_resize_matrix(n_in: int, n_out: int) -> np.ndarray:
    """Pillow's BOX resampling as a matrix (n_out, n_in): output pixel j is the mean of the
    input pixels whose centres fall in its box `(c - s, c + s]`, c = (j + 0.5) n_in / n_out,
    s = max(n_in / n_out, 1) / 2 (upsampling: nearest neighbour). Tested equal to
    `PIL.Image.resize(..., Image.BOX)` on float images."""
    scale = n_in / n_out
    half = 0.5 * max(scale, 1.0)
    m = np.zeros((n_out, n_in), np.float64)
    for j in range(n_out):
        c = (j + 0.5) * scale
        for i in range(max(int(c - half + 0.5), 0), min(int(c + half + 0.5), n_in)):
            m[j, i] = float(-half < i + 0.5 - c <= half)
    return (m / m.sum(1, keepdims=True)).astype(np.float32)


def _pixelate(x, key, c):
    h, w, _ = x.shape
    sh, sw = int(h * c), int(w * c)
    down_h, down_w = jnp.asarray(box_resize_matrix(h, sh)), jnp.asarray(box_resize_matrix(w, sw))
    up_h, up_w = jnp.asarray(box_resize_matrix(sh, h)), jnp.asarray(box_resize_matrix(sw, w))
    small = jnp.einsum("ih,hwc,jw->ijc", down_h, x, down_w)
    return jnp.einsum("ih,hwc,jw->ijc", up_h, small, up_w)


_FNS = {"gaussian_noise": _gaussian_noise, "shot_noise": _shot_noise,
        "impulse_noise": _impulse_noise, "gaussian_blur": _gaussian_blur,
        "contrast": _contrast, "brightness": _brightness, "jpeg": _jpeg,
        "pixelate": _pixelate}


def check_corruption(name: str, severity: int, table: str = "cifar10"):
    if table not in TABLES:
        raise ValueError(f"unknown severity table {table!r}; choose from {', '.join(TABLES)}")
    if name not in PARAMS:
        raise ValueError(f"unknown corruption {name!r}; choose from {', '.join(CORRUPTIONS)}")
    if isinstance(severity, bool) or not isinstance(severity, (int, np.integer)) \
            or not 0 <= severity <= 5:
        raise ValueError(f"severity must be an integer in 0..5 (0: clean), got {severity!r}")


# Corruptions whose parameter fixes shapes or constant tables (blur radius, JPEG tables, the
# pixelation size) are compiled per parameter; the others take it as a traced scalar, so all
# their severities share one program.
_STATIC_PARAM = ("gaussian_blur", "jpeg", "pixelate")


@functools.partial(jax.jit, static_argnames=("name", "static_c"))
def _corrupt(images, key, offset, c, name: str, static_c=None):
    c = c if static_c is None else static_c
    keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(
        offset + jnp.arange(images.shape[0], dtype=jnp.uint32))
    out = jax.vmap(lambda x, k: _FNS[name](x, k, c))(images, keys)
    return jnp.clip(out, 0.0, 1.0)


def corrupt(images, *, name: str, severity: int, key, offset: int = 0,
            table: str = "cifar10"):
    """Images under corruption `name` at `severity` (0: the clean images, unchanged), with the
    parameters of severity table `table` ("cifar10", "imagenet" or "digits").

    Image `i` uses the random stream `fold_in(key, offset + i)`: a batch cut out of a larger
    set with the right `offset` gives the same arrays as corrupting the whole set.

    >>> import jax
    >>> x = jax.random.uniform(jax.random.key(0), (2, 8, 8, 3))
    >>> corrupt(x, name="gaussian_noise", severity=3, key=jax.random.key(1)).shape
    (2, 8, 8, 3)

    Shape:
        images: (B, H, W, C) float32 in [0, 1] -> (B, H, W, C) float32 in [0, 1].
    """
    from lst_jax.utils.checks import check_images, check_key

    check_corruption(name, severity, table)
    check_key(key)
    images = check_images("images", images)
    if severity == 0:
        return images
    c = TABLES[table][name][int(severity) - 1]
    static = c if name in _STATIC_PARAM else None
    return _corrupt(images, key, jnp.uint32(offset), jnp.float32(c), name, static)


def corruption_key(*, key, name: str, severity: int):
    """The key of one (corruption, severity) cell of a benchmark generated with `key`:
    `fold_in(fold_in(key, index of name in CORRUPTIONS), severity)`.

    >>> import jax
    >>> corruption_key(key=jax.random.key(0), name="contrast", severity=2).shape
    ()
    """
    from lst_jax.utils.checks import check_key

    check_key(key)
    check_corruption(name, severity)
    return jax.random.fold_in(jax.random.fold_in(key, CORRUPTIONS.index(name)), severity)


@dataclasses.dataclass(frozen=True)
class CorruptionConfig:
    """The cells of a "-C" benchmark (`corruption_accuracy`).

    >>> CorruptionConfig(table="digits", severities=(1, 5)).severities
    (1, 5)

    Attributes:
        table: severity table, "cifar10", "imagenet" or "digits".
        corruptions: corruption names (of `CORRUPTIONS`).
        severities: severities in 0..5 (0: clean).
    """

    table: str = "cifar10"
    corruptions: tuple = CORRUPTIONS
    severities: tuple = SEVERITIES

    def __post_init__(self):
        object.__setattr__(self, "corruptions", tuple(self.corruptions))
        object.__setattr__(self, "severities", tuple(self.severities))
        if not self.corruptions or not self.severities:
            raise ValueError("corruptions and severities must not be empty")
        for c in self.corruptions:
            for s in self.severities:
                check_corruption(c, s, self.table)

    def replace(self, **changes) -> "CorruptionConfig":
        """A copy with `changes` applied (validated again)."""
        return dataclasses.replace(self, **changes)


__all__ = ["CorruptionConfig", "CORRUPTIONS", "FAMILIES", "PARAMS", "DIGITS_PARAMS",
           "IMAGENET_PARAMS", "TABLES", "SEVERITIES", "corrupt", "corruption_key",
           "jpeg_quantize", "quantisation_table", "box_resize_matrix", "gaussian_kernel_1d",
           "check_corruption"]
