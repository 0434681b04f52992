"""lst_jax: input-space geometry of vision classifiers in JAX/Flax.

The one contract: `model_fn(params, images) -> logits`, images float32 (B, H, W, C) in [0, 1].
"""

from lst_jax.models import Classifier as Classifier
from lst_jax.models import Normalization as Normalization
from lst_jax.models import load_model as load_model
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
