"""GoogLeNet (Inception v1) exactly as torchvision builds it, in eval mode.

Covers torchvision `googlenet(weights="IMAGENET1K_V1")` (Szegedy et al. 2015, with batch
normalisation), the default model of the input-space mode connectivity paper (Vrabel et al.
2024). torchvision's quirks, reproduced:

- `BasicConv2d` = conv without bias + BatchNorm (eps 0.001) + ReLU;
- the Inception "5x5" branch (`branch3`) uses a 3x3 kernel (a known torchvision bug kept for
  the pretrained weights);
- every max pool uses `ceil_mode=True` (windows may hang over the bottom/right edge; the pool
  of `branch4` is 3x3, stride 1, padding 1);
- `transform_input=True` (set by torchvision for the pretrained weights): the network expects
  ImageNet-normalised input and re-maps it channel by channel to its own normalisation,
  `x_c * (std_c / 0.5) + (mean_c - 0.5) / 0.5` = `(pixel - 0.5) / 0.5`;
- eval mode returns only the main logits: the auxiliary heads (`aux1`, `aux2`) and the
  dropout layers act only in training, so this module has neither (the converter drops the
  `aux1.*`/`aux2.*` tensors of the pretrained file and says so).

Parameter names mirror the PyTorch modules (`conv1/conv`, `inception4a/branch2_1/bn`, `fc`),
so the converter rules are a plain rename (`lst_jax/convert/rules.py`).

`__call__(x, train=False) -> (logits, out)`; `out` holds `stem` (after `maxpool2`), the
output of every Inception block (`inception3a` ... `inception5b`) and `pre_logits` (the
pooled 1024 features). `train=True` only switches BatchNorm to batch statistics (no dropout,
no auxiliary heads): this is an inference port, not a training replica.
"""

from __future__ import annotations

import functools
import math

import flax.linen as nn
import jax.numpy as jnp

from lst_jax.models.layers import BatchNorm, Conv, max_pool
from lst_jax.models.wrapper import IMAGENET_MEAN, IMAGENET_STD

_BN = functools.partial(BatchNorm, epsilon=1e-3)   # torchvision BasicConv2d: eps=0.001

# block name -> (ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5 (really 3x3), pool_proj)
INCEPTION_BLOCKS = {
    "3a": (64, 96, 128, 16, 32, 32),
    "3b": (128, 128, 192, 32, 96, 64),
    "4a": (192, 96, 208, 16, 48, 64),
    "4b": (160, 112, 224, 24, 64, 64),
    "4c": (128, 128, 256, 24, 64, 64),
    "4d": (112, 144, 288, 32, 64, 64),
    "4e": (256, 160, 320, 32, 128, 128),
    "5a": (256, 160, 320, 32, 128, 128),
    "5b": (384, 192, 384, 48, 128, 128),
}


def googlenet_transform_input(x):
    """torchvision's `GoogLeNet._transform_input`: ImageNet-normalised input -> the
    network's own per-channel normalisation, with torchvision's float32 operations.

    Shape:
        x: (B, H, W, 3) ImageNet-normalised -> (B, H, W, 3).
    """
    shape = (1,) * (x.ndim - 1) + (3,)
    scale = jnp.asarray([s / 0.5 for s in IMAGENET_STD], x.dtype).reshape(shape)
    shift = jnp.asarray([(m - 0.5) / 0.5 for m in IMAGENET_MEAN], x.dtype).reshape(shape)
    return x * scale + shift


