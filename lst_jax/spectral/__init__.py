"""I-ASIDE: spectral importance of frequency bands and the spectral robustness score.

Pure JAX on NHWC images in [0, 1] through the one contract `model_fn(params, images)`:
square L-inf frequency bands (`bands`), the coalition filter (`filters`), coalition values
batched over coalitions x images on the device mesh (`values`), exact and permutation-sampled
Shapley values (`shapley`), the importance distribution and score (`score`), all composed by
`spectral_importance(model_fn, params, images, labels, *, key, config, mesh, ...)`
(`spectral_importance_unchecked`: the same inside a user's `jax.jit`). Conventions: data
positional, everything else keyword-only; a typed `key`; `mesh=None` is one device;
model-facing results hold `jax.Array`s, the game-theory helpers (Shapley, score) are
float64 host arithmetic. The resumable per-model job and the CLI are in
`lst_jax.jobs.iaside.job`.
"""

from lst_jax.spectral.bands import band_index_map as band_index_map
from lst_jax.spectral.bands import band_masks as band_masks
from lst_jax.spectral.bands import band_sizes as band_sizes
from lst_jax.spectral.bands import coalition_mask as coalition_mask
from lst_jax.spectral.config import SpectralConfig as SpectralConfig
from lst_jax.spectral.filters import filter_groups as filter_groups
from lst_jax.spectral.filters import image_spectra as image_spectra
from lst_jax.spectral.importance import ImportanceStatistics as ImportanceStatistics
from lst_jax.spectral.importance import SpectralImportance as SpectralImportance
from lst_jax.spectral.importance import coalitions_for as coalitions_for
from lst_jax.spectral.importance import importance_statistics as importance_statistics
from lst_jax.spectral.importance import spectral_importance as spectral_importance
from lst_jax.spectral.importance import (
    spectral_importance_unchecked as spectral_importance_unchecked,
)
from lst_jax.spectral.importance import summarize as summarize
from lst_jax.spectral.score import importance_distribution as importance_distribution
from lst_jax.spectral.score import score_range as score_range
from lst_jax.spectral.score import signed_robustness_score as signed_robustness_score
from lst_jax.spectral.score import spectral_robustness_score as spectral_robustness_score
from lst_jax.spectral.shapley import ShapleyEstimate as ShapleyEstimate
from lst_jax.spectral.shapley import all_coalitions as all_coalitions
from lst_jax.spectral.shapley import coalition_index as coalition_index
from lst_jax.spectral.shapley import exact_shapley as exact_shapley
from lst_jax.spectral.shapley import exact_shapley_of as exact_shapley_of
from lst_jax.spectral.shapley import permutation_plan as permutation_plan
from lst_jax.spectral.shapley import permutation_shapley as permutation_shapley
from lst_jax.spectral.shapley import sampled_shapley as sampled_shapley
from lst_jax.spectral.shapley import shapley_matrix as shapley_matrix
from lst_jax.spectral.values import UnitLogProbs as UnitLogProbs
from lst_jax.spectral.values import coalition_filter as coalition_filter
from lst_jax.spectral.values import coalition_log_probs as coalition_log_probs
from lst_jax.spectral.values import coalition_log_probs_unchecked as coalition_log_probs_unchecked
