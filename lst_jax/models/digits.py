"""The project's own small models for the shipped 32x32x3 digits data.

`DigitsResNet`: a CIFAR-style pre-logit ResNet (3x3 stem, three stages of basic blocks, global
average pool). `DigitsViT`: a small Vision Transformer (8x8 patches, class token). Both return
`(logits, out)` with named intermediates.
"""

from __future__ import annotations

from typing import Sequence

import jax.numpy as jnp
import flax.linen as nn

from lst_jax.models.layers import Conv, flax_attention_fn


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


class EncoderBlock(nn.Module):
    dim: int
    heads: int
    mlp_dim: int

    @nn.compact
    def __call__(self, x):
        y = nn.LayerNorm(epsilon=1e-6, name="norm1")(x)
        y = nn.MultiHeadDotProductAttention(num_heads=self.heads, attention_fn=flax_attention_fn,
                                            name="attn")(y, y)
        x = x + y
        y = nn.LayerNorm(epsilon=1e-6, name="norm2")(x)
        y = nn.Dense(self.mlp_dim, name="fc1")(y)
        y = nn.Dense(self.dim, name="fc2")(nn.gelu(y, approximate=False))
        return x + y


class DigitsViT(nn.Module):
    """Small ViT: `patch` x `patch` patches (8x8 = 2x2 original digit pixels), class token, learned position embedding."""

    num_classes: int = 10
    patch: int = 8
    dim: int = 96
    depth: int = 4
    heads: int = 4
    mlp_dim: int = 192

    @nn.compact
    def __call__(self, x, train: bool = False):
        del train  # no dropout / batch statistics
        out = {}
        x = Conv(self.dim, (self.patch, self.patch), (self.patch, self.patch),
                    padding="VALID", name="patch_embed")(x)
        b, h, w, d = x.shape
        x = x.reshape(b, h * w, d)
        cls = self.param("cls_token", nn.initializers.zeros, (1, 1, d))
        x = jnp.concatenate([jnp.broadcast_to(cls, (b, 1, d)).astype(x.dtype), x], axis=1)
        pos = self.param("pos_embed", nn.initializers.normal(0.02), (1, h * w + 1, d))
        x = x + pos.astype(x.dtype)
        for i in range(self.depth):
            x = EncoderBlock(self.dim, self.heads, self.mlp_dim, name=f"block{i + 1}")(x)
            out[f"block{i + 1}"] = x
        x = nn.LayerNorm(epsilon=1e-6, name="norm")(x)
        out["pre_logits"] = x[:, 0]
        logits = nn.Dense(self.num_classes, name="head")(x[:, 0])
        return logits, out
