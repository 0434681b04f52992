"""Figures (PNG) built with matplotlib's object API (no global pyplot state)."""

from lst_jax.plots.curves import plot_star_paths as plot_star_paths
from lst_jax.plots.curves import plot_traversal_curves as plot_traversal_curves
from lst_jax.plots.grid import plot_examples_grid as plot_examples_grid
from lst_jax.plots.spectral import plot_importance as plot_importance
from lst_jax.plots.triangles import plot_triangles as plot_triangles
from lst_jax.plots.widths import plot_width_surfaces as plot_width_surfaces
