"""The `ModelSpec` of weights the registry does not name: architecture + the model's shape.

`lst-jax convert WEIGHTS --arch ARCH [--num-classes N] [--input-size S] [--normalization P |
--mean --std] [--labels L] [--name NAME]`: the options, checked against the weights before
anything is converted, become a `ModelSpec` whose fields the checkpoint's metadata.json
records (`lst_jax.models.reference.spec_from_metadata` reads them back).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from lst_jax.models.wrapper import IMAGENET_NORMALIZATION, Normalization

# Architectures with a PyTorch converter (`lst_jax.convert.rules_for`), by family.
IMAGENET_ARCHS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "deit_tiny",
                  "deit_small", "vit_base", "vit_small_convstem", "googlenet")
CIFAR_ARCHS = ("wrn28_10", "wrn34_10")
CONVERTIBLE = IMAGENET_ARCHS + CIFAR_ARCHS

# CIFAR-10 training-set channel statistics (mean, std of the 50000 training images).
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
NORMALIZATIONS = {"imagenet": IMAGENET_NORMALIZATION,
                  "cifar10": Normalization(CIFAR10_MEAN, CIFAR10_STD),
                  "none": Normalization()}

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck")
# label set -> (number of classes, class names or None: the indices are the names)
LABEL_PRESETS = {"imagenet": (1000, None), "cifar10": (10, CIFAR10_CLASSES),
                 "digits": (10, tuple(str(i) for i in range(10)))}


def check_arch(arch: str) -> str:
    if arch not in CONVERTIBLE:
        from lst_jax.utils.cliargs import closest

        close = closest(arch, CONVERTIBLE)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ValueError(f"--arch {arch!r} has no PyTorch converter{hint}; choose one of "
                         f"{', '.join(CONVERTIBLE)}")
    return arch


def classifier_key(module, state_dict, layout: str = "") -> str | None:
    """The PyTorch key of the classifier's bias (`fc.bias`, `head.bias`) in `state_dict`,
    or None when the file has none."""
    from lst_jax.convert.core import flax_path_to_torch
    from lst_jax.convert.rules import rules_for

    rules = rules_for(module, layout)
    for dense in ("fc", "head"):
        mapped = flax_path_to_torch(rules, f"params/{dense}/bias", (1,))
        if mapped is not None and mapped[0] in state_dict:
            return mapped[0]
    return None


def resolve_normalization(normalization, file_normalizer, arch: str) -> Normalization:
    """A preset name, a `Normalization`, or None: the file's own normaliser if it has one,
    else ImageNet's for the ImageNet families and none for the CIFAR WideResNets."""
    if isinstance(normalization, Normalization):
        return normalization
    if normalization is None:
        if file_normalizer is not None and file_normalizer.get("mean") is not None \
                and file_normalizer.get("std") is not None:
            return Normalization(tuple(float(v) for v in file_normalizer["mean"]),
                                 tuple(float(v) for v in file_normalizer["std"]))
        return NORMALIZATIONS["none" if arch in CIFAR_ARCHS else "imagenet"]
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"--normalization must be one of {', '.join(NORMALIZATIONS)}, got "
                         f"{normalization!r} (or give --mean and --std)")
    return NORMALIZATIONS[normalization]


def read_labels(labels) -> tuple[str, tuple | None]:
    """(label set, class names or None) of a preset name, a file or a sequence of names.

    A file holds a JSON list of names, or one name a line. A custom list's label set is
    `custom:<12 hex digits of the names' sha256>`, so models with the same names share it.
    """
    if isinstance(labels, str) and labels in LABEL_PRESETS:
        return labels, LABEL_PRESETS[labels][1]
    if isinstance(labels, (str, Path)):
        path = Path(labels)
        if not path.is_file():
            raise ValueError(f"--labels {labels!r} is neither a preset "
                             f"({', '.join(LABEL_PRESETS)}) nor a file")
        text = path.read_text()
        try:
            names = json.loads(text)
        except ValueError:
            names = [line.strip() for line in text.splitlines() if line.strip()]
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ValueError(f"--labels {path}: a JSON file must hold a list of class names")
    else:
        names = list(labels)
    names = tuple(str(n) for n in names)
    digest = hashlib.sha256(json.dumps(names).encode()).hexdigest()[:12]
    return f"custom:{digest}", names


