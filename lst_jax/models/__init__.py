"""Model zoo: Flax modules, the `Classifier` wrapper, checkpoints and the named registry."""

from lst_jax.models.checkpoint import load_checkpoint as load_checkpoint
from lst_jax.models.checkpoint import save_checkpoint as save_checkpoint
from lst_jax.models.in_memory import InMemoryModel as InMemoryModel
from lst_jax.models.in_memory import in_memory_model as in_memory_model
from lst_jax.models.reference import ModelRef as ModelRef
from lst_jax.models.reference import resolve_model as resolve_model
from lst_jax.models.registry import REGISTRY as REGISTRY
from lst_jax.models.registry import LoadedModel as LoadedModel
from lst_jax.models.registry import ModelSpec as ModelSpec
from lst_jax.models.registry import get_spec as get_spec
from lst_jax.models.registry import load_model as load_model
from lst_jax.models.wrapper import Classifier as Classifier
from lst_jax.models.wrapper import Normalization as Normalization
