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

import functools
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from lst_jax.geometry.probes import DEFAULT_CHUNK, Evaluator, class_confidence, default_evaluator
from lst_jax.traversal.step import forward_backward, project_orthogonal

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


def width_directions(model_fn, params, x, targets, labels):
    """Unit LST step directions `v_perp / |v_perp|` at iterates x (zero where v_perp = 0).

    `v_perp` is `target - x` with its component along the input gradient of the source-class
    cross-entropy removed, as in the traversal step.

    Shape:
        x, targets: (B, H, W, C); labels: (B,) -> (B, H, W, C).
    """
    return _width_directions_jit(model_fn, params, jnp.asarray(x, jnp.float32),
                                 jnp.asarray(targets, jnp.float32),
                                 jnp.asarray(labels, jnp.int32))


@functools.partial(jax.jit, static_argnames=("model_fn",))
def _width_directions_jit(model_fn, params, x, targets, labels):
    _, grad = forward_backward(model_fn, params, x, labels)
    v = jax.vmap(project_orthogonal)(grad, targets - x)
    n = jnp.sqrt(jnp.sum(v * v, axis=(1, 2, 3), keepdims=True))
    return jnp.where(n > 0, v / jnp.where(n > 0, n, 1.0), 0.0)


def path_widths(model_fn, params, x, direction, labels, radii: Sequence[float], key, *,
                num_dirs: int = 256, quantiles: Sequence[float] = QUANTILES,
                gate: float | None = None, chunk_size: int = DEFAULT_CHUNK,
                evaluate_fn: Evaluator | None = None) -> WidthResult:
    """Width quantiles of the level set around each point x, orthogonal to `direction`.

    Args:
        x: points (e.g. logged LST iterates); direction: unit step directions at x
            (`width_directions`); zero directions are reported as unmeasured.
        radii: L2 distances (the reference's `--width_distances`).
        key: PRNG key; point b, direction k use `split(split(key, B)[b], K)[k]`.
        num_dirs: random directions per point (reference 256).
        quantiles: quantile levels over the directions (linear interpolation).
        gate: measure only points with p_y(x) >= gate (the reference gates with its
            `pthresh`); None measures every point.

    Shape:
        x, direction: (B, H, W, C); labels: (B,) -> WidthResult with widths (B, R + 1, Q).
    """
    x = jnp.asarray(x, jnp.float32)
    direction = jnp.asarray(direction, jnp.float32)
    labels = jnp.asarray(labels, jnp.int32)
    radii_np = np.asarray(radii, np.float32).reshape(-1)
    if x.ndim != 4 or direction.shape != x.shape:
        raise ValueError(f"x and direction must have equal shapes (B, H, W, C), got {x.shape} "
                         f"and {direction.shape}")
    if radii_np.size == 0 or not np.all(np.isfinite(radii_np)) or np.any(radii_np < 0):
        raise ValueError(f"radii must be a non-empty list of non-negative numbers, got {radii}")
    if isinstance(num_dirs, bool) or not isinstance(num_dirs, (int, np.integer)) or num_dirs < 2:
        raise ValueError(f"num_dirs must be an integer >= 2, got {num_dirs!r}")
    b = x.shape[0]
    keys = _width_keys_jit(key, b, int(num_dirs))
    data = WidthProbes(x, direction, jnp.asarray(radii_np), keys, labels)
    evaluate_fn = evaluate_fn or default_evaluator(chunk_size)
    total = b * num_dirs * radii_np.size
    conf = evaluate_fn(model_fn, params, width_probes, data, total)
    return _finish_widths_jit(model_fn, params, x, direction, labels, conf,
                              jnp.asarray(quantiles, jnp.float32),
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
