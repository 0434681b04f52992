"""WideResNet in the RobustBench CIFAR-10 layout (pre-activation basic blocks, TRADES code).

Covers RobustBench `Standard` (WRN-28-10), `Wu2020Adversarial_extra` (WRN-28-10; its
checkpoint carries an unused `sub_block1`, which the converter drops) and `Wu2020Adversarial`
(WRN-34-10). Inputs are 32x32 images in [0, 1] with no normalisation.

Block semantics (as in the PyTorch original): `a = relu(bn1(x))`; the residual branch is
`conv2(relu(bn2(conv1(a))))`; the shortcut is `x` when the channel count is unchanged,
otherwise `shortcut(a)` (a strided 1x1 conv of the *pre-activated* input).

`__call__(x, train=False) -> (logits, out)`; `out` holds `conv1`, `block1` ... `block3` and
`pre_logits`.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax.numpy as jnp

from lst_jax.models.layers import BatchNorm as _BN
from lst_jax.models.layers import Conv


class WideBasic(nn.Module):
    out_planes: int
    stride: int = 1

    @nn.compact
    def __call__(self, x, train: bool = False):
        bn = functools.partial(_BN, use_running_average=not train)
        equal = x.shape[-1] == self.out_planes
        a = nn.relu(bn(name="bn1")(x))
        y = Conv(self.out_planes, (3, 3), self.stride, padding=1, use_bias=False,
                 name="conv1")(a)
        y = nn.relu(bn(name="bn2")(y))
        y = Conv(self.out_planes, (3, 3), 1, padding=1, use_bias=False, name="conv2")(y)
        if equal:
            shortcut = x
        else:
            shortcut = Conv(self.out_planes, (1, 1), self.stride, padding=0, use_bias=False,
                            name="shortcut")(a)
        return shortcut + y


class WideResNet(nn.Module):
    """WRN-depth-widen_factor for 32x32 inputs.

    Attributes:
        depth: 6n + 4 (28 -> 4 blocks per group, 34 -> 5).
        widen_factor: channel multiplier (group widths 16k, 32k, 64k).
        num_classes: classifier outputs.

    Shape:
        x: (B, 32, 32, 3) in [0, 1] -> logits (B, num_classes). The final pooling is a global
        mean, equal to the original `avg_pool2d(out, 8)` at the native 32x32 size.
    """

    depth: int = 28
    widen_factor: int = 10
    num_classes: int = 10

    @nn.compact
    def __call__(self, x, train: bool = False):
        if (self.depth - 4) % 6:
            raise ValueError(f"WideResNet depth must be 6n + 4, got {self.depth}")
        n = (self.depth - 4) // 6
        widths = (16 * self.widen_factor, 32 * self.widen_factor, 64 * self.widen_factor)
        out = {}
        x = Conv(16, (3, 3), 1, padding=1, use_bias=False, name="conv1")(x)
        out["conv1"] = x
        for g, (w, stride) in enumerate(zip(widths, (1, 2, 2))):
            for j in range(n):
                x = WideBasic(w, stride if j == 0 else 1, name=f"block{g + 1}_{j}")(x, train)
            out[f"block{g + 1}"] = x
        x = nn.relu(_BN(use_running_average=not train, name="bn1")(x))
        x = jnp.mean(x, axis=(1, 2))
        out["pre_logits"] = x
        return nn.Dense(self.num_classes, name="fc")(x), out


WRN28_10 = functools.partial(WideResNet, depth=28, widen_factor=10)
WRN34_10 = functools.partial(WideResNet, depth=34, widen_factor=10)
# Tiny variant for tests: two blocks per group, a widening first block (conv shortcut at
# stride 1, as in WRN-28-10) and identity shortcuts.
WRNTiny = functools.partial(WideResNet, depth=16, widen_factor=2)
