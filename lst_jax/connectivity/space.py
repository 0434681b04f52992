"""The input space the connectivity method works in: the model's pixels or its normalised
tensors.

The authors interpolate and optimise in the model's *normalised* tensor space
(`(x - mean) / std`, no clamping), and their learning rates, MSE and TV weights are meant
there. Linear paths are the same in both spaces (normalisation is affine, so the path
`(1 - a) A + a C` maps onto itself and every loss along it is equal), optimisation is not:
Adam's per-coordinate steps of size `lr` and the penalty weights change meaning with the
scale. `model_in_space(model_fn, space="normalized")` gives the model as a function of normalised
inputs together with the maps between the two spaces, so every optimiser of
`lst_jax.connectivity` runs where the paper's hyperparameters apply. For models without a
normaliser (the shipped digits models) the two spaces coincide.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import numpy as np

from lst_jax.models.wrapper import Classifier, Normalization

SPACES = ("normalized", "pixel")


@dataclasses.dataclass(frozen=True)
class InputSpace:
    """Maps between [0, 1] pixels and the space a connectivity computation runs in.

    Attributes:
        name: "normalized" (the model's tensor space, the authors' choice) or "pixel".
        normalization: the model's normaliser (identity in pixel space).
    """

    name: str = "pixel"
    normalization: Normalization = Normalization()

    def from_pixels(self, images) -> jax.Array:
        """[0, 1] pixels -> this space. Shape: (..., C) -> same."""
        return self.normalization(images)

    def to_pixels(self, x) -> jax.Array:
        """This space -> pixels (not clipped: optimised inputs may leave [0, 1]). Shape: same."""
        return self.normalization.denormalize(x)

    def out_of_range_fraction(self, x) -> np.ndarray:
        """Per image, the fraction of values outside [0, 1] once mapped back to pixels.

        Shape:
            x: (B, H, W, C) -> (B,) float.
        """
        p = np.asarray(self.to_pixels(x))
        return ((p < 0.0) | (p > 1.0)).reshape(len(p), -1).mean(axis=1)

    def to_dict(self) -> dict:
        return {"name": self.name, "normalization": self.normalization.to_dict()}


def model_in_space(model_fn: Callable, *, space: str = "normalized"):
    """`(fn, InputSpace)`: the model as a function of inputs in `space`.

    `space="normalized"`: for a `lst_jax.models.Classifier`, `fn` is
    `model_fn.on_normalized_inputs()` (the module without its normaliser) and the space maps
    with the model's mean/std; any other callable has no normaliser to expose, so its own
    input space is used (identity maps). `space="pixel"`: `fn` is `model_fn` itself.

    Raises:
        ValueError: unknown `space`.

    Example:
        >>> from lst_jax.connectivity import model_in_space
        >>> model_fn = lambda p, x: x.reshape(len(x), -1) @ p
        >>> fn, space = model_in_space(model_fn, space="normalized")
        >>> fn is model_fn, space.name
        (True, 'normalized')
    """
    if space not in SPACES:
        raise ValueError(f"space must be one of {SPACES}, got {space!r}")
    if space == "pixel" or not isinstance(model_fn, Classifier) \
            or model_fn.normalization.is_identity:
        return model_fn, InputSpace("pixel" if space == "pixel" else "normalized")
    return model_fn.on_normalized_inputs(), InputSpace("normalized", model_fn.normalization)
