"""Level Set Traversal: config, state pytrees, the step and the jitted scan."""

from lst_jax.traversal.config import PRESETS as PRESETS
from lst_jax.traversal.config import LSTConfig as LSTConfig
from lst_jax.traversal.config import LSTHyper as LSTHyper
from lst_jax.traversal.config import preset as preset
from lst_jax.traversal.run import level_set_traversal as level_set_traversal
from lst_jax.traversal.run import level_set_traversal_unchecked as level_set_traversal_unchecked
from lst_jax.traversal.run import lst_init as lst_init
from lst_jax.traversal.run import reference_log_points as reference_log_points
from lst_jax.traversal.state import LSTRecord as LSTRecord
from lst_jax.traversal.state import LSTResult as LSTResult
from lst_jax.traversal.state import LSTState as LSTState
from lst_jax.traversal.state import Pairs as Pairs
from lst_jax.traversal.step import forward_backward as forward_backward
from lst_jax.traversal.step import lst_step as lst_step
from lst_jax.traversal.step import project_orthogonal as project_orthogonal
from lst_jax.traversal.step import record_of as record_of
