"""lst_jax: input-space geometry of vision classifiers in JAX/Flax.

The one contract: `model_fn(params, images) -> logits`, images float32 (B, H, W, C) in [0, 1].
"""

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
