"""Input-space mode connectivity (Vrabel, Shem-Ur, Oz, Krueger, ICLR 2025, arXiv 2409.05800).

Loss barriers on linear input paths, the barrier bypass inside the hyperplane orthogonal to
the path and its recursion, synthetic inputs (FVO) and the free optimisation of untrained
models, the paper's targeted optimisation attack, and an adversarial detector on the loss
curve; all pure functions on the `model_fn(params, x) -> logits` contract, batched over pairs
/ samples, following docs/design.md's "API conventions". Inputs live in the model's
normalised space by default (`model_in_space`), as the authors'. The jobs behind
`lst-jax connectivity` live in `lst_jax.jobs.connectivity`, not here.
"""

from lst_jax.connectivity.attack import optimization_attack as optimization_attack
from lst_jax.connectivity.bypass import ConnectResult as ConnectResult
from lst_jax.connectivity.bypass import bypass_barrier as bypass_barrier
from lst_jax.connectivity.bypass import connect as connect
from lst_jax.connectivity.config import AttackConfig as AttackConfig
from lst_jax.connectivity.config import BypassConfig as BypassConfig
from lst_jax.connectivity.config import ConnectConfig as ConnectConfig
from lst_jax.connectivity.config import FreeConfig as FreeConfig
from lst_jax.connectivity.config import FVOConfig as FVOConfig
from lst_jax.connectivity.config import PGDConfig as PGDConfig
from lst_jax.connectivity.detect import DetectorConfig as DetectorConfig
from lst_jax.connectivity.detect import DetectorResult as DetectorResult
from lst_jax.connectivity.detect import cross_validate_detector as cross_validate_detector
from lst_jax.connectivity.detect import curve_features as curve_features
from lst_jax.connectivity.detect import feature_matrix as feature_matrix
from lst_jax.connectivity.detect import select_references as select_references
from lst_jax.connectivity.objective import total_variation as total_variation
from lst_jax.connectivity.optimize import OptimizerConfig as OptimizerConfig
from lst_jax.connectivity.optimize import OptimizeResult as OptimizeResult
from lst_jax.connectivity.optimize import OptimizerState as OptimizerState
from lst_jax.connectivity.optimize import optimize_inputs as optimize_inputs
from lst_jax.connectivity.optimize import optimize_inputs_init as optimize_inputs_init
from lst_jax.connectivity.optimize import optimize_inputs_result as optimize_inputs_result
from lst_jax.connectivity.optimize import optimize_inputs_step as optimize_inputs_step
from lst_jax.connectivity.optimize import optimize_inputs_unchecked as optimize_inputs_unchecked
from lst_jax.connectivity.paths import Barrier as Barrier
from lst_jax.connectivity.paths import barrier_stats as barrier_stats
from lst_jax.connectivity.paths import path_losses as path_losses
from lst_jax.connectivity.paths import path_losses_unchecked as path_losses_unchecked
from lst_jax.connectivity.space import InputSpace as InputSpace
from lst_jax.connectivity.space import model_in_space as model_in_space
from lst_jax.connectivity.synthetic import feature_visualization as feature_visualization
from lst_jax.connectivity.synthetic import free_optimize as free_optimize
from lst_jax.connectivity.synthetic import noise_inputs as noise_inputs
from lst_jax.connectivity.untrained import untrained_model as untrained_model
