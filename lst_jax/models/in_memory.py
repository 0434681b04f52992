"""A model held in memory as a model reference: a Flax module of your own through every job.

`in_memory_model(model, params, name=..., input_shape=...)` (also `ModelRef.in_memory`)
returns an `InMemoryModel`, which has the interface of `lst_jax.models.reference.ModelRef`
(`name`, `spec`, `digest()`, `load()`, `metadata()`), so every job that takes a model name
takes it too (`resolve_model` passes it through) and writes the same run directories,
caches and reports.

`digest()` is `checkpoint.tree_digest` of the parameters themselves, the digest a checkpoint
records for its restored parameters: an in-memory copy of a saved checkpoint shares the
checkpoint's caches (under the same name), other parameters never do. The parameters must
not be changed in place afterwards (jax arrays cannot be; numpy arrays could).
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from lst_jax.models.checkpoint import check_tree_matches, tree_digest
from lst_jax.models.wrapper import Classifier, Normalization

_LABEL_DATASETS = ("digits", "cifar10", "imagenet")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclasses.dataclass(frozen=True, eq=False)
class InMemoryModel:
    """A model reference to a model held in memory (see the module docstring).

    Compared and hashed by identity (the parameters are not hashable); two references to
    the same parameters under the same name share every cache through their digest.

    Attributes:
        spec: the `ModelSpec` describing it (`arch` is "in-memory:<module or function>",
            `checkpoint` empty).
        model_fn: `model_fn(params, images) -> logits` (a `Classifier` or any callable).
        params: the parameters (variables) `model_fn` takes.
    """

    spec: Any
    model_fn: Callable
    params: Any
    params_digest: str
    registry = False
    path = None

    @property
    def ref(self) -> "InMemoryModel":
        """What `resolve_model` resolves to this reference: the reference itself."""
        return self

    @property
    def name(self) -> str:
        """The model's name in run directories, cache keys and tables."""
        return self.spec.name

    def digest(self) -> str:
        """sha256 of the parameters (`checkpoint.tree_digest`, as a checkpoint records)."""
        return self.params_digest

    def metadata(self) -> dict:
        s = self.spec
        return {"name": s.name, "arch": s.arch, "in_memory": True, "digest": self.digest(),
                "input_size": list(s.input_size), "num_classes": s.num_classes,
                "normalization": s.normalization.to_dict(), "label_set": s.label_set,
                "dataset": s.dataset}

    def load(self, compute_dtype=None, *, verify: bool = True):
        """The `LoadedModel` (`verify` is accepted for the interface; nothing to verify).

        Raises:
            ValueError: a `compute_dtype` other than float32 for a `model_fn` that is not a
            `Classifier` (only a `Classifier` casts its forward pass).
        """
        from lst_jax.models.registry import LoadedModel

        model_fn = self.model_fn
        if compute_dtype is not None and jnp.dtype(compute_dtype) != jnp.float32:
            if not jnp.issubdtype(jnp.dtype(compute_dtype), jnp.floating):
                raise ValueError(f"compute_dtype must be a floating dtype, got "
                                 f"{compute_dtype!r}")
            if not isinstance(model_fn, Classifier):
                raise ValueError(f"compute_dtype={compute_dtype!r} needs a Classifier; model "
                                 f"{self.name!r} is a plain model_fn (cast inside it instead)")
            model_fn = dataclasses.replace(model_fn, compute_dtype=jnp.dtype(compute_dtype))
        return LoadedModel(self.spec, model_fn, self.params, self.metadata())

    def __repr__(self) -> str:
        return f"InMemoryModel({self.name!r}, digest={self.params_digest[:12]})"


def _input_shape(input_shape) -> tuple:
    try:
        shape = tuple(int(v) for v in input_shape)
        ok = len(shape) == 3 and all(v > 0 for v in shape) and all(
            not isinstance(v, bool) and float(v) == int(v) for v in input_shape)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"input_shape must be (height, width, channels) of positive "
                         f"integers (one image, no batch axis), got {input_shape!r}")
    return shape


def _check_params(params):
    leaves = jax.tree_util.tree_leaves(params)
    if not leaves:
        raise ValueError("params is empty (no arrays): give the model's variables, e.g. "
                         "module.init(key, images)")
    bad = [type(v).__name__ for v in leaves if not hasattr(v, "dtype")
           or not hasattr(v, "shape")]
    if bad:
        raise ValueError(f"params must be a pytree of arrays; it holds {sorted(set(bad))}")


def _as_model_fn(model, normalization) -> Callable:
    if isinstance(model, Classifier):
        if normalization is not None and normalization != model.normalization:
            raise ValueError(f"normalization {normalization} differs from the Classifier's "
                             f"{model.normalization}; give one of them")
        return model
    if isinstance(model, nn.Module):
        return Classifier(model, normalization or Normalization())
    if not callable(model):
        raise ValueError(f"model must be a Classifier, a Flax module or a callable "
                         f"model_fn(params, images) -> logits, got {type(model).__name__}")
    if normalization is not None:
        raise ValueError("normalization is for a Flax module or Classifier; a plain "
                         "model_fn takes [0, 1] pixels and normalises inside itself")
    return model