def resolve_labels(labels, num_classes: int, input_size: int) -> tuple[str, tuple | None]:
    """The label set and names; without `labels`: ImageNet for 1000 classes, CIFAR-10 for 10
    classes at 32x32, else the class indices (`indices:<N>`)."""
    if labels is None:
        if num_classes == 1000:
            return "imagenet", None
        if num_classes == 10 and input_size == 32:
            return "cifar10", CIFAR10_CLASSES
        return f"indices:{num_classes}", None
    label_set, names = read_labels(labels)
    n = LABEL_PRESETS[label_set][0] if label_set in LABEL_PRESETS else len(names)
    if n != num_classes:
        raise ValueError(f"--labels {labels} names {n} classes, but the model has "
                         f"{num_classes}")
    return label_set, names


def arch_spec(arch: str, state_dict, file_normalizer=None, *, num_classes: int | None = None,
              input_size: int | None = None, normalization=None, labels=None,
              name: str, layout: str = "", weights: Path | None = None,
              transform_input: bool | None = None):
    """(`ModelSpec`, class names or None) for weights of `arch` with the given shape options,
    checked against `state_dict` (its classifier fixes the class count). `transform_input`
    (GoogLeNet only): torchvision's input re-mapping, True for its pretrained weights (the
    default), False for a `googlenet(num_classes=...)` trained from scratch.

    Raises:
        ValueError: unknown architecture, or `num_classes` that disagrees with the weights
        (one line naming the tensor and both shapes).
    """
    from lst_jax.models.registry import ARCHITECTURES, REGISTRY, ModelSpec

    check_arch(arch)
    if name in REGISTRY:
        raise ValueError(f"--name {name!r} is a registry name (of another model); choose "
                         "another")
    key = classifier_key(ARCHITECTURES[arch](), state_dict, layout)
    file_classes = int(np.shape(state_dict[key])[0]) if key is not None else None
    if num_classes is not None:
        if not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
            raise ValueError(f"--num-classes must be a positive integer, got {num_classes!r}")
        if file_classes is not None and file_classes != num_classes:
            raise ValueError(f"--num-classes {num_classes} disagrees with the weights: "
                             f"{key} has shape {tuple(np.shape(state_dict[key]))}, "
                             f"--num-classes {num_classes} needs ({num_classes},)")
    n = int(num_classes or file_classes or ARCHITECTURES[arch]().num_classes)
    side = int(input_size or (32 if arch in CIFAR_ARCHS else 224))
    if side < 1:
        raise ValueError(f"--input-size must be a positive integer, got {input_size!r}")
    label_set, names = resolve_labels(labels, n, side)
    dataset = label_set if label_set in ("imagenet", "cifar10", "digits") else "custom"
    source = f"PyTorch weights {weights.name if weights else ''} converted with --arch {arch}"
    kwargs = {"num_classes": n}
    if transform_input is not None:
        if arch != "googlenet":
            raise ValueError(f"--transform-input applies to googlenet only, not {arch}")
        kwargs["transform_input"] = bool(transform_input)
    spec = ModelSpec(name=name, arch=arch, arch_kwargs=tuple(sorted(kwargs.items())),
                     normalization=resolve_normalization(normalization, file_normalizer,
                                                         arch),
                     input_size=(side, side, 3), dataset=dataset, num_classes=n,
                     checkpoint=name, resize=256 if side == 224 else None,
                     interpolation="bilinear", source=source,
                     weights=weights.name if weights else "", layout=layout,
                     label_set=label_set)
    return spec, names


def parse_channels(text: str, what: str) -> tuple[float, ...]:
    """`"0.5,0.5,0.5"` -> (0.5, 0.5, 0.5) (`--mean`, `--std`)."""
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"{what} must be comma-separated numbers, e.g. 0.485,0.456,0.406; "
                         f"got {text!r}") from None
    if len(values) != 3:
        raise ValueError(f"{what} needs 3 values (one per RGB channel), got {len(values)}")
    return values


__all__ = ["CONVERTIBLE", "NORMALIZATIONS", "LABEL_PRESETS", "arch_spec", "check_arch",
           "classifier_key", "parse_channels", "read_labels", "resolve_labels",
           "resolve_normalization"]
