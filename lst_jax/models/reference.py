"""One model reference, resolved in one place: a registry name, a checkpoint directory or
a model in memory.

Every command's `--model` / `--models` and every job's `model` argument goes through
`resolve_model`:

- a registry name (`lst-jax models`): the registry's `ModelSpec`; its checkpoint is
  `<checkpoint root>/<name>` (or the `checkpoint` directory / root given);
- a checkpoint directory (a path holding `metadata.json`): the spec is read from the
  metadata (`spec_from_metadata`: architecture and its constructor arguments, classes, input
  size, normalisation, label set), as written by `lst-jax convert WEIGHTS --arch ...`;
- a bare name that is neither, but a checkpoint directory under the checkpoint root (what
  `lst-jax convert --arch ... --name NAME` writes by default);
- a model in memory (`ModelRef.in_memory(model, params, name=..., input_shape=...)`, an
  `lst_jax.models.in_memory.InMemoryModel`): passed through; its digest is that of the
  parameters themselves, as a checkpoint records it.

A model is named in run directories and tables by `ModelRef.name` (the registry name, or the
`name` recorded in the metadata); caches are keyed by that name *and* the verified digest of
the restored parameters (`ModelRef.digest`), so the same weights reached through a name or a
path share their results, and other weights never do.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from lst_jax.models.checkpoint import CheckpointError, read_metadata
from lst_jax.models.wrapper import Normalization

# `ModelSpec.dataset` values the jobs know; anything else in a metadata file is a description.
DATASETS = ("digits", "cifar10", "imagenet", "custom")


@dataclasses.dataclass(frozen=True)
class ModelRef:
    """A resolved model reference.

    Attributes:
        ref: what the caller gave (a registry name or a path).
        spec: the `ModelSpec` (registry entry, or built from the checkpoint's metadata).
        path: the checkpoint directory (it may not exist yet for a registry name).
        registry: True for a registry name.
    """

    ref: str
    spec: Any
    path: Path
    registry: bool

    @property
    def name(self) -> str:
        """The model's name in run directories, cache keys and tables."""
        return self.spec.name

    def metadata(self) -> dict:
        self._require()
        return read_metadata(self.path)

    def digest(self) -> str:
        """The verified sha256 digest of the restored parameters (`verified_digest`)."""
        from lst_jax.models.checkpoint import verified_digest

        self._require()
        return verified_digest(self.path)

    def load(self, compute_dtype=None, *, verify: bool = True):
        """The `LoadedModel` (see `lst_jax.models.registry.load_model`)."""
        from lst_jax.models.registry import restore_model

        self._require()
        return restore_model(self.spec, self.path, compute_dtype, verify=verify)

    @staticmethod
    def in_memory(model, params, *, name: str, input_shape, num_classes: int | None = None,
                  normalization=None, label_set: str | None = None,
                  dataset: str | None = None):
        """A reference to a model in memory (a `Classifier`, a Flax module or a
        `model_fn`, and its parameters), accepted by every job wherever a model name is
        (`lst_jax.models.in_memory.in_memory_model`, which documents the arguments)."""
        from lst_jax.models.in_memory import in_memory_model

        return in_memory_model(model, params, name=name, input_shape=input_shape,
                               num_classes=num_classes, normalization=normalization,
                               label_set=label_set, dataset=dataset)

    def _require(self):
        if not (self.path / "metadata.json").is_file():
            from lst_jax.models.registry import missing_checkpoint_message

            raise FileNotFoundError(missing_checkpoint_message(self.spec, self.path))


def _looks_like_path(ref: str) -> bool:
    return (os.sep in ref or (os.altsep or os.sep) in ref or ref.startswith(".")
            or ref.startswith("~"))


def resolve_model(ref, checkpoint=None) -> ModelRef:
    """A registry name or a checkpoint directory -> `ModelRef` (spec + checkpoint + loader).

    Args:
        ref: registry name, checkpoint directory (str or path), or a `ModelRef` or an
            in-memory model (`ModelRef.in_memory`), returned as is.
        checkpoint: for a registry name: its checkpoint directory, or a root holding
            `<name>/` (default: `checkpoint_root()`); for a bare name that is not in the
            registry: the root searched for `<ref>/metadata.json`. Ignored for a path.

    Raises:
        ValueError: unknown name (with the closest names), a directory without
        metadata.json, metadata that does not describe the model (no architecture, ...).
        CheckpointError (a ValueError): unreadable metadata.json.
    """
    from lst_jax.models.in_memory import InMemoryModel
    from lst_jax.models.registry import REGISTRY, checkpoint_root

    if isinstance(ref, (ModelRef, InMemoryModel)):
        return ref
    if isinstance(ref, os.PathLike):
        ref = os.fspath(ref)
    if not isinstance(ref, str) or not ref:
        raise ValueError(f"a model is a registry name, a checkpoint directory or an in-memory "
                         f"model (ModelRef.in_memory(model, params, name=..., "
                         f"input_shape=...)), got {type(ref).__name__} {ref!r:.80}")
    if ref in REGISTRY:
        spec = REGISTRY[ref]
        root = Path(checkpoint) if checkpoint is not None else None
        if root is not None and (root / "metadata.json").exists():
            path = root
        else:
            path = (root or checkpoint_root()) / spec.checkpoint
        return ModelRef(ref, spec, path, True)
    path = Path(ref).expanduser()
    if _looks_like_path(ref) or (path / "metadata.json").is_file():
        return _from_directory(ref, path)
    root = Path(checkpoint) if checkpoint is not None else checkpoint_root()
    if (root / ref / "metadata.json").is_file():
        return _from_directory(ref, root / ref)
    _unknown(ref, root)


def _from_directory(ref: str, path: Path) -> ModelRef:
    if not path.is_dir():
        raise ValueError(f"model {ref!r}: no such checkpoint directory (a model is a registry "
                         "name, see `lst-jax models`, or a directory written by "
                         "`lst-jax convert`)")
    if not (path / "metadata.json").is_file():
        raise ValueError(f"model {ref!r}: {path} has no metadata.json, so it is not a "
                         "checkpoint directory (write one with `lst-jax convert WEIGHTS "
                         "--arch ARCH ...`)")
    path = path.absolute()
    return ModelRef(ref, spec_from_metadata(read_metadata(path), path), path, False)


def _unknown(ref: str, root: Path):
    from lst_jax.models.registry import REGISTRY
    from lst_jax.utils.cliargs import closest

    local = sorted(p.name for p in root.iterdir()
                   if (p / "metadata.json").is_file()) if root.is_dir() else []
    close = closest(ref, sorted(set(REGISTRY) | set(local)))
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    raise ValueError(f"unknown model {ref!r}{hint}; a model is a registry name (known: "
                     f"{', '.join(sorted(REGISTRY))}; list them with `lst-jax models`) or a "
                     "checkpoint directory")


def _hashable(value):
    if isinstance(value, list):
        return tuple(_hashable(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _hashable(v)) for k, v in value.items()))
    return value