def _check_forward(model_fn, params, shape, num_classes, name) -> int:
    """Traces (no compute) the model on two images; returns the number of classes."""
    images = jax.ShapeDtypeStruct((2,) + shape, jnp.float32)
    if isinstance(model_fn, Classifier):
        try:
            abstract = jax.eval_shape(lambda: model_fn.init(jax.random.key(0), shape))
        except Exception as e:   # noqa: BLE001 - the module's own error, named
            raise ValueError(f"model {name!r}: the module cannot be applied to images of "
                             f"input_shape {shape}: {type(e).__name__}: "
                             f"{str(e).splitlines()[0] if str(e) else ''}") from None
        check_tree_matches(params, abstract, what=f"params of model {name!r} (for images of "
                           f"input_shape {shape})")
    try:
        out = jax.eval_shape(model_fn, params, images)
    except Exception as e:       # noqa: BLE001 - the model's own error, named
        raise ValueError(f"model {name!r}: model_fn(params, images of shape {(2,) + shape}) "
                         f"fails, so params do not fit the model or input_shape is wrong: "
                         f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                         ) from None
    hint = (" (a Classifier's module must return (logits, intermediates); wrap a module that "
            "returns logits as model_fn=lambda p, x: module.apply(p, x))"
            if isinstance(model_fn, Classifier) else "")
    if not hasattr(out, "shape") or len(out.shape) != 2 or out.shape[0] != 2:
        raise ValueError(f"model {name!r}: model_fn must return logits (batch, classes); on "
                         f"images {(2,) + shape} it returns "
                         f"{getattr(out, 'shape', type(out).__name__)}{hint}")
    if not jnp.issubdtype(out.dtype, jnp.floating):
        raise ValueError(f"model {name!r}: logits must be floating point, got {out.dtype}")
    k = int(out.shape[1])
    if num_classes is not None and k != num_classes:
        raise ValueError(f"model {name!r}: num_classes is {num_classes}, but the model "
                         f"returns {k} logits")
    return k


def in_memory_model(model, params, *, name: str, input_shape, num_classes: int | None = None,
                    normalization: Normalization | None = None, label_set: str | None = None,
                    dataset: str | None = None, source: str = "in memory") -> InMemoryModel:
    """A model reference to a model in memory, checked before any job runs.

    Args:
        model: a `Classifier`; a Flax module following the zoo's contract
            (`__call__(x, train=False) -> (logits, intermediates)`, wrapped in a
            `Classifier` with `normalization`); or any `model_fn(params, images) -> logits`
            on [0, 1] pixels.
        params: the variables `model` takes (e.g. `{"params": ..., "batch_stats": ...}`).
        name: the model's name in run directories, caches and tables (letters, digits,
            `.`, `_`, `-`).
        input_shape: (H, W, C) of one image.
        num_classes: checked against the logits (default: read from them).
        normalization: only with a Flax module (default identity).
        label_set: what the class indices mean ("digits", "cifar10", "imagenet" or your own
            tag); models compared side by side must share it.
        dataset: the data it belongs to (`ModelSpec.dataset`; default the label set when
            it is "digits", "cifar10" or "imagenet", else "custom").
        source: a description for the manifests.

    Shape:
        images (B, H, W, C) float32 in [0, 1] -> logits (B, num_classes).

    Raises:
        ValueError: a bad name or input_shape, params that do not match the module (missing,
        unexpected or mis-shaped keys), a model that fails on input_shape, or logits that
        are not (batch, num_classes); all before any work.
    """
    from lst_jax.models.registry import ModelSpec

    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"name must be a non-empty name of letters, digits, '.', '_', '-' "
                         f"(it names run directories), got {name!r}")
    shape = _input_shape(input_shape)
    if num_classes is not None and (isinstance(num_classes, bool) or not isinstance(
            num_classes, (int, np.integer)) or num_classes < 1):
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
    model_fn = _as_model_fn(model, normalization)
    _check_params(params)
    k = _check_forward(model_fn, params, shape, num_classes, name)
    if dataset is None:
        dataset = label_set if label_set in _LABEL_DATASETS else "custom"
    arch = (type(model_fn.module).__name__ if isinstance(model_fn, Classifier)
            else getattr(model_fn, "__name__", type(model_fn).__name__))
    spec = ModelSpec(
        name=name, arch=f"in-memory:{arch}", input_size=shape,
        normalization=model_fn.normalization if isinstance(model_fn, Classifier)
        else Normalization(), dataset=dataset, num_classes=k, checkpoint="", source=source,
        label_set=label_set or (dataset if dataset != "custom" else ""))
    return InMemoryModel(spec, model_fn, params, tree_digest(params))


__all__ = ["InMemoryModel", "in_memory_model"]
