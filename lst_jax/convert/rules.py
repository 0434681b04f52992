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
    ignore_note="sub_block1.*: a copy of block1 that the forward pass never uses",
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


# torchvision VisionTransformer (`vit_b_16`, ...) into the same Flax module: `conv_proj`,
# `class_token`, `encoder.pos_embedding`, `encoder.layers.encoder_layer_{i}.{ln_1, ln_2,
# self_attention (in_proj_weight/bias: the fused q, k, v rows, as timm's qkv), out_proj,
# mlp.0, mlp.3}`, `encoder.ln`, `heads.head`. torchvision's LayerNorm eps (1e-6), exact GELU
# and pre-norm blocks are timm's, so only the names differ.
VIT_TORCHVISION = Rules(
    family="vit_torchvision",
    renames=(
        Rename("conv_proj", "patch_embed"),
        Rename("encoder.ln", "norm"),
        Rename("heads.head", "head"),
        *(Rename(f"encoder.layers.encoder_layer_{{i}}.{t}", f"blocks_{{i}}/{f}")
          for t, f in (("ln_1", "norm1"), ("ln_2", "norm2"), ("mlp.0", "mlp/fc1"),
                       ("mlp.3", "mlp/fc2"), ("self_attention.out_proj", "attn/proj"))),
        Rename("encoder.layers.encoder_layer_{i}.self_attention", "blocks_{i}/attn/qkv",
               leaf_prefix="in_proj_"),
    ),
    direct=(("class_token", "cls_token"), ("encoder.pos_embedding", "pos_embed")),
)

# torchvision GoogLeNet: conv{1,2,3}.{conv,bn}, inception{3a..5b}.branch1.{conv,bn},
# .branch{2,3}.{0,1}.{conv,bn}, .branch4.1.{conv,bn} (branch4.0 is the pool), fc. The
# auxiliary classifiers aux1/aux2 of the pretrained file are dropped.
_INCEPTION = ("3a", "3b", "4a", "4b", "4c", "4d", "4e", "5a", "5b")
GOOGLENET = Rules(
    family="googlenet",
    renames=(
        Rename("fc", "fc"),
        *(Rename(f"conv{{i}}.{m}", f"conv{{i}}/{m}") for m in ("conv", "bn")),
        *(Rename(f"inception{b}.branch1.{m}", f"inception{b}/branch1/{m}")
          for b in _INCEPTION for m in ("conv", "bn")),
        *(Rename(f"inception{b}.branch{{j}}.{{k}}.{m}", f"inception{b}/branch{{j}}_{{k}}/{m}")
          for b in _INCEPTION for m in ("conv", "bn")),
    ),
    ignore=(r"^aux[12]\.",),
    ignore_note="aux1.*, aux2.*: GoogLeNet's auxiliary classifiers, used only in training "
                "(eval mode returns the main logits)",
)

# family class name -> {layout: rules}; "" is the family's default layout
LAYOUTS = {
    "ResNet": {"": RESNET},
    "WideResNet": {"": WIDE_RESNET},
    "VisionTransformer": {"": VIT, "timm": VIT, "torchvision": VIT_TORCHVISION},
    "GoogLeNet": {"": GOOGLENET},
}


def rules_for(module, layout: str = "") -> Rules:
    """The conversion rules for a Flax module of the zoo and a PyTorch layout.

    Args:
        module: a zoo module (`ResNet`, `WideResNet`, `VisionTransformer`, `GoogLeNet`).
        layout: "" (the family's default: torchvision for ResNet/GoogLeNet, RobustBench for
            WideResNet, timm for ViT), or "torchvision" for a torchvision `VisionTransformer`.

    Raises:
        ValueError: the module's family has no PyTorch converter, or not in that layout.
    """
    from lst_jax.models.googlenet import GoogLeNet
    from lst_jax.models.resnet import ResNet
    from lst_jax.models.vit import VisionTransformer
    from lst_jax.models.wide_resnet import WideResNet

    for cls in (ResNet, WideResNet, VisionTransformer, GoogLeNet):
        if isinstance(module, cls):
            layouts = LAYOUTS[cls.__name__]
            if layout not in layouts:
                known = ", ".join(repr(k) for k in layouts if k)
                raise ValueError(f"no {layout!r} layout for {cls.__name__}; known layouts: "
                                 f"{known or 'only the default'}")
            return layouts[layout]
    raise ValueError(f"no PyTorch converter for {type(module).__name__}; converters exist "
                     "for ResNet, WideResNet, VisionTransformer and GoogLeNet")
