"""Adversarial attacks on the model-function contract (used for AT and robust accuracy)."""

from lst_jax.attacks.pgd import pgd_linf as pgd_linf
