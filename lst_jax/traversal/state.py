"""Typed pytrees of the traversal: the per-pair constants, the state (scan carry), the
per-iteration record and the result."""

from __future__ import annotations

from typing import NamedTuple, Optional

import jax
from flax import struct


class Pairs(NamedTuple):
    """Per-pair constants of a traversal batch (set by `lst_init`, carried in `LSTState`).

    Attributes:
        target_images: (B, H, W, C) the images the iterates move toward.
        labels: (B,) int32 source classes (the class whose confidence is held).
        target_labels: (B,) int32 classes of `target_images` (for the record only).
        clean_conf: (B,) p_{labels}(clean source), the level the traversal holds.
        valid: (B,) bool, the reference's argmax filter: the clean source is classified as
            its label.
    """

    target_images: jax.Array
    labels: jax.Array
    target_labels: jax.Array
    clean_conf: jax.Array
    valid: jax.Array


@struct.dataclass
class LSTState:
    """State of a traversal (`lst_init` -> `lst_step` -> ...; the scan carry of the runner).

    Attributes:
        x: (B, H, W, C) current iterate in [0, 1].
        acc: (B, H, W, C) accumulated adversarial term, clipped to [-eps, eps].
        grad: (B, H, W, C) direction of the gradient of the source-class cross-entropy at `x`
            (the gradient is `grad_scale * grad`, see `step.input_gradient`; fused mode only:
            the plain two-pass step recomputes it and carries zeros).
        grad_scale: (B,) magnitude factor of the gradient (1 - p_y, or 1 with
            `reference_numerics`).
        probs: (B, K) softmax probabilities at `x`.
        accepted: (B,) bool, whether the last step's candidate passed the confidence test
            (all True after `lst_init`).
        pairs: the per-pair constants (`Pairs`).
    """

    x: jax.Array
    acc: jax.Array
    grad: jax.Array
    grad_scale: jax.Array
    probs: jax.Array
    accepted: jax.Array
    pairs: Pairs


@struct.dataclass
class LSTRecord:
    """What one iteration leaves behind, stacked by the scan to a leading (T,) axis.

    Entry k describes the iterate *after* iteration k (x_{k+1}); `LSTResult.initial` describes
    x_0. All fields (T, B).

    Attributes:
        conf_source: p_{y_s}(x_{k+1}), source-class confidence.
        conf_target: p_{y_t}(x_{k+1}), target-class confidence.
        accepted: whether iteration k's candidate passed the confidence test.
        dist_target: ||x_{k+1} - x_t||_2 over all pixels.
    """

    conf_source: jax.Array
    conf_target: jax.Array
    accepted: jax.Array
    dist_target: jax.Array


@struct.dataclass
class LSTResult:
    """Output of `level_set_traversal` (every array leaf a `jax.Array`, whatever the mesh or
    precision).

    Attributes:
        images: (B, H, W, C) final iterates x_T in [0, 1].
        valid: (B,) bool, the reference's argmax filter: the clean source is classified as its
            label. Invalid samples are still traversed (static shapes) and must be masked out.
        clean_conf: (B,) p_{y_s} of the clean source, the level the traversal holds.
        start: (B, H, W, C) the noised start x_0.
        initial: LSTRecord of x_0 (fields (B,), `accepted` all True).
        record: LSTRecord with a leading (iters,) axis.
        logged_images: (L, B, H, W, C) iterates x_0, x_{log_step}, ... with
            L = ceil(iters / log_step), or None when `log_images` is off.
    """

    images: jax.Array
    valid: jax.Array
    clean_conf: jax.Array
    start: jax.Array
    initial: LSTRecord
    record: LSTRecord
    logged_images: Optional[jax.Array] = None
