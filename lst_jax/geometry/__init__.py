"""Input-space geometry around images: triangle hulls, linear paths, path widths.

Every evaluator has the same three stages, so the middle one can be swapped (e.g. for a
sharded evaluator):

1. a *probe family*: a pure function `probe_fn(data, idx) -> (images, labels)` that builds the
   probe images for flat indices `idx` from small per-batch data (vertices, weights, ...);
2. an *evaluator*: `evaluate_fn(model_fn, params, probe_fn, data, total) -> conf (total,)`,
   by default `evaluate_in_chunks` (one device: a jitted `lax.map` over fixed-size chunks of
   the padded index range; probes are built inside each chunk, never all at once), with
   `mesh=` / `memory_budget=` a `lst_jax.parallel.ShardedEvaluator`, or one of your own
   (`evaluate_fn=`);
3. statistics on the confidences (hull statistics, quantiles, ...).
"""

from lst_jax.geometry.embedding import embed_grid as embed_grid
from lst_jax.geometry.embedding import triangle_embedding as triangle_embedding
from lst_jax.geometry.grids import TriangleGrid as TriangleGrid
from lst_jax.geometry.grids import round_pairs as round_pairs
from lst_jax.geometry.grids import triangle_grid as triangle_grid
from lst_jax.geometry.hull import STAT_NAMES as STAT_NAMES
from lst_jax.geometry.hull import hull_confidences as hull_confidences
from lst_jax.geometry.hull import multi_hull_confidences as multi_hull_confidences
from lst_jax.geometry.hull import per_source_statistics as per_source_statistics
from lst_jax.geometry.hull import stat_names as stat_names
from lst_jax.geometry.hull import triangle_statistics as triangle_statistics
from lst_jax.geometry.paths import linear_path_confidences as linear_path_confidences
from lst_jax.geometry.probes import combination_probes as combination_probes
from lst_jax.geometry.probes import evaluate_combinations as evaluate_combinations
from lst_jax.geometry.probes import evaluate_in_chunks as evaluate_in_chunks
from lst_jax.geometry.widths import WidthConfig as WidthConfig
from lst_jax.geometry.widths import WidthResult as WidthResult
from lst_jax.geometry.widths import path_widths as path_widths
from lst_jax.geometry.widths import width_directions as width_directions
