"""Isometric 2-D embedding of a triangle of images (the reference's `visualize_nplane`)."""

from __future__ import annotations

import jax.numpy as jnp

from lst_jax.geometry.grids import TriangleGrid


def triangle_embedding(x0, x1, x2):
    """2-D vertex coordinates of the triangle (x0, x1, x2), up to a global scale.

    x0 sits at (0, 0), x1 at (1, 0) (leg 1 has unit length) and x2 at
    `m (cos a, sin a)` with `m = |x2 - x0| / |x1 - x0|` and `a` the angle between the legs,
    so the embedding preserves all angles and length ratios. A degenerate leg (zero length)
    gives NaN coordinates.

    >>> import jax.numpy as jnp
    >>> triangle_embedding(jnp.zeros(3), jnp.array([2.0, 0, 0]), jnp.array([0, 2.0, 0]))[2]
    Array([0., 1.], dtype=float32)

    Shape:
        x0, x1, x2: (H, W, C) (any equal shapes) -> (3, 2) float32.
    """
    a = (jnp.asarray(x1, jnp.float32) - jnp.asarray(x0, jnp.float32)).reshape(-1)
    b = (jnp.asarray(x2, jnp.float32) - jnp.asarray(x0, jnp.float32)).reshape(-1)
    na, nb = jnp.linalg.norm(a), jnp.linalg.norm(b)
    ok = (na > 0) & (nb > 0)
    cos = jnp.clip(jnp.vdot(a, b) / jnp.where(ok, na * nb, 1.0), -1.0, 1.0)
    mag = nb / jnp.where(ok, na, 1.0)
    v2 = jnp.stack([mag * cos, mag * jnp.sqrt(1.0 - cos * cos)])
    coords = jnp.stack([jnp.zeros(2), jnp.array([1.0, 0.0]), v2]).astype(jnp.float32)
    return jnp.where(ok, coords, jnp.nan)


def embed_grid(coords, *, grid: TriangleGrid):
    """2-D positions of the grid points for embedded vertices `coords`.

    >>> import jax.numpy as jnp
    >>> from lst_jax.geometry import triangle_grid
    >>> embed_grid(jnp.zeros((3, 2)), grid=triangle_grid()).shape
    (64, 2)

    Shape:
        coords: (3, 2) -> (P, 2).
    """
    return jnp.asarray(grid.weights, jnp.float32) @ jnp.asarray(coords, jnp.float32)
