"""PyTorch twins of the shipped digits models, with weight copying from the Flax variables.

- `TorchDigitsResNet`, written from `lst_jax/models/digits.py` (same layer order and
  epsilons): 3x3 stem conv + BN + ReLU, one basic block per stage (3x3 conv, BN, ReLU, 3x3
  conv, BN, 1x1 conv + BN shortcut when the shape changes), global average pool, linear head;
  the Flax variables are copied in (kernels HWIO -> OIHW, dense kernels transposed, BatchNorm
  statistics to running buffers);
- the digits ViT (`vit.DigitsViT`, a configuration of the zoo's timm-layout ViT): the
  independent timm-layout `TorchViT` (`lst_jax.bench.torch_models`), loaded with the state dict
  `lst_jax.convert.export_state_dict` writes (torch's LayerNorm is two-pass where the digits
  ViT's is flax's one-pass variance: equal to float32 round-off).

`digits_twin(module, variables)` builds the twin in eval mode; `TorchNormalized` puts a
model's input normalisation in front of a twin (pixels in [0, 1], as lst_jax's `Classifier`).
The PyTorch side of `lst-jax bench`; imported only where torch is used.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class TorchNormalized(nn.Module):
    """`module((x - mean) / std)` on NCHW pixels in [0, 1] (identity without mean/std)."""

    def __init__(self, module, normalization):
        super().__init__()
        self.module = module
        self.has_norm = normalization.mean is not None
        if self.has_norm:
            self.register_buffer("mean", torch.tensor(normalization.mean).view(1, -1, 1, 1))
            self.register_buffer("std", torch.tensor(normalization.std).view(1, -1, 1, 1))

    def forward(self, x):
        return self.module((x - self.mean) / self.std if self.has_norm else x)


class _Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = None
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                          nn.BatchNorm2d(cout))

    def forward(self, x):
        y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu((x if self.shortcut is None else self.shortcut(x)) + y)


class TorchDigitsResNet(nn.Module):
    def __init__(self, num_classes=10, widths=(16, 32, 64), blocks=1):
        super().__init__()
        self.widths, self.blocks = tuple(widths), blocks
        self.stem_conv = nn.Conv2d(3, widths[0], 3, 1, 1, bias=False)
        self.stem_bn = nn.BatchNorm2d(widths[0])
        cin = widths[0]
        self.stages = nn.ModuleList()
        for i, w in enumerate(widths):
            stage = []
            for j in range(blocks):
                stage.append(_Block(cin, w, 2 if (i > 0 and j == 0) else 1))
                cin = w
            self.stages.append(nn.Sequential(*stage))
        self.head = nn.Linear(cin, num_classes)

    def forward(self, x):
        x = F.relu(self.stem_bn(self.stem_conv(x)))
        for stage in self.stages:
            x = stage(x)
        return self.head(x.mean(dim=(2, 3)))


def _t(a) -> torch.Tensor:
    return torch.from_numpy(np.array(a, np.float32, copy=True))


def _conv(m: nn.Conv2d, p: dict):
    m.weight.copy_(_t(np.asarray(p["kernel"]).transpose(3, 2, 0, 1)))
    if m.bias is not None:
        m.bias.copy_(_t(p["bias"]))


def _dense(m: nn.Linear, p: dict):
    k = np.asarray(p["kernel"])
    m.weight.copy_(_t(k.reshape(k.shape[0], -1).T if k.ndim == 3 else k.T))
    m.bias.copy_(_t(np.asarray(p["bias"]).reshape(-1)))


def _bn(m: nn.BatchNorm2d, p: dict, s: dict):
    m.weight.copy_(_t(p["scale"]))
    m.bias.copy_(_t(p["bias"]))
    m.running_mean.copy_(_t(s["mean"]))
    m.running_var.copy_(_t(s["var"]))


def _resnet_from_flax(module, variables) -> TorchDigitsResNet:
    m = TorchDigitsResNet(module.num_classes, module.widths, module.blocks)
    p, s = variables["params"], variables["batch_stats"]
    _conv(m.stem_conv, p["stem_conv"])
    _bn(m.stem_bn, p["stem_bn"], s["stem_bn"])
    for i, stage in enumerate(m.stages):
        for j, blk in enumerate(stage):
            name = f"stage{i + 1}_block{j + 1}"
            bp, bs = p[name], s[name]
            _conv(blk.conv1, bp["conv1"])
            _bn(blk.bn1, bp["bn1"], bs["bn1"])
            _conv(blk.conv2, bp["conv2"])
            _bn(blk.bn2, bp["bn2"], bs["bn2"])
            if blk.shortcut is not None:
                _conv(blk.shortcut[0], bp["shortcut_conv"])
                _bn(blk.shortcut[1], bp["shortcut_bn"], bs["shortcut_bn"])
    _dense(m.head, p["head"])
    return m


def _vit_from_flax(module, variables, image_size) -> nn.Module:
    from lst_jax.bench.torch_models import TorchViT  # the timm-layout twin
    from lst_jax.convert import export_state_dict

    if module.stem != "patch":
        raise ValueError("the ViT twin covers the patch stem only")
    m = TorchViT(image_size, module.patch, module.dim, module.depth, module.heads,
                 module.mlp_ratio, module.num_classes)
    sd = export_state_dict(variables, module)
    m.load_state_dict({k: torch.from_numpy(np.array(v, copy=True)) for k, v in sd.items()})
    return m


def digits_twin(module, variables, image_size: int = 32) -> nn.Module:
    """The PyTorch twin of a `DigitsResNet` / `VisionTransformer` (e.g. `vit.DigitsViT`) with
    the given Flax variables.

    Returns the twin in eval mode with `requires_grad=False` on every parameter (the
    traversal differentiates with respect to the input only).
    """
    from lst_jax.models.digits import DigitsResNet
    from lst_jax.models.vit import VisionTransformer

    with torch.no_grad():
        if isinstance(module, DigitsResNet):
            m = _resnet_from_flax(module, variables)
        elif isinstance(module, VisionTransformer):
            m = _vit_from_flax(module, variables, image_size)
        else:
            raise ValueError(f"no PyTorch twin for {type(module).__name__}")
    for q in m.parameters():
        q.requires_grad_(False)
    return m.eval()
