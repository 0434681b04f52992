"""Independent pure-`torch.nn` definitions of the zoo architectures, written from the
published architectures with the original state-dict key names:

- `TorchResNet`: torchvision ResNet (He et al. 2016; v1.5 with the stride on the 3x3 conv of
  the bottleneck), keys `conv1`, `bn1`, `layer{s}.{b}.conv1`, `...downsample.{0,1}`, `fc`;
- `TorchWideResNet`: the RobustBench / TRADES CIFAR WideResNet (pre-activation blocks),
  keys `conv1`, `block{g}.layer.{b}.{bn1,conv1,bn2,conv2,convShortcut}`, `bn1`, `fc`, and the
  optional unused `sub_block1`;
- `TorchViT`: the timm VisionTransformer (class token, fused qkv), keys `cls_token`,
  `pos_embed`, `patch_embed.proj`, `blocks.{i}.{norm1,attn.qkv,attn.proj,norm2,mlp.fc1,
  mlp.fc2}`, `norm`, `head`; with `convstem=True` the `patch_embed.proj` is the ConvStem of
  Singh et al. 2023 (`patch_embed.proj.stem.{0,1,3,4,...,12}`);
These twins do not use torchvision or timm. Every model records named intermediates in
`self.feats` during `forward` (NCHW / NLD) for layer-by-layer comparisons. The PyTorch side of
`lst-jax bench` (ResNet-50, DeiT) and the tests' reference (tests/models/test_zoo_*.py, through
tests/torch_reference.py); imported only where torch is used.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


# ----------------------------------------------------------------------------- ResNet
class TorchBasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None, width_per_group=64):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + (self.downsample(x) if self.downsample is not None else x))


class TorchBottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None, width_per_group=64):
        super().__init__()
        width = planes * width_per_group // 64
        self.conv1 = nn.Conv2d(inplanes, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.downsample = downsample

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = F.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return F.relu(y + (self.downsample(x) if self.downsample is not None else x))


class TorchResNet(nn.Module):
    def __init__(self, block="bottleneck", layers=(3, 4, 6, 3), num_classes=1000, width=64,
                 width_per_group=64):
        super().__init__()
        blk = {"basic": TorchBasicBlock, "bottleneck": TorchBottleneck}[block]
        self.conv1 = nn.Conv2d(3, width, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        inplanes = width
        for i, n in enumerate(layers):
            planes = width * 2 ** i
            stride = 1 if i == 0 else 2
            blocks = []
            for j in range(n):
                down = None
                if j == 0 and (stride != 1 or inplanes != planes * blk.expansion):
                    down = nn.Sequential(
                        nn.Conv2d(inplanes, planes * blk.expansion, 1, stride, bias=False),
                        nn.BatchNorm2d(planes * blk.expansion))
                blocks.append(blk(inplanes, planes, stride if j == 0 else 1, down,
                                  width_per_group))
                inplanes = planes * blk.expansion
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        self.n_stages = len(layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(inplanes, num_classes)
        self.feats = {}

    def forward(self, x):
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        self.feats = {"stem": x}
        for i in range(self.n_stages):
            x = getattr(self, f"layer{i + 1}")(x)
            self.feats[f"layer{i + 1}"] = x
        x = torch.flatten(self.avgpool(x), 1)
        self.feats["pre_logits"] = x
        return self.fc(x)


# ----------------------------------------------------------------------------- WideResNet
class TorchWideBlock(nn.Module):
    def __init__(self, in_planes, out_planes, stride):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, out_planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_planes)
        self.conv2 = nn.Conv2d(out_planes, out_planes, 3, 1, 1, bias=False)
        self.equal = in_planes == out_planes
        self.convShortcut = (None if self.equal else
                             nn.Conv2d(in_planes, out_planes, 1, stride, 0, bias=False))

    def forward(self, x):
        a = F.relu(self.bn1(x))
        y = self.conv2(F.relu(self.bn2(self.conv1(a))))
        return (x if self.equal else self.convShortcut(a)) + y


class TorchNetworkBlock(nn.Module):
    def __init__(self, n, in_planes, out_planes, stride):
        super().__init__()
        self.layer = nn.Sequential(*[TorchWideBlock(in_planes if i == 0 else out_planes,
                                                    out_planes, stride if i == 0 else 1)
                                     for i in range(n)])

    def forward(self, x):
        return self.layer(x)


class TorchWideResNet(nn.Module):
    def __init__(self, depth=28, widen_factor=10, num_classes=10, sub_block1=False):
        super().__init__()
        n = (depth - 4) // 6
        ch = [16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        self.conv1 = nn.Conv2d(3, ch[0], 3, 1, 1, bias=False)
        self.block1 = TorchNetworkBlock(n, ch[0], ch[1], 1)
        if sub_block1:  # present in some RobustBench checkpoints, never used
            self.sub_block1 = TorchNetworkBlock(n, ch[0], ch[1], 1)
        self.block2 = TorchNetworkBlock(n, ch[1], ch[2], 2)
        self.block3 = TorchNetworkBlock(n, ch[2], ch[3], 2)
        self.bn1 = nn.BatchNorm2d(ch[3])
        self.fc = nn.Linear(ch[3], num_classes)
        self.n_channels = ch[3]
        self.feats = {}

    def forward(self, x):
        x = self.conv1(x)
        self.feats = {"conv1": x}
        for g in (1, 2, 3):
            x = getattr(self, f"block{g}")(x)
            self.feats[f"block{g}"] = x
        x = F.relu(self.bn1(x))
        x = F.avg_pool2d(x, 8).view(-1, self.n_channels)
        self.feats["pre_logits"] = x
        return self.fc(x)


# ----------------------------------------------------------------------------- ViT
class LayerNormChannelsFirst(nn.Module):
    """ConvNeXt-style LayerNorm over the channel axis of an NCHW tensor."""

    def __init__(self, c, eps=1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(c))
        self.bias = nn.Parameter(torch.zeros(c))
        self.eps = eps

    def forward(self, x):
        u = x.mean(1, keepdim=True)
        s = (x - u).pow(2).mean(1, keepdim=True)
        x = (x - u) / torch.sqrt(s + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


class ConvStemBlock(nn.Module):
    def __init__(self, width=48, dim=384):
        super().__init__()
        layers, c_in = [], 3
        for i in range(4):
            c = width * 2 ** i
            layers += [nn.Conv2d(c_in, c, 3, 2, 1), LayerNormChannelsFirst(c), nn.GELU()]
            c_in = c
        layers.append(nn.Conv2d(c_in, dim, 1, 1, 0))
        self.stem = nn.Sequential(*layers)

    def forward(self, x):
        return self.stem(x)


class PatchEmbed(nn.Module):
    def __init__(self, patch, dim, convstem=False, stem_width=48):
        super().__init__()
        self.proj = (ConvStemBlock(stem_width, dim) if convstem
                     else nn.Conv2d(3, dim, patch, patch))

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)     # (B, N, D)


class TorchAttention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, n, d = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]                     # (B, heads, N, hd)
        att = (q @ k.transpose(-2, -1)) / math.sqrt(d // self.heads)
        y = att.softmax(-1) @ v
        return self.proj(y.transpose(1, 2).reshape(b, n, d))


class TorchMlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class TorchBlock(nn.Module):
    def __init__(self, dim, heads, hidden):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = TorchAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = TorchMlp(dim, hidden)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class TorchViT(nn.Module):
    def __init__(self, img_size=224, patch=16, dim=384, depth=12, heads=6, mlp_ratio=4.0,
                 num_classes=1000, convstem=False, stem_width=48):
        super().__init__()
        self.patch_embed = PatchEmbed(patch, dim, convstem, stem_width)
        n = (img_size // (16 if convstem else patch)) ** 2
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.randn(1, n + 1, dim) * 0.02)
        self.blocks = nn.Sequential(*[TorchBlock(dim, heads, int(dim * mlp_ratio))
                                      for _ in range(depth)])
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, num_classes)
        self.feats = {}

    def forward(self, x):
        x = self.patch_embed(x)
        self.feats = {"tokens": x}
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        for i, blk in enumerate(self.blocks):
            x = blk(x)
            self.feats[f"blocks_{i}"] = x
        x = self.norm(x)
        self.feats["pre_logits"] = x[:, 0]
        return self.head(x[:, 0])


# ----------------------------------------------------------------------------- helpers
def randomize_(model: nn.Module, seed: int = 0) -> nn.Module:
    """Randomises what random init leaves trivial: BatchNorm running statistics and affine
    parameters, LayerNorm affine parameters, the class token (timm `cls_token`, torchvision
    `class_token`) and zero-initialised linear layers (torchvision's ViT head); returns the
    model in eval mode. Works on the twins here and on torchvision's own models."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                m.running_mean.copy_(0.2 * torch.randn(c, generator=g))
                m.running_var.copy_(0.5 + torch.rand(c, generator=g))
                m.weight.copy_(0.5 + torch.rand(c, generator=g))
                m.bias.copy_(0.2 * torch.randn(c, generator=g))
                m.num_batches_tracked.fill_(7)
            elif isinstance(m, (nn.LayerNorm, LayerNormChannelsFirst)):
                m.weight.copy_(0.5 + torch.rand(m.weight.shape, generator=g))
                m.bias.copy_(0.2 * torch.randn(m.bias.shape, generator=g))
            elif isinstance(m, nn.Linear) and not m.weight.any():
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) / m.in_features ** 0.5)
                m.bias.copy_(0.2 * torch.randn(m.bias.shape, generator=g))
        for name in ("cls_token", "class_token"):
            if isinstance(getattr(model, name, None), nn.Parameter):
                getattr(model, name).copy_(torch.randn(getattr(model, name).shape, generator=g))
    return model.eval()


