"""lst_jax: input-space geometry of vision classifiers in JAX/Flax.

The one contract: `model_fn(params, images) -> logits`, images float32 (B, H, W, C) in [0, 1].
"""

from lst_jax.connectivity import optimization_attack as optimization_attack
from lst_jax.connectivity import ConnectResult as ConnectResult
from lst_jax.connectivity import bypass_barrier as bypass_barrier
from lst_jax.connectivity import connect as connect
from lst_jax.connectivity import AttackConfig as AttackConfig
from lst_jax.connectivity import BypassConfig as BypassConfig
from lst_jax.connectivity import ConnectConfig as ConnectConfig
from lst_jax.connectivity import FreeConfig as FreeConfig
from lst_jax.connectivity import FVOConfig as FVOConfig
from lst_jax.connectivity import DetectorConfig as DetectorConfig
from lst_jax.connectivity import DetectorResult as DetectorResult
from lst_jax.connectivity import cross_validate_detector as cross_validate_detector
from lst_jax.connectivity import curve_features as curve_features
from lst_jax.connectivity import feature_matrix as feature_matrix
from lst_jax.connectivity import select_references as select_references
from lst_jax.connectivity import total_variation as total_variation
from lst_jax.connectivity import OptimizeResult as OptimizeResult
from lst_jax.connectivity import OptimizerConfig as OptimizerConfig
from lst_jax.connectivity import OptimizerState as OptimizerState
from lst_jax.connectivity import optimize_inputs as optimize_inputs
from lst_jax.connectivity import optimize_inputs_init as optimize_inputs_init
from lst_jax.connectivity import optimize_inputs_result as optimize_inputs_result
from lst_jax.connectivity import optimize_inputs_step as optimize_inputs_step
from lst_jax.connectivity import optimize_inputs_unchecked as optimize_inputs_unchecked
from lst_jax.connectivity import Barrier as Barrier
from lst_jax.connectivity import barrier_stats as barrier_stats
from lst_jax.connectivity import path_losses as path_losses
from lst_jax.connectivity import path_losses_unchecked as path_losses_unchecked
from lst_jax.connectivity import InputSpace as InputSpace
from lst_jax.connectivity import model_in_space as model_in_space
from lst_jax.connectivity import feature_visualization as feature_visualization
from lst_jax.connectivity import free_optimize as free_optimize
from lst_jax.connectivity import noise_inputs as noise_inputs
from lst_jax.connectivity import untrained_model as untrained_model
from lst_jax.models import Classifier as Classifier
from lst_jax.models import Normalization as Normalization
from lst_jax.models import load_model as load_model
from lst_jax.spectral import SpectralConfig as SpectralConfig
from lst_jax.spectral import SpectralImportance as SpectralImportance
from lst_jax.spectral import coalition_filter as coalition_filter
from lst_jax.spectral import coalition_log_probs as coalition_log_probs
from lst_jax.spectral import spectral_importance as spectral_importance
from lst_jax.spectral import spectral_importance_unchecked as spectral_importance_unchecked
from lst_jax.spectral import spectral_robustness_score as spectral_robustness_score
from lst_jax.traversal import LSTConfig as LSTConfig
from lst_jax.traversal import LSTResult as LSTResult
from lst_jax.traversal import level_set_traversal as level_set_traversal
from lst_jax.traversal import preset as preset
from lst_jax.traversal import traverse as traverse

__version__ = "0.1.0"
