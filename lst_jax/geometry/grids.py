"""Barycentric grids over a triangle (source, vertex 1, vertex 2) and round pairs.

The reference (`eval_utils.get_avg_conf`, `../spec/lst.md` section 3.4) loops
`t1, t2 in arange(n + 1) / n` (t1 outer, t2 inner) and keeps a point unless
`1 - t1 - t2 < 0` in float64. Round-off drops (0.8, 0.2) and (0.9, 0.1) for n = 10, so its grid
has 64 points, not 66. `grid="reference"` reproduces that filter at any resolution;
`grid="exact"` keeps every integer point `i + j <= n`.
"""

from __future__ import annotations

import itertools
from typing import NamedTuple

import numpy as np

from lst_jax.utils.checks import check_positive_int

GRID_KINDS = ("reference", "exact")


class TriangleGrid(NamedTuple):
    """Points `(1 - t1 - t2) x_s + t1 x_1 + t2 x_2` of a triangle, in the reference order.

    Attributes:
        t: (P, 2) float64 barycentric coordinates (t1, t2).
        weights: (P, 3) float32 vertex weights (1 - t1 - t2, t1, t2).
        leg1: (P,) bool, points on the source -> vertex-1 edge (t2 == 0).
        leg2: (P,) bool, points on the source -> vertex-2 edge (t1 == 0).
        source: index of the source vertex (0, 0).
        kind: "reference" or "exact"; n: resolution (divisions per edge).
    """

    t: np.ndarray
    weights: np.ndarray
    leg1: np.ndarray
    leg2: np.ndarray
    source: int
    kind: str
    n: int

    @property
    def num_points(self) -> int:
        return int(self.t.shape[0])


def triangle_grid(*, kind: str = "reference", n: int = 10) -> TriangleGrid:
    """The barycentric grid used for Table 2 and the triangle figures.

    >>> triangle_grid().num_points, triangle_grid(kind="exact").num_points
    (64, 66)

    Args:
        kind: "reference" (the reference's float filter: 64 points for n = 10) or "exact"
            (all (n + 1)(n + 2) / 2 integer points: 66 for n = 10).
        n: divisions per edge (the reference's `num_interps`, default 10).

    Shape:
        -> TriangleGrid with P points; both legs always hold n + 1 points.
    """
    if kind not in GRID_KINDS:
        raise ValueError(f"grid must be one of {GRID_KINDS}, got {kind!r}")
    n = check_positive_int("grid resolution n", n)
    pts, w0 = [], []
    if kind == "reference":
        ts = np.arange(n + 1) / n
        for t1 in ts:
            for t2 in ts:
                if 1 - t1 - t2 < 0:
                    continue
                pts.append((t1, t2))
                w0.append(1 - t1 - t2)
    else:
        for i in range(n + 1):
            for j in range(n + 1 - i):
                pts.append((i / n, j / n))
                w0.append((n - i - j) / n)
    t = np.asarray(pts, np.float64)
    weights = np.stack([np.asarray(w0), t[:, 0], t[:, 1]], axis=1).astype(np.float32)
    leg1, leg2 = t[:, 1] == 0, t[:, 0] == 0
    source = int(np.flatnonzero(leg1 & leg2)[0])
    return TriangleGrid(t, weights, leg1, leg2, source, kind, n)


def round_pairs(rounds: int) -> list[tuple[int, int]]:
    """All unordered pairs (r1 < r2) of rounds: the triangles of Table 2 (10 for 5 rounds).

    >>> round_pairs(3)
    [(0, 1), (0, 2), (1, 2)]
    """
    if isinstance(rounds, bool) or not isinstance(rounds, (int, np.integer)) or rounds < 2:
        raise ValueError(f"rounds must be an integer >= 2 to form triangles, got {rounds!r}")
    return list(itertools.combinations(range(int(rounds)), 2))
