"""Named models: architecture, normalisation, input size, preprocessing and checkpoint.

`load_model("digits_resnet-normal")` returns a `LoadedModel` whose `model_fn` and `params`
follow the library's one contract. Names are `<arch>-<type>` with type `normal` or `linf`.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Callable

import jax

from lst_jax.models import digits
from lst_jax.models.checkpoint import load_checkpoint, read_metadata
from lst_jax.models.wrapper import Classifier, Normalization

# architecture name -> module factory(**kwargs)
ARCHITECTURES: dict[str, Callable[..., Any]] = {
    "digits_resnet": digits.DigitsResNet,
    "digits_vit": digits.DigitsViT,
}


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """Everything needed to build and feed a named model.

    Attributes:
        name: registry name `<arch>-<type>`.
        arch: key of `ARCHITECTURES`; arch_kwargs: its keyword arguments (as a tuple of pairs).
        normalization: mean/std applied by the wrapper, or identity.
        input_size: (H, W, C) the model expects.
        dataset: "digits", "cifar10" or "imagenet".
        checkpoint: directory name under the checkpoint root.
        resize, interpolation: preprocessing for photos/ImageNet (resize short side, centre
            crop to input_size; "bilinear" or "bicubic").
        source: where the weights come from / how they were made.
    """

    name: str
    arch: str
    arch_kwargs: tuple = ()
    normalization: Normalization = Normalization()
    input_size: tuple = (32, 32, 3)
    dataset: str = "digits"
    num_classes: int = 10
    checkpoint: str = ""
    resize: int | None = None
    interpolation: str = "bilinear"
    source: str = ""

    def build(self) -> Classifier:
        return Classifier(ARCHITECTURES[self.arch](**dict(self.arch_kwargs)), self.normalization)


def _digits(name, arch, source):
    return ModelSpec(name=name, arch=arch, checkpoint=name, source=source)


REGISTRY: dict[str, ModelSpec] = {s.name: s for s in [
    _digits("digits_resnet-normal", "digits_resnet",
            "trained by experiments/train_digits.py (standard training)"),
    _digits("digits_resnet-linf", "digits_resnet",
            "trained by experiments/train_digits.py (L-inf PGD adversarial training)"),
    _digits("digits_vit-normal", "digits_vit",
            "trained by experiments/train_digits.py (standard training)"),
    _digits("digits_vit-linf", "digits_vit",
            "trained by experiments/train_digits.py (L-inf PGD adversarial training)"),
]}

DEFAULT_MODEL = "digits_resnet-normal"


def checkpoint_root() -> Path:
    """Root of the checkpoints: $LST_JAX_CHECKPOINTS, else the repository's checkpoints/."""
    env = os.environ.get("LST_JAX_CHECKPOINTS")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "checkpoints"


def get_spec(name: str) -> ModelSpec:
    if name not in REGISTRY:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(sorted(REGISTRY))}"
                         " (list them with `lst-jax models`)")
    return REGISTRY[name]


@dataclasses.dataclass(frozen=True)
class LoadedModel:
    """A registry model ready to use: `model_fn(params, images) -> logits`."""

    spec: ModelSpec
    model_fn: Classifier
    params: Any
    metadata: dict


def checkpoint_path(name: str, root=None) -> Path:
    spec = get_spec(name)
    return Path(root) if root is not None and (Path(root) / "metadata.json").exists() else (
        Path(root or checkpoint_root()) / spec.checkpoint)


def load_model(name: str, checkpoint: str | os.PathLike | None = None) -> LoadedModel:
    """Builds the named model and restores its checkpoint.

    Args:
        name: registry name, e.g. "digits_resnet-normal".
        checkpoint: a checkpoint directory, or a root holding `<name>/`; default
            `checkpoint_root()`.

    Raises:
        ValueError: unknown name; FileNotFoundError: the checkpoint is missing (the message
        says which file to provide and how to create it).
    """
    spec = get_spec(name)
    path = checkpoint_path(name, checkpoint)
    if not (path / "metadata.json").is_file():
        raise FileNotFoundError(missing_checkpoint_message(spec, path))
    model_fn = spec.build()
    abstract = jax.eval_shape(lambda: model_fn.init(jax.random.key(0), spec.input_size))
    params, meta = load_checkpoint(path, abstract)
    if meta.get("arch") not in (None, spec.arch):
        raise ValueError(f"checkpoint {path} holds architecture {meta.get('arch')!r}, "
                         f"but {name} is {spec.arch!r}")
    return LoadedModel(spec, model_fn, params, meta)


def missing_checkpoint_message(spec: ModelSpec, path: Path) -> str:
    if spec.dataset == "digits":
        how = (f"train it with `python experiments/train_digits.py --name {spec.name}` "
               "(the shipped checkpoints live in the repository's checkpoints/ folder)")
    else:
        how = f"convert the original weights with `lst-jax convert {spec.name} <weights file>`"
    return f"no checkpoint for model {spec.name!r} at {path}: {how}"


def is_available(name: str, root=None) -> bool:
    try:
        return (checkpoint_path(name, root) / "metadata.json").is_file()
    except ValueError:
        return False


def checkpoint_metadata(name: str, root=None) -> dict | None:
    path = checkpoint_path(name, root)
    return read_metadata(path) if (path / "metadata.json").is_file() else None