def _safe_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "model"


def spec_from_metadata(meta: dict, path) -> Any:
    """The `ModelSpec` a checkpoint's metadata.json describes.

    Fields the metadata lacks are taken from the registry entry of the same `name` and
    architecture (checkpoints written before the metadata described the model completely,
    e.g. the shipped digits models); the architecture itself must be recorded.

    Raises:
        ValueError: no or unknown architecture, or a field that is neither recorded nor
        known from the registry (one line naming the checkpoint and the field).
    """
    from lst_jax.models.registry import ARCHITECTURES, REGISTRY, ModelSpec
    from lst_jax.utils.cliargs import closest

    where = f"checkpoint {path}"
    arch = meta.get("arch")
    if not arch:
        raise CheckpointError(
            f"{where}: metadata.json does not name the architecture ('arch'), so the model "
            "cannot be built; convert the weights with `lst-jax convert WEIGHTS --arch ARCH "
            "...` (docs/models.md), or give the registry name the checkpoint belongs to with "
            "--checkpoint pointing at it")
    if arch not in ARCHITECTURES:
        close = closest(str(arch), ARCHITECTURES)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise CheckpointError(f"{where}: metadata.json names the unknown architecture "
                              f"{arch!r}{hint}; known: {', '.join(sorted(ARCHITECTURES))}")
    base = REGISTRY.get(meta.get("name"))
    if base is not None and base.arch != arch:
        base = None
    kwargs = dict(base.arch_kwargs) if base else {}
    kwargs.update({k: _hashable(v) for k, v in (meta.get("arch_kwargs") or {}).items()})

    def field(key, fallback):
        if meta.get(key) is not None:
            return meta[key]
        if base is not None:
            return getattr(base, fallback)
        raise CheckpointError(f"{where}: metadata.json does not record {key!r} (re-convert "
                              "the weights with `lst-jax convert WEIGHTS --arch ...`)")

    input_size = tuple(int(v) for v in field("input_size", "input_size"))
    if "normalization" in meta:
        normalization = Normalization.from_dict(meta["normalization"])
    elif base is not None:
        normalization = base.normalization
    else:
        field("normalization", None)   # raises
    try:
        module = ARCHITECTURES[arch](**kwargs)
    except TypeError as e:
        raise CheckpointError(f"{where}: the arguments {kwargs} do not fit architecture "
                              f"{arch!r}: {e}") from None
    num_classes = int(getattr(module, "num_classes"))
    if meta.get("num_classes") is not None and int(meta["num_classes"]) != num_classes:
        raise CheckpointError(f"{where}: metadata.json records num_classes "
                              f"{meta['num_classes']}, but {arch} with {kwargs} has "
                              f"{num_classes}")
    dataset = meta.get("dataset")
    if dataset not in DATASETS:
        dataset = base.dataset if base is not None else "custom"
    label_set = meta.get("label_set") or (base.label_set if base is not None else "") or (
        dataset if dataset != "custom" else "")
    return ModelSpec(
        name=_safe_name(str(meta.get("name") or Path(path).name)), arch=arch,
        arch_kwargs=tuple(sorted(kwargs.items())), normalization=normalization,
        input_size=input_size, dataset=dataset, num_classes=num_classes,
        checkpoint=str(path), resize=meta.get("resize", base.resize if base else None),
        interpolation=meta.get("interpolation") or (base.interpolation if base else
                                                    "bilinear"),
        source=meta.get("source") or (base.source if base else ""),
        weights=meta.get("weights_file") or (base.weights if base else ""),
        layout="" if meta.get("layout") in (None, "default") else meta["layout"],
        label_set=label_set)
