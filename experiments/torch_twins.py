"""PyTorch twins of the shipped digits models, with weight copying from the Flax variables.

Written from `lst_jax/models/digits.py` (same layer order, same epsilons, exact GELU):

- `TorchDigitsResNet`: 3x3 stem conv + BN + ReLU, one basic block per stage (3x3 conv, BN,
  ReLU, 3x3 conv, BN, 1x1 conv + BN shortcut when the shape changes), global average pool,
  linear head;
- `TorchDigitsViT`: 8x8 patch embedding, class token, learned position embedding, pre-norm
  encoder blocks (LayerNorm eps 1e-6, multi-head attention with separate q/k/v projections,
  exact-GELU MLP), final LayerNorm, head on the class token.

`digits_twin(arch, variables)` builds the twin in eval mode and copies the Flax variables
(kernels HWIO -> OIHW, dense kernels transposed, BatchNorm statistics to running buffers).
Used by experiments/benchmark.py and its smoke test.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


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


class _Encoder(nn.Module):
    def __init__(self, dim, heads, mlp_dim):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.q, self.k, self.v = (nn.Linear(dim, dim) for _ in range(3))
        self.out = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.fc1 = nn.Linear(dim, mlp_dim)
        self.fc2 = nn.Linear(mlp_dim, dim)

    def forward(self, x):
        b, n, d = x.shape
        hd = d // self.heads
        y = self.norm1(x)
        split = lambda t: t.view(b, n, self.heads, hd).transpose(1, 2)   # (B, h, N, hd)
        q, k, v = split(self.q(y)), split(self.k(y)), split(self.v(y))
        att = torch.softmax((q / math.sqrt(hd)) @ k.transpose(-2, -1), dim=-1)
        y = (att @ v).transpose(1, 2).reshape(b, n, d)
        x = x + self.out(y)
        return x + self.fc2(F.gelu(self.fc1(self.norm2(x))))


class TorchDigitsViT(nn.Module):
    def __init__(self, num_classes=10, patch=8, dim=96, depth=4, heads=4, mlp_dim=192,
                 image_size=32):
        super().__init__()
        self.patch_embed = nn.Conv2d(3, dim, patch, patch)
        n = (image_size // patch) ** 2
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, n + 1, dim))
        self.blocks = nn.Sequential(*[_Encoder(dim, heads, mlp_dim) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x):
        x = self.patch_embed(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        x = self.norm(self.blocks(x))
        return self.head(x[:, 0])


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


def _ln(m: nn.LayerNorm, p: dict):
    m.weight.copy_(_t(p["scale"]))
    m.bias.copy_(_t(p["bias"]))


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


def _vit_from_flax(module, variables, image_size) -> TorchDigitsViT:
    m = TorchDigitsViT(module.num_classes, module.patch, module.dim, module.depth,
                       module.heads, module.mlp_dim, image_size)
    p = variables["params"]
    _conv(m.patch_embed, p["patch_embed"])
    m.cls_token.copy_(_t(p["cls_token"]))
    m.pos_embed.copy_(_t(p["pos_embed"]))
    for i, blk in enumerate(m.blocks):
        bp = p[f"block{i + 1}"]
        _ln(blk.norm1, bp["norm1"])
        _ln(blk.norm2, bp["norm2"])
        for name in ("q", "k", "v"):
            _dense(getattr(blk, name), bp["attn"][{"q": "query", "k": "key", "v": "value"}[name]])
        ko = np.asarray(bp["attn"]["out"]["kernel"])
        blk.out.weight.copy_(_t(ko.reshape(-1, ko.shape[-1]).T))
        blk.out.bias.copy_(_t(bp["attn"]["out"]["bias"]))
        _dense(blk.fc1, bp["fc1"])
        _dense(blk.fc2, bp["fc2"])
    _ln(m.norm, p["norm"])
    _dense(m.head, p["head"])
    return m


def digits_twin(module, variables, image_size: int = 32) -> nn.Module:
    """The PyTorch twin of a `DigitsResNet` / `DigitsViT` with the given Flax variables.

    Returns the twin in eval mode with `requires_grad=False` on every parameter (the
    traversal differentiates with respect to the input only).
    """
    from lst_jax.models.digits import DigitsResNet, DigitsViT

    with torch.no_grad():
        if isinstance(module, DigitsResNet):
            m = _resnet_from_flax(module, variables)
        elif isinstance(module, DigitsViT):
            m = _vit_from_flax(module, variables, image_size)
        else:
            raise ValueError(f"no PyTorch twin for {type(module).__name__}")
    for q in m.parameters():
        q.requires_grad_(False)
    return m.eval()