def torchvision_resnet18(num_classes: int, seed: int = 0) -> nn.Module:
    """A random-initialised torchvision ResNet-18 with randomised BatchNorm statistics (eval
    mode), torchvision imported next to the CPU torch (`import_torchvision`)."""
    from lst_jax.convert.torchvision_import import import_torchvision

    torch.manual_seed(seed)
    net = import_torchvision().models.resnet18(weights=None, num_classes=num_classes)
    return randomize_(net, seed=seed)


def normalized_nchw(x, mean, std) -> torch.Tensor:
    """Pixels (N, H, W, 3) in [0, 1] (numpy) -> `(x - mean) / std` as an NCHW float32 tensor."""
    import numpy as np

    z = (np.asarray(x, np.float32) - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return torch.from_numpy(z.transpose(0, 3, 1, 2).copy())


def centred_heads(net: nn.Module, inputs: torch.Tensor, spreads, head: str = "fc") -> list:
    """State dicts of `net` whose output layer `head` is centred on `inputs` (a random net
    gives nearly the same logits to every input) and scaled so that the centred logits have
    each standard deviation of `spreads`: the same predictions, varied over the inputs, at
    several confidences (random models that a pool, a pair selection or a detector can use).

    Shape:
        inputs: (N, 3, H, W), the net's own input -> one state dict per spread.
    """
    with torch.no_grad():
        logits = net(inputs)
    mean = logits.mean(0)
    std = float((logits - mean).std())
    out = []
    for spread in spreads:
        sd = {k: v.clone() for k, v in net.state_dict().items()}
        sd[f"{head}.weight"] = sd[f"{head}.weight"] * (spread / std)
        sd[f"{head}.bias"] = (sd[f"{head}.bias"] - mean) * (spread / std)
        out.append(sd)
    return out


def state_dict_numpy(model: nn.Module) -> dict:
    """The model's state dict as numpy arrays (what `read_state_dict` returns)."""
    return {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}
