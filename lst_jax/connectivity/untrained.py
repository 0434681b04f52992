"""Randomly initialised networks for the untrained-model experiments (paper 4.3, App. F.1).

The authors use torchvision's `resnet18(weights=None, num_classes=10)` in eval mode on
CIFAR-shaped inputs (BatchNorm with its initial running statistics, mean 0 / variance 1).
`untrained_model("resnet18")` is the same network (`lst_jax.models.resnet.ResNet18`, the
torchvision layout) drawn with torchvision's initialisation scheme: convolutions
Kaiming-normal with fan-out (`std = sqrt(2 / (k*k*out))`), the final linear layer PyTorch's
default `U(-1/sqrt(fan_in), 1/sqrt(fan_in))` for weight and bias, BatchNorm scale 1 and
shift 0. Same distribution, not the same numbers (no torch at run time). `"digits_resnet"`
is the shipped digits architecture with Flax's default initialisation.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from lst_jax.models.digits import DigitsResNet
from lst_jax.models.resnet import ResNet18
from lst_jax.models.wrapper import Classifier, Normalization

CIFAR10_NORMALIZATION = Normalization((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010))
UNTRAINED_ARCHS = ("resnet18", "digits_resnet")


def torchvision_init(params, key):
    """Re-draws a torchvision-layout ResNet's variables with torchvision's scheme (see the
    module docstring); BatchNorm variables and statistics are left at their Flax init
    (scale 1, bias 0, mean 0, var 1), which equals torchvision's."""
    leaves, treedef = jax.tree_util.tree_flatten_with_path(params)
    keys = jax.random.split(key, len(leaves))

    def draw(path, leaf, k):
        name = jax.tree_util.keystr(path)
        if leaf.ndim == 4 and name.endswith("['kernel']"):              # conv, HWIO
            fan_out = leaf.shape[0] * leaf.shape[1] * leaf.shape[3]
            return jax.random.normal(k, leaf.shape, leaf.dtype) * np.sqrt(2.0 / fan_out)
        if "['fc']" in name:                                            # linear head
            fan_in = params["params"]["fc"]["kernel"].shape[0]
            bound = 1.0 / np.sqrt(fan_in)
            return jax.random.uniform(k, leaf.shape, leaf.dtype, -bound, bound)
        return leaf

    return jax.tree_util.tree_unflatten(
        treedef, [draw(path, leaf, k) for (path, leaf), k in zip(leaves, keys)])


def untrained_model(arch: str = "resnet18", key=None, image_shape=(32, 32, 3),
                    num_classes: int = 10):
    """`(Classifier, params)` of a randomly initialised network (eval mode).

    Args:
        arch: "resnet18" (torchvision ResNet-18, torchvision init, CIFAR-10 normaliser) or
            "digits_resnet" (Flax default init, no normaliser).
        key: PRNG key of the initialisation (default `key(0)`).
    """
    if arch not in UNTRAINED_ARCHS:
        raise ValueError(f"arch must be one of {UNTRAINED_ARCHS}, got {arch!r}")
    key = jax.random.key(0) if key is None else key
    if arch == "resnet18":
        model = Classifier(ResNet18(num_classes=num_classes), CIFAR10_NORMALIZATION)
        k1, k2 = jax.random.split(key)
        params = torchvision_init(model.init(k1, image_shape), k2)
    else:
        model = Classifier(DigitsResNet(num_classes=num_classes))
        params = model.init(key, image_shape)
    return model, jax.tree.map(jnp.asarray, params)
