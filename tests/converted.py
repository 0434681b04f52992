"""Checkpoints made the way a user makes them (issue 18): a random-initialised torchvision
ResNet-18, saved with `torch.save(state_dict)` and converted with `lst-jax convert WEIGHTS
--arch resnet18 --num-classes N --input-size S --normalization cifar10|imagenet`.

Needs the optional torch extra: callers skip without it (`conftest.HAVE_TORCH`). The torch
side (`torchvision_resnet18`, `centred_heads`) is `lst_jax.bench.torch_models`', shared with
the benchmarks.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

NORMALIZATIONS = ("cifar10", "imagenet")


def torch_input(x: np.ndarray, normalization: str):
    """Pixels (N, H, W, 3) in [0, 1] -> the twin's normalised NCHW float32 tensor."""
    from lst_jax.bench.torch_models import normalized_nchw
    from lst_jax.convert.shapes import CIFAR10_MEAN, CIFAR10_STD, IMAGENET_NORMALIZATION

    if normalization == "cifar10":
        return normalized_nchw(x, CIFAR10_MEAN, CIFAR10_STD)
    return normalized_nchw(x, IMAGENET_NORMALIZATION.mean, IMAGENET_NORMALIZATION.std)


def torchvision_resnet18(num_classes: int, seed: int = 0):
    from lst_jax.bench.torch_models import torchvision_resnet18 as build

    return build(num_classes, seed)


def centred_heads(net, images: np.ndarray, normalization: str, spreads) -> list[dict]:
    """`lst_jax.bench.torch_models.centred_heads` on pixel images (N, H, W, 3)."""
    from lst_jax.bench.torch_models import centred_heads as centre

    return centre(net, torch_input(images, normalization), spreads)


def convert_state_dict_file(state_dict: dict, directory: Path, name: str, *,
                            num_classes: int, size: int, normalization: str) -> str:
    """`torch.save(state_dict, directory/<name>.pth)`, then `lst-jax convert` it to the
    checkpoint directory `directory/<name>`; returns that directory."""
    import torch

    from lst_jax import cli

    assert normalization in NORMALIZATIONS, normalization
    weights = Path(directory) / f"{name}.pth"
    torch.save(state_dict, weights)
    out = Path(directory) / name
    assert cli.main(["convert", str(weights), "--arch", "resnet18", "--num-classes",
                     str(num_classes), "--input-size", str(size), "--normalization",
                     normalization, "--name", name, "--out", str(out)]) == 0
    return str(out)


def load_twin(state_dict: dict, num_classes: int):
    """A torchvision ResNet-18 holding `state_dict` (eval mode)."""
    from lst_jax.convert.torchvision_import import import_torchvision

    twin = import_torchvision().models.resnet18(weights=None, num_classes=num_classes)
    twin.load_state_dict(state_dict)
    return twin.eval()
