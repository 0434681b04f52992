"""The model-function contract: `model_fn(params, images) -> logits` on [0, 1] NHWC pixels.

Flax modules in the zoo return `(logits, out)` where `out` is a dict of named intermediates
(`pre_logits`, stage outputs, ...). `Classifier` binds a module to its normalisation and gives
the pure functions the rest of the library uses. It is a frozen, hashable dataclass compared by
value, so two `Classifier`s built from the same module and normalisation share compiled code
when passed as a static `model_fn`.

Decision (recorded in docs/design.md): the zoo is written in Flax Linen. Linen's variables are
plain nested dicts, which PyTorch converters produce and orbax saves directly, and `apply` is
pure by construction; nothing outside `lst_jax.models` depends on this choice.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclasses.dataclass(frozen=True)
class Normalization:
    """Per-channel `(x - mean) / std`; `mean=None` means identity (model takes [0, 1])."""

    mean: Optional[tuple[float, ...]] = None
    std: Optional[tuple[float, ...]] = None

    def __post_init__(self):
        if (self.mean is None) != (self.std is None):
            raise ValueError("Normalization needs both mean and std, or neither")
        if self.mean is not None and len(self.mean) != len(self.std):
            raise ValueError(f"mean {self.mean} and std {self.std} differ in length")

    @property
    def is_identity(self) -> bool:
        return self.mean is None

    def _stats(self, x):
        # explicit broadcast shape: the suite runs with jax_numpy_rank_promotion="raise"
        bshape = (1,) * (x.ndim - 1) + (len(self.mean),)
        return (jnp.asarray(self.mean, x.dtype).reshape(bshape),
                jnp.asarray(self.std, x.dtype).reshape(bshape))

    def __call__(self, images: jax.Array) -> jax.Array:
        """[0, 1] pixels -> the model's normalised tensor space, `(x - mean) / std`."""
        if self.mean is None:
            return images
        mean, std = self._stats(images)
        return (images - mean) / std

    def normalize(self, images: jax.Array) -> jax.Array:
        """Same as calling the normalisation: pixels -> normalised tensors."""
        return self(images)

    def denormalize(self, z: jax.Array) -> jax.Array:
        """The inverse: normalised tensors -> pixels, `z * std + mean` (not clipped).

        Shape:
            z: (..., C) with C = len(mean) -> same shape.
        """
        if self.mean is None:
            return z
        mean, std = self._stats(z)
        return z * std + mean

    def to_dict(self) -> dict:
        return {"mean": list(self.mean) if self.mean else None,
                "std": list(self.std) if self.std else None}

    @classmethod
    def from_dict(cls, d: Optional[dict]) -> "Normalization":
        if not d or d.get("mean") is None:
            return cls()
        return cls(tuple(float(v) for v in d["mean"]), tuple(float(v) for v in d["std"]))


IMAGENET_NORMALIZATION = Normalization(IMAGENET_MEAN, IMAGENET_STD)


@dataclasses.dataclass(frozen=True)
class Classifier:
    """A Flax module plus its normalisation, callable as `model_fn(params, images) -> logits`.

    Attributes:
        module: Linen module with `__call__(x, train=False) -> (logits, out)`.
        normalization: applied to [0, 1] pixels before the module.
        compute_dtype: optional dtype (e.g. jnp.bfloat16) for the module's forward/backward;
            inputs and parameters are cast in (`cast_params` does the parameters' part once,
            for loops that call the model many times), logits are returned as float32.

    Shape:
        images: (B, H, W, C) float32 in [0, 1] -> logits (B, K) float32 (float64 for float64
        images and parameters under `jax.enable_x64`, without `compute_dtype`).
    """

    module: nn.Module
    normalization: Normalization = Normalization()
    compute_dtype: Any = None

    def __call__(self, params, images: jax.Array) -> jax.Array:
        return self.features(params, images)[0]

    def features(self, params, images: jax.Array):
        """`(logits, out)` with the module's named intermediates in `out`."""
        x = self.normalization(images)
        if self.compute_dtype is None:
            return self.module.apply(params, x, train=False)
        logits, out = self.module.apply(self.cast_params(params), x.astype(self.compute_dtype),
                                        train=False)
        return logits.astype(jnp.float32), out

    def cast_params(self, params):
        """The floating-point parameters in `compute_dtype` (unchanged without one). Leaves
        already in that dtype are not cast again, so the model may be called with the result.
        """
        if self.compute_dtype is None:
            return params
        dt = jnp.dtype(self.compute_dtype)
        return jax.tree.map(lambda p: p.astype(dt) if jnp.issubdtype(p.dtype, jnp.floating)
                            and p.dtype != dt else p, params)

    def on_normalized_inputs(self) -> "Classifier":
        """The same model as a function of *normalised* inputs (`normalization` dropped):
        `clf.on_normalized_inputs()(params, clf.normalization(x)) == clf(params, x)`.

        For methods that work in the model's tensor space, as the input-space connectivity
        paper does (`lst_jax.connectivity.model_in_space`). Equal for equal models, so it
        shares compiled programs like any `Classifier`.
        """
        return dataclasses.replace(self, normalization=Normalization())

    def init(self, key, image_shape) -> dict:
        """Random variables for images of shape (H, W, C)."""
        return self.module.init(key, jnp.zeros((1,) + tuple(image_shape), jnp.float32),
                                train=False)
