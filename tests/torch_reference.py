"""The tests' PyTorch references: the zoo twins live in the package
(`lst_jax.bench.torch_models`: `TorchResNet`, `TorchWideResNet`, `TorchViT`, `randomize_`,
`state_dict_numpy`, one copy shared with `lst-jax bench`), re-exported here, plus
- `torch_tiny_cnn(params)`: the twin of the tests' `TinyCNN`, with its Flax weights copied;
- `import_torchvision`: torchvision 0.28 next to the CPU torch 2.13 build
  (`lst_jax.convert.torchvision_import`, docs/models.md), where torchvision's own classes are
  the reference (GoogLeNet, its VisionTransformer).
"""

from __future__ import annotations

import jax
import numpy as np
import torch
from torch import nn

from lst_jax.bench.torch_models import *  # noqa: F401,F403  (the zoo twins)
from lst_jax.bench.torch_models import LayerNormChannelsFirst, randomize_, state_dict_numpy  # noqa: F401

# torchvision next to the CPU torch (docs/models.md, "torchvision")
from lst_jax.convert.torchvision_import import import_torchvision  # noqa: F401


# ----------------------------------------------------------------------------- tiny CNN
def torch_tiny_cnn(params):
    """The PyTorch twin of `subproc.TinyCNN` with the same Flax weights (NCHW, eval mode)."""

    class TorchTinyCNN(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
            self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
            self.fc = nn.Linear(16, 10)

        def forward(self, x):
            x = torch.relu(self.conv1(x))
            x = nn.functional.avg_pool2d(x, 2)
            x = torch.relu(self.conv2(x))
            return self.fc(x.mean(dim=(2, 3)))

    m = TorchTinyCNN().eval()
    p = jax.tree.map(lambda a: np.array(a, np.float32), params["params"])
    with torch.no_grad():
        for name in ("conv1", "conv2"):
            getattr(m, name).weight.copy_(torch.from_numpy(
                p[name]["kernel"].transpose(3, 2, 0, 1).copy()))
            getattr(m, name).bias.copy_(torch.from_numpy(p[name]["bias"]))
        m.fc.weight.copy_(torch.from_numpy(p["fc"]["kernel"].T.copy()))
        m.fc.bias.copy_(torch.from_numpy(p["fc"]["bias"]))
    return m


def torchvision_googlenet(num_classes: int = 1000, aux_logits: bool = False):
    """torchvision's own GoogLeNet as built for its pretrained weights (`transform_input=True`),
    randomly initialised (torchvision's truncated-normal init)."""
    return import_torchvision().models.googlenet(weights=None, num_classes=num_classes,
                                                 aux_logits=aux_logits, transform_input=True,
                                                 init_weights=True)
