"""Vision Transformer / DeiT in the timm layout, and the ViT-S with convolutional stem.

Covers timm `deit_tiny_patch16_224`, `deit_small_patch16_224`, `vit_base_patch16_224` (class
token, learned position embedding added after the class token is prepended, pre-norm blocks
with a fused `qkv` projection, LayerNorm eps 1e-6, exact GELU, head on the class token) and
RobustBench `Singh2023Revisiting_ViT-S-ConvStem` (arXiv 2303.01870: DeiT-S whose 16x16 patch
projection is replaced by four stride-2 3x3 convolutions with channels-first LayerNorm and
GELU, then a 1x1 convolution).

torchvision's `vit_b_16` is the same network (pre-norm blocks, LayerNorm eps 1e-6, exact GELU,
fused q/k/v input projection, position embedding added after the class token, head on the
class token): its weights load into `ViTBase` with the converter's "torchvision" layout
(`lst_jax.convert.rules.VIT_TORCHVISION`), a rename only.

`DigitsViT` is the project's own small ViT for the shipped digits data, a configuration of the
same module (checkpoints written by the earlier separate implementation are rewritten into
this layout by `lst_jax.models.migrate`, `lst-jax migrate`).

`__call__(x, train=False) -> (logits, out)`; `out` holds `tokens` (patch tokens after the
stem), `blocks_0` ... and `pre_logits` (the normalised class token).
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax.numpy as jnp

from lst_jax.models.layers import Conv, dot_product_attention


def _layer_norm(fast_variance: bool, name: str) -> nn.LayerNorm:
    """LayerNorm, eps 1e-6. timm computes torch's two-pass variance (`fast_variance=False`);
    the shipped digits ViT was trained with flax's one-pass E[x^2] - E[x]^2 (`True`). The two
    differ at float32 round-off only."""
    return nn.LayerNorm(epsilon=1e-6, use_fast_variance=fast_variance, name=name)


class Attention(nn.Module):
    dim: int
    heads: int

    @nn.compact
    def __call__(self, x):
        b, n, d = x.shape
        hd = d // self.heads
        qkv = nn.Dense(3 * d, name="qkv")(x).reshape(b, n, 3, self.heads, hd)
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]          # (b, n, h, hd)
        y = dot_product_attention(q, k, v).reshape(b, n, d)
        return nn.Dense(d, name="proj")(y)


class Mlp(nn.Module):
    dim: int
    hidden: int

    @nn.compact
    def __call__(self, x):
        x = nn.gelu(nn.Dense(self.hidden, name="fc1")(x), approximate=False)
        return nn.Dense(self.dim, name="fc2")(x)


class Block(nn.Module):
    dim: int
    heads: int
    mlp_hidden: int
    fast_variance: bool = False

    @nn.compact
    def __call__(self, x):
        norm = lambda name: _layer_norm(self.fast_variance, name)
        x = x + Attention(self.dim, self.heads, name="attn")(norm("norm1")(x))
        return x + Mlp(self.dim, self.mlp_hidden, name="mlp")(norm("norm2")(x))


class ConvStem(nn.Module):
    """4 x (3x3 stride-2 conv, LayerNorm over channels, GELU), then a 1x1 conv to `dim`.

    Submodule names follow the indices of the PyTorch `nn.Sequential` (`stem_0`, `stem_1`,
    `stem_3`, ...; the GELUs hold no parameters).
    """

    width: int = 48
    dim: int = 384
    fast_variance: bool = False

    @nn.compact
    def __call__(self, x):
        for i in range(4):
            x = Conv(self.width * 2 ** i, (3, 3), 2, padding=1, name=f"stem_{3 * i}")(x)
            x = nn.gelu(_layer_norm(self.fast_variance, f"stem_{3 * i + 1}")(x),
                        approximate=False)
        return Conv(self.dim, (1, 1), name="stem_12")(x)


class VisionTransformer(nn.Module):
    """timm VisionTransformer with class-token pooling.

    Attributes:
        patch: patch size of the linear stem (ignored by the conv stem, whose stride is 16).
        dim, depth, heads, mlp_ratio: transformer size (DeiT-S: 384, 12, 6, 4).
        stem: "patch" (one strided conv) or "conv" (ConvStem).
        stem_width: first ConvStem width (48 for ViT-S-ConvStem).
        fast_variance: LayerNorm variance as flax's one-pass E[x^2] - E[x]^2 (the shipped
            digits ViT) instead of timm's two-pass mean((x - mean)^2) (default).

    Shape:
        x: (B, H, W, 3), already normalised -> logits (B, num_classes). The position
        embedding has (H/16)(W/16) + 1 rows, fixed by the input size at init.
    """

    num_classes: int = 1000
    patch: int = 16
    dim: int = 384
    depth: int = 12
    heads: int = 6
    mlp_ratio: float = 4.0
    stem: str = "patch"
    stem_width: int = 48
    fast_variance: bool = False

    @nn.compact
    def __call__(self, x, train: bool = False):
        del train  # no dropout or batch statistics at inference
        out = {}
        if self.stem == "patch":
            x = Conv(self.dim, (self.patch, self.patch), self.patch, padding="VALID",
                     name="patch_embed")(x)
        elif self.stem == "conv":
            x = ConvStem(self.stem_width, self.dim, self.fast_variance, name="patch_embed")(x)
        else:
            raise ValueError(f"stem must be 'patch' or 'conv', got {self.stem!r}")
        b, h, w, d = x.shape
        x = x.reshape(b, h * w, d)
        out["tokens"] = x
        cls = self.param("cls_token", nn.initializers.zeros, (1, 1, d))
        pos = self.param("pos_embed", nn.initializers.normal(0.02), (1, h * w + 1, d))
        x = jnp.concatenate([jnp.broadcast_to(cls, (b, 1, d)).astype(x.dtype), x], axis=1)
        x = x + pos.astype(x.dtype)
        hidden = int(self.dim * self.mlp_ratio)
        for i in range(self.depth):
            x = Block(self.dim, self.heads, hidden, self.fast_variance, name=f"blocks_{i}")(x)
            out[f"blocks_{i}"] = x
        x = _layer_norm(self.fast_variance, "norm")(x)
        out["pre_logits"] = x[:, 0]
        return nn.Dense(self.num_classes, name="head")(x[:, 0]), out


DeiTTiny = functools.partial(VisionTransformer, dim=192, depth=12, heads=3)
DeiTSmall = functools.partial(VisionTransformer, dim=384, depth=12, heads=6)
ViTBase = functools.partial(VisionTransformer, dim=768, depth=12, heads=12)
ViTSmallConvStem = functools.partial(VisionTransformer, dim=384, depth=12, heads=6,
                                     stem="conv", stem_width=48)
# The project's own ViT for the shipped 32x32x3 digits (checkpoints/digits_vit-*): 8x8 patches
# (2x2 original digit pixels), 16 tokens + class token, 4 blocks of width 96, MLP 192.
DigitsViT = functools.partial(VisionTransformer, num_classes=10, patch=8, dim=96, depth=4,
                              heads=4, mlp_ratio=2.0, fast_variance=True)
# Tiny variants for tests (32x32 inputs).
ViTTiny = functools.partial(VisionTransformer, num_classes=10, patch=8, dim=32, depth=2,
                            heads=4)
ViTTinyConvStem = functools.partial(VisionTransformer, num_classes=10, dim=64, depth=2,
                                    heads=4, stem="conv", stem_width=8)
