"""Checkpoints made the way a user makes them (issue 18): a random-initialised torchvision
ResNet-18, saved with `torch.save(state_dict)` and converted with `lst-jax convert WEIGHTS
--arch resnet18 --num-classes N --input-size S --normalization cifar10|imagenet`.

Needs the optional torch extra: callers skip without it (`conftest.HAVE_TORCH`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

NORMALIZATIONS = ("cifar10", "imagenet")


def torch_input(x: np.ndarray, normalization: str):
    """Pixels (N, H, W, 3) in [0, 1] -> the twin's normalised NCHW float32 tensor."""
    import torch

    from lst_jax.convert.shapes import CIFAR10_MEAN, CIFAR10_STD, IMAGENET_NORMALIZATION

    mean, std = ((CIFAR10_MEAN, CIFAR10_STD) if normalization == "cifar10" else
                 (IMAGENET_NORMALIZATION.mean, IMAGENET_NORMALIZATION.std))
    z = (x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return torch.from_numpy(z.transpose(0, 3, 1, 2).astype(np.float32).copy())


def torchvision_resnet18(num_classes: int, seed: int = 0):
    """A random-initialised torchvision ResNet-18 with randomised BatchNorm statistics (eval
    mode), imported next to the CPU torch."""
    import torch

    from lst_jax.bench.torch_models import randomize_
    from lst_jax.convert.torchvision_import import import_torchvision

    torch.manual_seed(seed)
    net = import_torchvision().models.resnet18(weights=None, num_classes=num_classes)
    return randomize_(net, seed=seed)


def centred_heads(net, images: np.ndarray, normalization: str, spreads) -> list[dict]:
    """State dicts of `net` with `fc` centred on `images` (a random net gives nearly the same
    logits to every image) and scaled so that the centred logits have each standard
    deviation of `spreads`: the same predictions, varied over the images, at several
    confidences."""
    import torch

    with torch.no_grad():
        logits = net(torch_input(images, normalization)).numpy()
    mean = logits.mean(0)
    std = float((logits - mean).std())
    out = []
    for spread in spreads:
        sd = {k: v.clone() for k, v in net.state_dict().items()}
        sd["fc.weight"] = sd["fc.weight"] * (spread / std)
        sd["fc.bias"] = (sd["fc.bias"] - torch.from_numpy(mean)) * (spread / std)
        out.append(sd)
    return out


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
