"""Path-width surfaces: 5% quantile of the confidence at L2 radius r around each logged
iterate, mirrored over +-r (the reference's `visualize_path_radius`)."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from lst_jax.plots.common import new_figure, save_png


def plot_width_surfaces(iterations, radii, widths, path, titles: Sequence[str] | None = None,
                        quantile_index: int = 0, panel: float = 4.2):
    """One 3-D surface per traversal (x: iteration, y: +-radius, z: confidence quantile).

    Unmeasured points (NaN rows: confidence under the gate) are drawn at 0, as the reference
    stored them.

    Shape:
        iterations: (L,); radii: (R + 1,) starting with 0; widths: (W, L, R + 1, Q).
    """
    it, rad, w = np.asarray(iterations, float), np.asarray(radii, float), np.asarray(widths)
    if w.ndim != 4 or w.shape[1:3] != (it.size, rad.size) or w.shape[0] == 0:
        raise ValueError(f"widths must have shape (W, {it.size}, {rad.size}, Q) with W >= 1, "
                         f"got {w.shape}")
    if not 0 <= quantile_index < w.shape[3]:
        raise ValueError(f"quantile_index {quantile_index} out of range for {w.shape[3]} "
                         "quantiles")
    n = w.shape[0]
    fig = new_figure(panel * n, panel)
    y = np.concatenate([-rad[::-1], rad[1:]])
    X, Y = np.meshgrid(it, y, indexing="ij")
    for k in range(n):
        ax = fig.add_subplot(1, n, k + 1, projection="3d")
        z = np.nan_to_num(w[k, :, :, quantile_index], nan=0.0)        # (L, R + 1)
        Z = np.concatenate([z[:, ::-1], z[:, 1:]], axis=1)
        ax.plot_surface(X, Y, Z, cmap="viridis", vmin=0.0, vmax=1.0)
        ax.set_xlabel("iteration", fontsize=8)
        ax.set_ylabel("L2 distance", fontsize=8)
        ax.set_zlabel("confidence", fontsize=8)
        ax.set_zlim(0.0, 1.0)
        ax.view_init(60, -60)
        if titles is not None:
            ax.set_title(titles[k], fontsize=9)
    return save_png(fig, path)
