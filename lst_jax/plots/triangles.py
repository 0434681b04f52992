"""Triangle contour plots: source-class confidence over the plane of (source, two LST outputs).

The reference `visualize_nplane` (`../spec/lst.md` section 3.5): the triangle is embedded
isometrically in 2-D (leg 1 of unit length), the confidence at the grid points is drawn with
`tricontourf` (100 levels on [0, 1], viridis), grid points as red dots, the three images as
insets at the vertices.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from lst_jax.plots.common import new_figure, save_png, to_display


def plot_triangles(vertex_coords, grid_coords, conf, vertex_images, path,
                   titles: Sequence[str] | None = None, suptitle: str | None = None,
                   panel: float = 3.2, inset: float = 0.22, max_cols: int = 3):
    """One panel per triangle (rows of at most `max_cols`), a shared colourbar.

    Shape:
        vertex_coords: (T, 3, 2); grid_coords: (T, P, 2); conf: (T, P) in [0, 1];
        vertex_images: (T, 3, H, W, C) in [0, 1].
    """
    vc, gc, cf = np.asarray(vertex_coords), np.asarray(grid_coords), np.asarray(conf)
    vi = np.asarray(vertex_images)
    if vc.ndim != 3 or vc.shape[1:] != (3, 2) or vc.shape[0] == 0:
        raise ValueError(f"vertex_coords must have shape (T, 3, 2) with T >= 1, got {vc.shape}")
    t = vc.shape[0]
    if gc.ndim != 3 or gc.shape[0] != t or gc.shape[2] != 2 or cf.shape != gc.shape[:2]:
        raise ValueError(f"grid_coords (T, P, 2) and conf (T, P) must match {t} triangles, got "
                         f"{gc.shape} and {cf.shape}")
    if vi.ndim != 5 or vi.shape[:2] != (t, 3):
        raise ValueError(f"vertex_images must have shape ({t}, 3, H, W, C), got {vi.shape}")
    if not np.all(np.isfinite(vc)):
        raise ValueError("degenerate triangle (an LST output equals its source): cannot embed")
    cols = min(t, max_cols)
    rows = -(-t // cols)
    fig = new_figure(panel * cols + 0.9, panel * rows + (0.4 if suptitle else 0.1))
    grid_axes = fig.subplots(rows, cols, squeeze=False).reshape(-1)
    for ax in grid_axes[t:]:
        ax.set_axis_off()
    axes = grid_axes[:t]
    levels = np.linspace(0.0, 1.0, 101)
    mappable = None
    for k, ax in enumerate(axes):
        x, y = gc[k, :, 0], gc[k, :, 1]
        mappable = ax.tricontourf(x, y, np.clip(cf[k], 0.0, 1.0), levels=levels,
                                  cmap="viridis", vmin=0.0, vmax=1.0)
        ax.plot(x, y, "r.", ms=2.5)
        lo = np.minimum(vc[k].min(0), 0.0) - inset
        hi = np.maximum(vc[k].max(0), 1.0) + inset
        ax.set_xlim(lo[0], hi[0])
        ax.set_ylim(lo[1], hi[1])
        ax.set_aspect("equal")
        ax.set_axis_off()
        offsets = [(-inset, -inset), (0.0, -inset), (-inset / 2, 0.0)]
        for v in range(3):
            ins = ax.inset_axes([vc[k, v, 0] + offsets[v][0], vc[k, v, 1] + offsets[v][1],
                                 inset, inset], transform=ax.transData)
            ins.imshow(to_display(vi[k, v]), cmap="gray", vmin=0, vmax=1,
                       interpolation="nearest")
            ins.set_axis_off()
        if titles is not None:
            ax.set_title(titles[k], fontsize=9)
    fig.colorbar(mappable, ax=list(axes), ticks=[0, 0.5, 1], fraction=0.03, pad=0.02)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    return save_png(fig, path)
