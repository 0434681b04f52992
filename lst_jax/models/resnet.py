"""ResNet-18/34/50/101/152 in the torchvision layout (ResNet v1.5: stride on the 3x3 conv).

Covers torchvision `resnet*` weights, timm `resnet50` weights (same keys and architecture) and
RobustBench ImageNet ResNets (`Salman2020Do_R50`: a torchvision ResNet-50 behind a normaliser).
Parameter names mirror the PyTorch modules (`conv1`, `bn1`, `layer2_0/downsample_conv`, `fc`)
so that the converter rules in `lst_jax/convert/resnet.py` are a plain rename.

`__call__(x, train=False) -> (logits, out)`; `out` holds `stem` (after the max pool),
`layer1` ... `layer4` and `pre_logits` (the pooled features).
"""

from __future__ import annotations

import functools
from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

from lst_jax.models.layers import BatchNorm as _BN  # _BN: torchvision BatchNorm2d
from lst_jax.models.layers import Conv


class BasicBlock(nn.Module):
    """Two 3x3 convolutions (ResNet-18/34)."""

    planes: int
    stride: int = 1
    downsample: bool = False
    width_per_group: int = 64  # unused (torchvision allows only 64 here)

    expansion = 1

    @nn.compact
    def __call__(self, x, train: bool = False):
        bn = functools.partial(_BN, use_running_average=not train)
        y = Conv(self.planes, (3, 3), self.stride, padding=1, use_bias=False, name="conv1")(x)
        y = nn.relu(bn(name="bn1")(y))
        y = Conv(self.planes, (3, 3), 1, padding=1, use_bias=False, name="conv2")(y)
        y = bn(name="bn2")(y)
        if self.downsample:
            x = Conv(self.planes, (1, 1), self.stride, use_bias=False, name="downsample_conv")(x)
            x = bn(name="downsample_bn")(x)
        return nn.relu(x + y)


class Bottleneck(nn.Module):
    """1x1 -> 3x3 (strided) -> 1x1 with expansion 4 (ResNet-50/101/152)."""

    planes: int
    stride: int = 1
    downsample: bool = False
    width_per_group: int = 64  # 128 gives torchvision's wide_resnet50_2

    expansion = 4

    @nn.compact
    def __call__(self, x, train: bool = False):
        bn = functools.partial(_BN, use_running_average=not train)
        width = self.planes * self.width_per_group // 64
        out_ch = self.planes * self.expansion
        y = Conv(width, (1, 1), use_bias=False, name="conv1")(x)
        y = nn.relu(bn(name="bn1")(y))
        y = Conv(width, (3, 3), self.stride, padding=1, use_bias=False, name="conv2")(y)
        y = nn.relu(bn(name="bn2")(y))
        y = Conv(out_ch, (1, 1), use_bias=False, name="conv3")(y)
        y = bn(name="bn3")(y)
        if self.downsample:
            x = Conv(out_ch, (1, 1), self.stride, use_bias=False, name="downsample_conv")(x)
            x = bn(name="downsample_bn")(x)
        return nn.relu(x + y)


BLOCKS = {"basic": BasicBlock, "bottleneck": Bottleneck}


class ResNet(nn.Module):
    """torchvision ResNet.

    Attributes:
        block: "basic" or "bottleneck".
        layers: blocks per stage, e.g. (3, 4, 6, 3) for ResNet-50.
        num_classes: classifier outputs.
        width: stem channels and first-stage planes (64 in torchvision; small in tests).
        width_per_group: bottleneck inner width per 64 planes (64 standard, 128 wide).

    Shape:
        x: (B, H, W, 3), already normalised -> logits (B, num_classes).
    """

    block: str = "bottleneck"
    layers: Sequence[int] = (3, 4, 6, 3)
    num_classes: int = 1000
    width: int = 64
    width_per_group: int = 64

    @nn.compact
    def __call__(self, x, train: bool = False):
        block_cls = BLOCKS[self.block]
        out = {}
        x = Conv(self.width, (7, 7), 2, padding=3, use_bias=False, name="conv1")(x)
        x = nn.relu(_BN(use_running_average=not train, name="bn1")(x))
        x = nn.max_pool(x, (3, 3), (2, 2), padding=((1, 1), (1, 1)))
        out["stem"] = x
        in_ch = self.width
        for i, n in enumerate(self.layers):
            planes = self.width * 2 ** i
            for j in range(n):
                stride = 2 if (i > 0 and j == 0) else 1
                down = j == 0 and (stride != 1 or in_ch != planes * block_cls.expansion)
                x = block_cls(planes, stride, down, self.width_per_group,
                              name=f"layer{i + 1}_{j}")(x, train)
                in_ch = planes * block_cls.expansion
            out[f"layer{i + 1}"] = x
        x = jnp.mean(x, axis=(1, 2))
        out["pre_logits"] = x
        return nn.Dense(self.num_classes, name="fc")(x), out


ResNet18 = functools.partial(ResNet, block="basic", layers=(2, 2, 2, 2))
ResNet34 = functools.partial(ResNet, block="basic", layers=(3, 4, 6, 3))
ResNet50 = functools.partial(ResNet, block="bottleneck", layers=(3, 4, 6, 3))
ResNet101 = functools.partial(ResNet, block="bottleneck", layers=(3, 4, 23, 3))
ResNet152 = functools.partial(ResNet, block="bottleneck", layers=(3, 8, 36, 3))

# Tiny variants for tests: every code path (downsample, both block types), few channels.
ResNetTinyBasic = functools.partial(ResNet, block="basic", layers=(1, 2, 1, 1), width=8,
                                    num_classes=10)
ResNetTinyBottleneck = functools.partial(ResNet, block="bottleneck", layers=(1, 2, 1, 1),
                                         width=8, num_classes=10)
