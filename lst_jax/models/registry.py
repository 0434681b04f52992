"""Named models: architecture, normalisation, input size, preprocessing and checkpoint.

`load_model("digits_resnet-normal")` returns a `LoadedModel` whose `model_fn` and `params`
follow the library's one contract. Names are `<arch>-<type>` with type `normal`, `linf`
(L-inf adversarial training at the usual radius: 16/255 for the digits models) or `linf<k>`
(at eps k/255: the digits ResNet's robustness ladder).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp

from lst_jax.models import digits, googlenet, resnet, vit, wide_resnet
from lst_jax.models.checkpoint import CheckpointError, load_checkpoint, read_metadata
from lst_jax.models.wrapper import IMAGENET_NORMALIZATION, Classifier, Normalization

# architecture name -> module factory(**kwargs)
ARCHITECTURES: dict[str, Callable[..., Any]] = {
    "digits_resnet": digits.DigitsResNet,
    "digits_vit": vit.DigitsViT,
    # torchvision / timm layout (lst_jax/models/resnet.py)
    "resnet18": resnet.ResNet18,
    "resnet34": resnet.ResNet34,
    "resnet50": resnet.ResNet50,
    "resnet101": resnet.ResNet101,
    "resnet152": resnet.ResNet152,
    # RobustBench CIFAR-10 layout (lst_jax/models/wide_resnet.py)
    "wrn28_10": wide_resnet.WRN28_10,
    "wrn34_10": wide_resnet.WRN34_10,
    # timm layout (lst_jax/models/vit.py)
    "deit_tiny": vit.DeiTTiny,
    "deit_small": vit.DeiTSmall,
    "vit_base": vit.ViTBase,
    "vit_small_convstem": vit.ViTSmallConvStem,
    # torchvision layout (lst_jax/models/googlenet.py), transform_input=True
    "googlenet": googlenet.GoogLeNet,
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
        weights: for converted models, the original PyTorch weights file to provide (the
            name its source gives it).
        layout: the PyTorch state-dict layout of that file when the family reads several
            ("" = the family's default; "torchvision" for torchvision ViTs, see
            `lst_jax.convert.rules_for`).
        label_set: what the class indices mean: "digits", "cifar10", "imagenet", or
            "custom:<digest of the class names>" (models compared side by side must share it).
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
    weights: str = ""
    layout: str = ""
    label_set: str = ""

    def build(self) -> Classifier:
        if self.arch not in ARCHITECTURES:
            raise ValueError(f"model {self.name!r} has architecture {self.arch!r}, which is "
                             "not in the zoo, so it cannot be built from its spec (a model "
                             "in memory is used through its reference: ModelRef.in_memory)")
        return Classifier(ARCHITECTURES[self.arch](**dict(self.arch_kwargs)), self.normalization)


def _digits(name, arch, source):
    return ModelSpec(name=name, arch=arch, checkpoint=name, source=source, label_set="digits")


REGISTRY: dict[str, ModelSpec] = {s.name: s for s in [
    _digits("digits_resnet-normal", "digits_resnet",
            "trained by experiments/train_digits.py (standard training)"),
    _digits("digits_resnet-linf", "digits_resnet",
            "trained by experiments/train_digits.py (L-inf PGD adversarial training)"),
    _digits("digits_vit-normal", "digits_vit",
            "trained by experiments/train_digits.py (standard training)"),
    _digits("digits_vit-linf", "digits_vit",
            "trained by experiments/train_digits.py (L-inf PGD adversarial training)"),
    # the robustness ladder: same recipe and seed as digits_resnet-linf (16/255), smaller eps
    *[_digits(f"digits_resnet-linf{k}", "digits_resnet",
              f"trained by experiments/train_digits.py (L-inf PGD adversarial training at "
              f"eps {k}/255)") for k in (2, 4, 8)],
]}

# The digits ResNet ladder, from least to most robust training (eps 0, 2, 4, 8, 16 / 255).
DIGITS_LADDER = ("digits_resnet-normal", "digits_resnet-linf2", "digits_resnet-linf4",
                 "digits_resnet-linf8", "digits_resnet-linf")


def _imagenet(name, arch, interpolation, source, weights, normalization=IMAGENET_NORMALIZATION,
              layout=""):
    return ModelSpec(name=name, arch=arch, normalization=normalization, input_size=(224, 224, 3),
                     dataset="imagenet", num_classes=1000, checkpoint=name, resize=256,
                     interpolation=interpolation, source=source, weights=weights,
                     layout=layout, label_set="imagenet")


def _cifar10(name, arch, source, weights):
    return ModelSpec(name=name, arch=arch, input_size=(32, 32, 3), dataset="cifar10",
                     num_classes=10, checkpoint=name, source=source, weights=weights,
                     label_set="cifar10")


# Converted PyTorch models (`lst-jax convert NAME FILE`). `interpolation` is what the original
# model was evaluated with; the LST reference code resized every ImageNet model bilinearly.
REGISTRY.update({s.name: s for s in [
    _imagenet("resnet50-normal", "resnet50", "bicubic",
              "timm resnet50.a1_in1k (ResNet strikes back A1, BCE loss): what "
              "timm.create_model('resnet50', pretrained=True) loads; the LST paper's "
              "'ResNet-50 (Normal)'", "resnet50_a1_0-14fe96d1.pth"),
    _imagenet("resnet50-linf", "resnet50", "bilinear",
              "RobustBench ImageNet Linf Salman2020Do_R50 (torchvision ResNet-50, "
              "L-inf eps 4/255 adversarial training); the LST paper's 'ResNet-50 (AT)'",
              "models/imagenet/Linf/Salman2020Do_R50.pt"),
    _imagenet("resnet50_tv-normal", "resnet50", "bilinear",
              "torchvision resnet50 IMAGENET1K_V1", "resnet50-0676ba61.pth"),
    _imagenet("resnet18-normal", "resnet18", "bilinear",
              "torchvision resnet18 IMAGENET1K_V1", "resnet18-f37072fd.pth"),
    _imagenet("deit_small-normal", "deit_small", "bicubic",
              "timm deit_small_patch16_224.fb_in1k; the LST paper's 'DeiT-S (Normal)'",
              "deit_small_patch16_224-cd65a155.pth"),
    _imagenet("deit_small-linf", "vit_small_convstem", "bicubic",
              "RobustBench ImageNet Linf Singh2023Revisiting_ViT-S-ConvStem (DeiT-S with a "
              "convolutional stem, L-inf eps 4/255 adversarial training); the LST paper's "
              "'DeiT-S (AT)'", "models/imagenet/Linf/Singh2023Revisiting_ViT-S-ConvStem.pt"),
    _imagenet("deit_tiny-normal", "deit_tiny", "bicubic",
              "timm deit_tiny_patch16_224.fb_in1k", "deit_tiny_patch16_224-a1311bcf.pth"),
    _imagenet("vit_base-normal", "vit_base", "bicubic",
              "timm vit_base_patch16_224.augreg2_in21k_ft_in1k (inputs normalised with mean "
              "= std = 0.5); file model.safetensors of the Hugging Face repository "
              "timm/vit_base_patch16_224.augreg2_in21k_ft_in1k", "model.safetensors",
              normalization=Normalization((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))),
    # The input-space mode connectivity paper's models (Vrabel et al. 2024, torchvision V1).
    _imagenet("googlenet-normal", "googlenet", "bilinear",
              "torchvision googlenet IMAGENET1K_V1 (transform_input=True: the module re-maps "
              "the ImageNet-normalised input to its own normalisation; eval mode, main "
              "logits; the file's auxiliary heads are dropped)", "googlenet-1378be20.pth"),
    _imagenet("vit_b_16_tv-normal", "vit_base", "bilinear",
              "torchvision vit_b_16 IMAGENET1K_V1 (torchvision's VisionTransformer layout, "
              "converted into the timm-layout ViT-B/16 module)", "vit_b_16-c867db91.pth",
              layout="torchvision"),
    _cifar10("wrn28_10-normal", "wrn28_10",
             "RobustBench CIFAR-10 Standard (WRN-28-10, standard training)",
             "models/cifar10/Linf/Standard.pt"),
    _cifar10("wrn28_10-linf", "wrn28_10",
             "RobustBench CIFAR-10 Linf Wu2020Adversarial_extra (WRN-28-10, AWP + extra "
             "data, L-inf eps 8/255); the LST reference's CIFAR-10 '-linf' model",
             "models/cifar10/Linf/Wu2020Adversarial_extra.pt"),
    _cifar10("wrn34_10-linf", "wrn34_10",
             "RobustBench CIFAR-10 Linf Wu2020Adversarial (WRN-34-10, AWP, L-inf eps 8/255); "
             "the LST reference's CIFAR-10 '-linf' model before 23 May 2023",
             "models/cifar10/Linf/Wu2020Adversarial.pt"),
]})

DEFAULT_MODEL = "digits_resnet-normal"


def checkpoint_root() -> Path:
    """Root of the checkpoints: $LST_JAX_CHECKPOINTS; else the shipped checkpoints of the
    package, `lst_jax/checkpoints` (package data of a `pip install .`; in a checkout a link
    to the repository's checkpoints/, whose real path is returned); else checkpoints/ beside
    the package (a checkout without symbolic links)."""
    env = os.environ.get("LST_JAX_CHECKPOINTS")
    if env:
        return Path(env)
    package = Path(__file__).resolve().parents[1]
    shipped = package / "checkpoints"   # in a checkout: a link to the top-level checkpoints/
    if shipped.is_dir():
        return shipped.resolve()
    return package.parent / "checkpoints"


def registry_spec(name: str) -> ModelSpec:
    """The registry entry `name` (no checkpoint directories; see `get_spec`)."""
    if name not in REGISTRY:
        from lst_jax.utils.cliargs import closest

        close = closest(name, REGISTRY)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ValueError(f"unknown model {name!r}{hint}; known models: "
                         f"{', '.join(sorted(REGISTRY))} (list them with `lst-jax models`)")
    return REGISTRY[name]


def get_spec(model, checkpoint=None) -> ModelSpec:
    """The `ModelSpec` of a model reference: a registry name or a checkpoint directory
    (`lst_jax.models.reference.resolve_model`)."""
    from lst_jax.models.reference import resolve_model

    return resolve_model(model, checkpoint).spec


@dataclasses.dataclass(frozen=True)
class LoadedModel:
    """A registry model ready to use: `model_fn(params, images) -> logits`."""

    spec: ModelSpec
    model_fn: Classifier
    params: Any
    metadata: dict


def checkpoint_path(model, root=None) -> Path:
    """The checkpoint directory of a model reference (`resolve_model(model, root).path`)."""
    from lst_jax.models.reference import resolve_model

    return resolve_model(model, root).path


def load_model(name, checkpoint: str | os.PathLike | None = None,
               compute_dtype=None, *, verify: bool = True) -> LoadedModel:
    """Builds a model and restores its checkpoint.

    Args:
        name: registry name, e.g. "digits_resnet-normal", or a checkpoint directory
            (`lst_jax.models.reference.resolve_model`).
        checkpoint: a checkpoint directory, or a root holding `<name>/`; default
            `checkpoint_root()`.
        compute_dtype: None / "float32" (default), or "bfloat16" (or a dtype) for the
            opt-in bfloat16 forward/backward (`Classifier.compute_dtype`; parameters stay
            float32 in memory, logits are float32). Meant for GPU/TPU.
        verify: compare the restored parameters' digest with the one recorded at save time
            (`load_checkpoint`); `metadata["digest"]` is the restored parameters' digest.

    Raises:
        ValueError: unknown name, or a directory whose metadata does not describe a model;
        FileNotFoundError: the checkpoint is missing (the message says which file to provide
        and how to create it); CheckpointError (a ValueError): corrupt or unreadable
        checkpoint.
    """
    from lst_jax.models.reference import resolve_model

    return resolve_model(name, checkpoint).load(compute_dtype, verify=verify)


def restore_model(spec: ModelSpec, path: Path, compute_dtype=None, *,
                  verify: bool = True) -> LoadedModel:
    """Builds `spec`'s model and restores the checkpoint directory `path` into it (the one
    loader behind `load_model` and `ModelRef.load`)."""
    path = Path(path)
    if not (path / "metadata.json").is_file():
        raise FileNotFoundError(missing_checkpoint_message(spec, path))
    model_fn = spec.build()
    abstract = jax.eval_shape(lambda: model_fn.init(jax.random.key(0), spec.input_size))
    try:
        params, meta = load_checkpoint(path, abstract, verify=verify)
    except CheckpointError:
        raise
    except ValueError as err:
        _refuse_legacy_layout(spec, path, err)
        raise
    if meta.get("arch") not in (None, spec.arch):
        raise ValueError(f"checkpoint {path} holds architecture {meta.get('arch')!r}, "
                         f"but {spec.name} is {spec.arch!r}")
    if compute_dtype is not None and jnp.dtype(compute_dtype) != jnp.float32:
        if not jnp.issubdtype(jnp.dtype(compute_dtype), jnp.floating):
            raise ValueError(f"compute_dtype must be a floating dtype, got {compute_dtype!r}")
        model_fn = dataclasses.replace(model_fn, compute_dtype=jnp.dtype(compute_dtype))
    return LoadedModel(spec, model_fn, params, meta)


def _refuse_legacy_layout(spec: ModelSpec, path: Path, err: Exception) -> None:
    """A checkpoint of an earlier layout of this architecture gets a ValueError naming the
    command that rewrites it (`lst_jax.models.migrate`), not only a list of mismatched keys."""
    from lst_jax.models.migrate import MIGRATIONS, needs_migration

    if spec.arch in MIGRATIONS and needs_migration(spec.arch, load_checkpoint(path)[0]):
        raise ValueError(f"checkpoint {path} holds {spec.name} in an earlier parameter layout "
                         f"({MIGRATIONS[spec.arch].legacy}); rewrite it once with "
                         f"`lst-jax migrate {spec.name} --checkpoint {path}`") from err


def missing_checkpoint_message(spec: ModelSpec, path: Path) -> str:
    where = ("point --checkpoint at its directory (or at a root holding "
             f"{spec.checkpoint}/), or set LST_JAX_CHECKPOINTS to that root")
    if spec.dataset == "digits":
        how = ("it ships with lst_jax (the repository's checkpoints/, installed as package "
               f"data by `pip install .`): {where}; or train it with "
               f"`python experiments/train_digits.py --name {spec.name}` from a checkout")
    else:
        weights = spec.weights or "<weights file>"
        how = (f"provide the original PyTorch weights file {weights}"
               + (f" ({spec.source})" if spec.source else "")
               + f" and convert it with `lst-jax convert {spec.name} {weights}`; "
               f"or, if it is converted elsewhere, {where}")
    return f"no checkpoint for model {spec.name!r} at {path}: {how}"


def is_available(name, root=None) -> bool:
    try:
        return (checkpoint_path(name, root) / "metadata.json").is_file()
    except ValueError:
        return False


def checkpoint_digest(name, checkpoint=None) -> str:
    """The sha256 digest of a model's parameters as restored from its checkpoint and
    verified against the digest recorded at save time (`checkpoint.verified_digest`): the
    key of every cache, so a cache made from other weights is never served. The checkpoint
    is restored (not the model built) once per process while its files are unchanged.

    Raises:
        ValueError: unknown name; FileNotFoundError: the checkpoint is missing;
        CheckpointError: corrupt or unreadable checkpoint.
    """
    from lst_jax.models.reference import resolve_model

    return resolve_model(name, checkpoint).digest()


def checkpoint_metadata(name, root=None) -> dict | None:
    path = checkpoint_path(name, root)
    return read_metadata(path) if (path / "metadata.json").is_file() else None
