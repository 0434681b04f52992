"""The project's own small ResNet for the shipped 32x32x3 digits data.

`DigitsResNet`: a CIFAR-style pre-logit ResNet (3x3 stem, three stages of basic blocks, global
average pool), returning `(logits, out)` with named intermediates. The digits ViT is a
configuration of the zoo's ViT: `lst_jax.models.vit.DigitsViT`.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

from lst_jax.models.layers import Conv


class BasicBlock(nn.Module):
    features: int
    stride: int = 1

    @nn.compact
    def __call__(self, x, train: bool = False):
        norm = lambda name: nn.BatchNorm(use_running_average=not train, momentum=0.9, name=name)
        y = Conv(self.features, (3, 3), (self.stride, self.stride), padding=1,
                    use_bias=False, name="conv1")(x)
        y = nn.relu(norm("bn1")(y))
        y = Conv(self.features, (3, 3), padding=1, use_bias=False, name="conv2")(y)
        y = norm("bn2")(y)
        if self.stride != 1 or x.shape[-1] != self.features:
            x = Conv(self.features, (1, 1), (self.stride, self.stride), use_bias=False,
                        name="shortcut_conv")(x)
            x = norm("shortcut_bn")(x)
        return nn.relu(x + y)


class DigitsResNet(nn.Module):
    """Small CIFAR-style ResNet: widths per stage, `blocks` basic blocks per stage."""

    num_classes: int = 10
    widths: Sequence[int] = (16, 32, 64)
    blocks: int = 1

    @nn.compact
    def __call__(self, x, train: bool = False):
        out = {}
        x = Conv(self.widths[0], (3, 3), padding=1, use_bias=False, name="stem_conv")(x)
        x = nn.relu(nn.BatchNorm(use_running_average=not train, momentum=0.9,
                                 name="stem_bn")(x))
        for i, w in enumerate(self.widths):
            for j in range(self.blocks):
                stride = 2 if (i > 0 and j == 0) else 1
                x = BasicBlock(w, stride, name=f"stage{i + 1}_block{j + 1}")(x, train)
            out[f"stage{i + 1}"] = x
        x = jnp.mean(x, axis=(1, 2))
        out["pre_logits"] = x
        logits = nn.Dense(self.num_classes, name="head")(x)
        return logits, out
