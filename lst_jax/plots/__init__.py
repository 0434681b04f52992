"""Figures (PNG) built with matplotlib's object API (no global pyplot state)."""

from lst_jax.plots.grid import plot_examples_grid as plot_examples_grid
from lst_jax.plots.curves import plot_traversal_curves as plot_traversal_curves
