"""Level Set Traversal: config, state pytrees, the step and the jitted scan."""

from lst_jax.traversal.config import LSTConfig as LSTConfig, PRESETS as PRESETS, preset as preset
from lst_jax.traversal.run import (level_set_traversal as level_set_traversal,
                                   reference_log_points as reference_log_points,
                                   traverse as traverse)
from lst_jax.traversal.state import (LSTRecord as LSTRecord, LSTResult as LSTResult,
                                     LSTState as LSTState)
from lst_jax.traversal.step import (forward_backward as forward_backward, lst_step as lst_step,
                                    project_orthogonal as project_orthogonal)
