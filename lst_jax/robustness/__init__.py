"""Robustness measurements: common corruptions ("-C" benchmarks), clean / PGD / corruption
accuracy and the mean corruption error (mCE)."""

from lst_jax.attacks.pgd import PGDAttackConfig as PGDAttackConfig
from lst_jax.robustness.accuracy import accuracy as accuracy
from lst_jax.robustness.accuracy import corruption_accuracy as corruption_accuracy
from lst_jax.robustness.accuracy import corruption_errors as corruption_errors
from lst_jax.robustness.accuracy import mean_corruption_error as mean_corruption_error
from lst_jax.robustness.accuracy import pgd_accuracy as pgd_accuracy
from lst_jax.robustness.accuracy import pgd_examples as pgd_examples
from lst_jax.robustness.accuracy import (
    relative_mean_corruption_error as relative_mean_corruption_error,
)
from lst_jax.robustness.corruptions import CORRUPTIONS as CORRUPTIONS
from lst_jax.robustness.corruptions import FAMILIES as FAMILIES
from lst_jax.robustness.corruptions import PARAMS as PARAMS
from lst_jax.robustness.corruptions import SEVERITIES as SEVERITIES
from lst_jax.robustness.corruptions import CorruptionConfig as CorruptionConfig
from lst_jax.robustness.corruptions import corrupt as corrupt
from lst_jax.robustness.corruptions import corruption_key as corruption_key
from lst_jax.robustness.evaluate import RobustnessConfig as RobustnessConfig
from lst_jax.robustness.evaluate import RobustnessResult as RobustnessResult
from lst_jax.robustness.evaluate import robustness_measurements as robustness_measurements