def max_pool_ceil(x, kernel: int, stride: int, padding: int = 0):
    """`torch.nn.MaxPool2d(kernel, stride, padding, ceil_mode=True)` on NHWC input.

    Output size per side: ceil((n + 2p - k) / s) + 1, minus one if the last window would
    start in the right padding (PyTorch's rule); windows overhanging the edge take the max
    of the pixels they cover (the extra padding is -inf). Computed by `layers.max_pool`
    (elementwise maxima: its input gradient is ~2x faster on XLA:CPU than reduce_window's).

    Shape:
        x: (B, H, W, C) -> (B, H', W', C).
    """
    pads = []
    for n in x.shape[1:3]:
        out = math.ceil((n + 2 * padding - kernel) / stride) + 1
        if (out - 1) * stride >= n + padding:
            out -= 1
        pads.append((padding, (out - 1) * stride + kernel - n - padding))
    return max_pool(x, (kernel, kernel), (stride, stride), pads)


class BasicConv2d(nn.Module):
    """Conv (no bias) -> BatchNorm (eps 0.001) -> ReLU; submodules `conv`, `bn`."""

    features: int
    kernel: int
    stride: int = 1
    padding: int = 0

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = Conv(self.features, (self.kernel, self.kernel), self.stride, padding=self.padding,
                 use_bias=False, name="conv")(x)
        return nn.relu(_BN(use_running_average=not train, name="bn")(x))


class Inception(nn.Module):
    """Four branches concatenated on channels: 1x1 | 1x1 -> 3x3 | 1x1 -> 3x3 (torchvision's
    "5x5") | 3x3 max pool (stride 1, ceil mode) -> 1x1. Submodules `branch1`,
    `branch2_0`/`branch2_1`, `branch3_0`/`branch3_1`, `branch4_1` (torchvision's
    `branch4.0` is the pool)."""

    ch1x1: int
    ch3x3red: int
    ch3x3: int
    ch5x5red: int
    ch5x5: int
    pool_proj: int

    @nn.compact
    def __call__(self, x, train: bool = False):
        b1 = BasicConv2d(self.ch1x1, 1, name="branch1")(x, train)
        b2 = BasicConv2d(self.ch3x3red, 1, name="branch2_0")(x, train)
        b2 = BasicConv2d(self.ch3x3, 3, padding=1, name="branch2_1")(b2, train)
        b3 = BasicConv2d(self.ch5x5red, 1, name="branch3_0")(x, train)
        b3 = BasicConv2d(self.ch5x5, 3, padding=1, name="branch3_1")(b3, train)  # sic: 3x3
        b4 = BasicConv2d(self.pool_proj, 1, name="branch4_1")(max_pool_ceil(x, 3, 1, 1), train)
        return jnp.concatenate([b1, b2, b3, b4], axis=-1)


class GoogLeNet(nn.Module):
    """torchvision GoogLeNet in eval mode (main logits only).

    Attributes:
        num_classes: classifier outputs (1000).
        transform_input: apply `googlenet_transform_input` first (True for torchvision's
            pretrained weights, whose registry entry feeds ImageNet-normalised input).

    Shape:
        x: (B, H, W, 3), ImageNet-normalised (H, W >= 32; 224 for the pretrained weights)
        -> logits (B, num_classes).
    """

    num_classes: int = 1000
    transform_input: bool = True

    @nn.compact
    def __call__(self, x, train: bool = False):
        out = {}
        if self.transform_input:
            x = googlenet_transform_input(x)
        x = BasicConv2d(64, 7, 2, 3, name="conv1")(x, train)
        x = max_pool_ceil(x, 3, 2)
        x = BasicConv2d(64, 1, name="conv2")(x, train)
        x = BasicConv2d(192, 3, padding=1, name="conv3")(x, train)
        x = max_pool_ceil(x, 3, 2)
        out["stem"] = x
        for name, cfg in INCEPTION_BLOCKS.items():
            x = Inception(*cfg, name=f"inception{name}")(x, train)
            out[f"inception{name}"] = x
            if name == "3b":
                x = max_pool_ceil(x, 3, 2)       # maxpool3
            elif name == "4e":
                x = max_pool_ceil(x, 2, 2)       # maxpool4
        x = jnp.mean(x, axis=(1, 2))
        out["pre_logits"] = x
        return nn.Dense(self.num_classes, name="fc")(x), out
