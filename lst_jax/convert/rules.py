"""Per-family rename rules (PyTorch module path <-> Flax module path).

Leaf names and transposes are shared by all families (see `lst_jax.convert.core`).
"""

from __future__ import annotations

from lst_jax.convert.core import Rename, Rules

# torchvision / timm ResNet:  layer{s}.{b}.conv1 ... downsample.{0: conv, 1: bn}, fc
RESNET = Rules(
    family="resnet",
    renames=(
        Rename("conv1", "conv1"),
        Rename("bn1", "bn1"),
        Rename("fc", "fc"),
        Rename("layer{i}.{j}.downsample.0", "layer{i}_{j}/downsample_conv"),
        Rename("layer{i}.{j}.downsample.1", "layer{i}_{j}/downsample_bn"),
        *(Rename(f"layer{{i}}.{{j}}.{m}", f"layer{{i}}_{{j}}/{m}")
          for m in ("conv1", "bn1", "conv2", "bn2", "conv3", "bn3")),
    ),
)

# RobustBench WideResNet: block{g}.layer.{b}.{bn1,conv1,bn2,conv2,convShortcut}, bn1, fc.
# `sub_block1` (a second copy of block1 kept by some checkpoints, never used in the forward
# pass) is dropped.
WIDE_RESNET = Rules(
    family="wide_resnet",
    renames=(
        Rename("conv1", "conv1"),
        Rename("bn1", "bn1"),
        Rename("fc", "fc"),
        Rename("block{i}.layer.{j}.convShortcut", "block{i}_{j}/shortcut"),
        *(Rename(f"block{{i}}.layer.{{j}}.{m}", f"block{{i}}_{{j}}/{m}")
          for m in ("bn1", "conv1", "bn2", "conv2")),
    ),
    ignore=(r"^sub_block1\.",),
)

# timm VisionTransformer (+ RobustBench ConvStem replacing patch_embed.proj).
VIT = Rules(
    family="vit",
    renames=(
        Rename("patch_embed.proj", "patch_embed"),
        Rename("patch_embed.proj.stem.{i}", "patch_embed/stem_{i}"),
        Rename("norm", "norm"),
        Rename("head", "head"),
        *(Rename(f"blocks.{{i}}.{m}", f"blocks_{{i}}/{m}") for m in ("norm1", "norm2")),
        *(Rename(f"blocks.{{i}}.attn.{m}", f"blocks_{{i}}/attn/{m}") for m in ("qkv", "proj")),
        *(Rename(f"blocks.{{i}}.mlp.{m}", f"blocks_{{i}}/mlp/{m}") for m in ("fc1", "fc2")),
    ),
    direct=(("cls_token", "cls_token"), ("pos_embed", "pos_embed")),
)


def rules_for(module) -> Rules:
    """The conversion rules for a Flax module of the zoo.

    Raises:
        ValueError: the module's family has no PyTorch converter.
    """
    from lst_jax.models.resnet import ResNet
    from lst_jax.models.vit import VisionTransformer
    from lst_jax.models.wide_resnet import WideResNet

    for cls, rules in ((ResNet, RESNET), (WideResNet, WIDE_RESNET),
                       (VisionTransformer, VIT)):
        if isinstance(module, cls):
            return rules
    raise ValueError(f"no PyTorch converter for {type(module).__name__}; converters exist "
                     "for ResNet, WideResNet and VisionTransformer")
