"""lst_jax: input-space geometry of vision classifiers in JAX/Flax.

The one contract: `model_fn(params, images) -> logits`, images float32 (B, H, W, C) in [0, 1].
"""

from lst_jax.attacks import PGDAttackConfig as PGDAttackConfig
from lst_jax.attacks import pgd_linf as pgd_linf
from lst_jax.attacks import pgd_linf_unchecked as pgd_linf_unchecked
from lst_jax.geometry import WidthConfig as WidthConfig
from lst_jax.geometry import WidthResult as WidthResult
from lst_jax.geometry import hull_confidences as hull_confidences
from lst_jax.geometry import linear_path_confidences as linear_path_confidences
from lst_jax.geometry import multi_hull_confidences as multi_hull_confidences
from lst_jax.geometry import path_widths as path_widths
from lst_jax.geometry import per_source_statistics as per_source_statistics
from lst_jax.geometry import triangle_grid as triangle_grid
from lst_jax.geometry import triangle_statistics as triangle_statistics
from lst_jax.geometry import width_directions as width_directions
from lst_jax.models import Classifier as Classifier
from lst_jax.models import Normalization as Normalization
from lst_jax.models import load_model as load_model
from lst_jax.robustness import CorruptionConfig as CorruptionConfig
from lst_jax.robustness import RobustnessConfig as RobustnessConfig
from lst_jax.robustness import RobustnessResult as RobustnessResult
from lst_jax.robustness import accuracy as accuracy
from lst_jax.robustness import corrupt as corrupt
from lst_jax.robustness import corruption_accuracy as corruption_accuracy
from lst_jax.robustness import corruption_key as corruption_key
from lst_jax.robustness import pgd_accuracy as pgd_accuracy
from lst_jax.robustness import pgd_examples as pgd_examples
from lst_jax.robustness import robustness_measurements as robustness_measurements
from lst_jax.spectral import SpectralConfig as SpectralConfig
from lst_jax.spectral import spectral_importance as spectral_importance
from lst_jax.traversal import LSTConfig as LSTConfig
from lst_jax.traversal import LSTHyper as LSTHyper
from lst_jax.traversal import LSTRecord as LSTRecord
from lst_jax.traversal import LSTResult as LSTResult
from lst_jax.traversal import LSTState as LSTState
from lst_jax.traversal import Pairs as Pairs
from lst_jax.traversal import level_set_traversal as level_set_traversal
from lst_jax.traversal import level_set_traversal_unchecked as level_set_traversal_unchecked
from lst_jax.traversal import lst_init as lst_init
from lst_jax.traversal import lst_step as lst_step
from lst_jax.traversal import preset as preset

__version__ = "0.1.0"
