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
from lst_jax.utils.checks import check_key

CIFAR10_NORMALIZATION = Normalization((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010))
UNTRAINED_ARCHS = ("resnet18", "digits_resnet")


def torchvision_init(shapes, key):
    """Variables of a torchvision-layout ResNet drawn with torchvision's scheme (see the
    module docstring) for the variable tree `shapes` (arrays or `jax.ShapeDtypeStruct`s,
    e.g. from `jax.eval_shape`): no Flax initialiser runs. All convolution weights come from
    one normal draw and the head from one uniform draw (two random ops: fast to compile).

    Raises:
        ValueError: a variable the scheme does not cover.
    """
    leaves, treedef = jax.tree_util.tree_flatten_with_path(shapes)
    names = [jax.tree_util.keystr(path) for path, _ in leaves]
    kinds = []
    for name, (_, leaf) in zip(names, leaves):
        if len(leaf.shape) == 4 and name.endswith("['kernel']"):
            kinds.append("conv")
        elif "['fc']" in name:
            kinds.append("fc")
        elif name.endswith(("['scale']", "['var']")):
            kinds.append("ones")
        elif name.endswith(("['bias']", "['mean']")):
            kinds.append("zeros")
        else:
            raise ValueError(f"torchvision_init does not cover variable {name}")
    size = lambda kind: sum(int(np.prod(leaf.shape)) for (_, leaf), k in zip(leaves, kinds)
                            if k == kind)
    k_conv, k_fc = jax.random.split(key)
    pools = {"conv": jax.random.normal(k_conv, (size("conv"),), jnp.float32),
             "fc": jax.random.uniform(k_fc, (size("fc"),), jnp.float32, -1.0, 1.0)}
    offset = {"conv": 0, "fc": 0}
    fan_in = shapes["params"]["fc"]["kernel"].shape[0]
    out = []
    for (_, leaf), kind in zip(leaves, kinds):
        shape, n = tuple(leaf.shape), int(np.prod(leaf.shape))
        if kind in pools:
            v = pools[kind][offset[kind]:offset[kind] + n].reshape(shape)
            offset[kind] += n
            scale = (np.sqrt(2.0 / (shape[0] * shape[1] * shape[3])) if kind == "conv"
                     else 1.0 / np.sqrt(fan_in))     # Kaiming fan-out / PyTorch Linear
            out.append((v * scale).astype(leaf.dtype))
        else:
            out.append((jnp.ones if kind == "ones" else jnp.zeros)(shape, leaf.dtype))
    return jax.tree_util.tree_unflatten(treedef, out)


def untrained_model(arch: str = "resnet18", *, key, image_shape=(32, 32, 3),
                    num_classes: int = 10):
    """`(Classifier, params)` of a randomly initialised network (eval mode).

    Args:
        arch: "resnet18" (torchvision ResNet-18, torchvision init, CIFAR-10 normaliser) or
            "digits_resnet" (Flax default init, no normaliser).
        key: typed PRNG key of the initialisation (`jax.random.key(seed)`).

    Raises:
        ValueError: unknown `arch`; TypeError: `key` not a typed key.

    Example:
        >>> import jax
        >>> from lst_jax.connectivity import untrained_model
        >>> model, params = untrained_model("resnet18", key=jax.random.key(0), num_classes=4)
        >>> params["params"]["fc"]["kernel"].shape
        (512, 4)
    """
    if arch not in UNTRAINED_ARCHS:
        raise ValueError(f"arch must be one of {UNTRAINED_ARCHS}, got {arch!r}")
    check_key(key)
    if arch == "resnet18":
        model = Classifier(ResNet18(num_classes=num_classes), CIFAR10_NORMALIZATION)
        shapes = jax.eval_shape(lambda k: model.init(k, tuple(image_shape)), key)
        params = jax.jit(lambda k: torchvision_init(shapes, k))(key)
    else:
        model = Classifier(DigitsResNet(num_classes=num_classes))
        params = jax.jit(model.init, static_argnums=1)(key, tuple(image_shape))
    return model, jax.tree.map(jnp.asarray, params)
