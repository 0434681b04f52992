"""Adversarial attacks on the model-function contract (used for AT and robust accuracy)."""

from lst_jax.attacks.pgd import PGDAttackConfig as PGDAttackConfig
from lst_jax.attacks.pgd import pgd_linf as pgd_linf
from lst_jax.attacks.pgd import pgd_linf_unchecked as pgd_linf_unchecked
