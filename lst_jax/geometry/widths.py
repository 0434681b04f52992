"""Path widths: how far the level set extends sideways from a point of a traversal.

Reference `measure_width` (`../spec/lst.md` section 3.6): at an iterate x with direction
d = v_perp / |v_perp| (the LST step direction), draw 256 Gaussian vectors, project d out of
each, normalise them to unit L2 norm, and record the 5% and 95% quantiles of the source-class
confidence at `clip(x + r u)` for every radius r. Row 0 is (p(x), p(x)).

Deviations: gated-out points (absolute confidence < `gate`) and zero directions give NaN rows
and `mask = False` (the reference appended zeros and then crashed stacking them); the random
vectors come from explicit keys, one per (point, direction).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from lst_jax.geometry.probes import Evaluator, class_confidence, resolve_evaluator
from lst_jax.traversal.step import forward_backward, project_orthogonal
from lst_jax.utils.checks import check_key

QUANTILES = (0.05, 0.95)


class WidthResult(NamedTuple):
    """Shape: B points, R radii, Q quantiles.

    Attributes:
        widths: (B, R + 1, Q) quantiles of the confidence at radius 0 (= p(x)), r_1, ..., r_R;
            NaN rows where `mask` is False.
        conf: (B,) p_y(clip(x)).
        mask: (B,) measured: confidence >= gate and a non-zero direction.
    """

    widths: jax.Array
    conf: jax.Array
    mask: jax.Array


class WidthProbes(NamedTuple):
    """Data of the width probe family: probe m = (b, k, r) flattened row-major.

    Shape:
        x, direction: (B, H, W, C); radii: (R,); keys: (B, K) PRNG keys; labels: (B,).
    """

    x: jax.Array
    direction: jax.Array
    radii: jax.Array
    keys: jax.Array
    labels: jax.Array


def unit_orthogonal_vector(key, d):
    """A Gaussian vector with the unit direction `d` projected out, normalised to unit L2.

    Shape:
        d: (H, W, C) -> (H, W, C).
    """
    u = jax.random.normal(key, d.shape, jnp.float32)
    u = u - jnp.vdot(u, d) * d
    return u / jnp.linalg.norm(u)


def width_probes(data: WidthProbes, idx):
    """Probe family: `clip(x_b + r u_{b,k}, 0, 1)` for flat indices `(b * K + k) * R + r`."""
    k_count, r_count = data.keys.shape[1], data.radii.shape[0]
    r = idx % r_count
    k = (idx // r_count) % k_count
    b = idx // (r_count * k_count)

    def one(bi, ki, ri):
        u = unit_orthogonal_vector(data.keys[bi, ki], data.direction[bi])
        return jnp.clip(data.x[bi] + data.radii[ri] * u, 0.0, 1.0)

    return jax.vmap(one)(b, k, r), data.labels[b]


def width_directions(model_fn, params, images, target_images, labels) -> jax.Array:
    """Unit LST step directions `v_perp / |v_perp|` at iterates `images` (zero where
    v_perp = 0).

    `v_perp` is `target_images - images` with its component along the input gradient of the
    source-class cross-entropy removed, as in the traversal step.

    >>> import jax, jax.numpy as jnp
    >>> model_fn = lambda p, x: x.reshape(len(x), -1) @ p
    >>> params = jax.random.normal(jax.random.key(0), (8 * 8 * 3, 4))
    >>> images = jax.random.uniform(jax.random.key(1), (2, 8, 8, 3))
    >>> width_directions(model_fn, params, images, images[::-1], jnp.array([0, 1])).shape
    (2, 8, 8, 3)

    Shape:
        images, target_images: (B, H, W, C); labels: (B,) -> (B, H, W, C).
    """
    return _width_directions_jit(model_fn, params, jnp.asarray(images, jnp.float32),
                                 jnp.asarray(target_images, jnp.float32),
                                 jnp.asarray(labels, jnp.int32))


@functools.partial(jax.jit, static_argnames=("model_fn",))
def _width_directions_jit(model_fn, params, x, targets, labels):
    _, grad = forward_backward(model_fn, params, x, labels)
    v = jax.vmap(project_orthogonal)(grad, targets - x)
    n = jnp.sqrt(jnp.sum(v * v, axis=(1, 2, 3), keepdims=True))
    return jnp.where(n > 0, v / jnp.where(n > 0, n, 1.0), 0.0)


@dataclasses.dataclass(frozen=True)
class WidthConfig:
    """Settings of `path_widths`.

    >>> WidthConfig(radii=(0.5, 1.0)).replace(num_dirs=64).num_dirs
    64

    Attributes:
        radii: L2 distances (the reference's `--width_distances`).
        num_dirs: random directions per point (reference 256).
        quantiles: quantile levels over the directions (linear interpolation).
        gate: measure only points with p_y(x) >= gate (the reference gates with its
            `pthresh`); None measures every point.
    """

    radii: tuple = (0.5, 1.0, 1.5, 2.0)
    num_dirs: int = 256
    quantiles: tuple = QUANTILES
    gate: float | None = None

    def __post_init__(self):
        radii = tuple(float(r) for r in np.asarray(self.radii, np.float64).reshape(-1))
        if not radii or not np.all(np.isfinite(radii)) or min(radii) < 0:
            raise ValueError(f"radii must be a non-empty list of non-negative numbers, got "
                             f"{self.radii!r}")
        object.__setattr__(self, "radii", radii)
        object.__setattr__(self, "quantiles", tuple(float(q) for q in self.quantiles))
        if isinstance(self.num_dirs, bool) or not isinstance(self.num_dirs, (int, np.integer)) \
                or self.num_dirs < 2:
            raise ValueError(f"num_dirs must be an integer >= 2, got {self.num_dirs!r}")
        if not self.quantiles or any(not 0 <= q <= 1 for q in self.quantiles):
            raise ValueError(f"quantiles must be levels in [0, 1], got {self.quantiles!r}")

    def replace(self, **changes) -> "WidthConfig":
        """A copy with `changes` applied (validated again)."""
        return dataclasses.replace(self, **changes)


def path_widths(model_fn, params, images, direction, labels, *, key,
                config: WidthConfig = WidthConfig(), batch_size: int | None = None, mesh=None,
                memory_budget=None, evaluate_fn: Evaluator | None = None) -> WidthResult:
    """Width quantiles of the level set around each point, orthogonal to `direction`.

    >>> import jax, jax.numpy as jnp
    >>> model_fn = lambda p, x: x.reshape(len(x), -1) @ p
    >>> params = jax.random.normal(jax.random.key(0), (8 * 8 * 3, 4))
    >>> images = jax.random.uniform(jax.random.key(1), (2, 8, 8, 3))
    >>> labels = jnp.array([0, 1])
    >>> d = width_directions(model_fn, params, images, images[::-1], labels)
    >>> res = path_widths(model_fn, params, images, d, labels, key=jax.random.key(2),
    ...                   config=WidthConfig(radii=(0.5, 1.0), num_dirs=4))
    >>> res.widths.shape
    (2, 3, 2)

    Args:
        images: the points x (e.g. logged LST iterates).
        direction: unit step directions at x (`width_directions`); zero directions are
            reported as unmeasured.
        key: typed PRNG key; point b, direction k use `split(split(key, B)[b], K)[k]`.
        config: `WidthConfig` (radii, directions, quantiles, gate).
        batch_size, mesh, memory_budget, evaluate_fn: placement, see
            `lst_jax.geometry.evaluate_combinations`.

    Shape:
        images, direction: (B, H, W, C); labels: (B,) -> WidthResult with widths (B, R + 1, Q).
    """
    check_key(key)
    if not isinstance(config, WidthConfig):
        raise TypeError(f"config must be a WidthConfig, got {type(config).__name__}")
    x = jnp.asarray(images, jnp.float32)
    direction = jnp.asarray(direction, jnp.float32)
    labels = jnp.asarray(labels, jnp.int32)
    radii_np = np.asarray(config.radii, np.float32)
    num_dirs = int(config.num_dirs)
    if x.ndim != 4 or direction.shape != x.shape:
        raise ValueError(f"images and direction must have equal shapes (B, H, W, C), got "
                         f"{x.shape} and {direction.shape}")
    b = x.shape[0]
    keys = _width_keys_jit(key, b, num_dirs)
    data = WidthProbes(x, direction, jnp.asarray(radii_np), keys, labels)
    evaluate_fn = resolve_evaluator(evaluate_fn, mesh, batch_size, memory_budget)
    total = b * num_dirs * radii_np.size
    conf = evaluate_fn(model_fn, params, width_probes, data, total)
    gate = config.gate
    return _finish_widths_jit(model_fn, params, x, direction, labels, conf,
                              jnp.asarray(config.quantiles, jnp.float32),
                              None if gate is None else jnp.float32(gate), num_dirs,
                              int(radii_np.size))


@functools.partial(jax.jit, static_argnames=("b", "num_dirs"))
def _width_keys_jit(key, b: int, num_dirs: int):
    return jax.vmap(lambda k: jax.random.split(k, num_dirs))(jax.random.split(key, b))


@functools.partial(jax.jit, static_argnames=("model_fn", "num_dirs", "num_radii"))
def _finish_widths_jit(model_fn, params, x, direction, labels, conf, quantiles, gate,
                       num_dirs: int, num_radii: int) -> WidthResult:
    b = x.shape[0]
    conf = conf.reshape(b, num_dirs, num_radii)
    q = jnp.quantile(conf, quantiles, axis=1)                              # (Q, B, R)
    q = jnp.transpose(q, (1, 2, 0))                                        # (B, R, Q)
    p0 = class_confidence(model_fn, params, jnp.clip(x, 0.0, 1.0), labels)
    row0 = jnp.broadcast_to(p0[:, None, None], (b, 1, q.shape[-1]))
    widths = jnp.concatenate([row0, q], axis=1)
    nonzero = jnp.sum(direction * direction, axis=(1, 2, 3)) > 0
    mask = nonzero if gate is None else nonzero & (p0 >= gate)
    widths = jnp.where(mask[:, None, None], widths, jnp.nan)
    return WidthResult(widths, p0, mask)
