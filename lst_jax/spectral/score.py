"""The spectral importance distribution and the spectral robustness score (`../shared/spec/
iaside.md` sections 6-7, [code]).

- distribution: `psi - min(psi)`, divided by its sum (the least important band gets exactly
  0; the vector sums to 1). All-equal psi (sum 0) is undefined in the reference; here it
  gives the uniform distribution and a `RuntimeWarning` (M = 1: `[1]`, score 0).
- score: `b_k = beta^k`, `b_hat = b / |b|_2`, `eta = (|b|_1 / |b|_2) / M` (the value of
  `b_hat . v` for uniform v); `S = |b_hat . v - eta| / |1 - eta|`, and the signed score
  `(b_hat . v - eta) / (1 - eta)`.

Range (beta = 0.75): `b_hat . v` lies between `b_hat[M-1]` (all mass in the top band) and
`b_hat[0]` (all in band 0), so the signed score lies in
`[(b_hat[M-1] - eta) / (1 - eta), (b_hat[0] - eta) / (1 - eta)]` = [-0.3002, 0.5217] for M = 8;
1 is never reached. **Absolute-value quirk** (kept, faithful): the score is the magnitude of
the signed score, so mass in the high bands also raises it (all in the top band: 0.3002) and
it is not monotone in low-frequency reliance below the uniform point; the signed score is.
"""

from __future__ import annotations

import warnings

import numpy as np

DEFAULT_BETA = 0.75


def check_beta(beta) -> float:
    try:
        b = float(beta)
    except (TypeError, ValueError):
        raise ValueError(f"beta must be a number in (0, 1), got {beta!r}") from None
    if not 0.0 < b < 1.0:
        raise ValueError(f"beta must lie in (0, 1), got {beta!r}")
    return b


def importance_distribution(shapley) -> np.ndarray:
    """`(psi - min psi) / sum(psi - min psi)`; uniform (with a RuntimeWarning) if all equal.

    Shape:
        shapley: (M,) -> (M,) float64, non-negative, sums to 1.

    Examples:
        >>> from lst_jax.spectral import importance_distribution
        >>> importance_distribution([0.5, -1.0, 2.0, 0.0]).round(4).tolist()
        [0.2727, 0.0, 0.5455, 0.1818]
    """
    psi = np.asarray(shapley, np.float64)
    if psi.ndim != 1 or psi.size == 0:
        raise ValueError(f"shapley must be a non-empty vector (M,), got shape {psi.shape}")
    if not np.all(np.isfinite(psi)):
        raise ValueError("shapley contains NaN or infinite values")
    if psi.size == 1:
        return np.ones(1)
    shifted = psi - psi.min()
    total = shifted.sum()
    if not total > 0:
        warnings.warn("all Shapley values are equal: the importance distribution is "
                      "undefined, returning the uniform distribution", RuntimeWarning,
                      stacklevel=2)
        return np.full(psi.shape, 1.0 / psi.size)
    return shifted / total


def score_weights(num_bands: int, beta: float = DEFAULT_BETA) -> tuple[np.ndarray, float]:
    """`(b_hat, eta)`: the unit-norm decaying weights and the uniform reference value.

    Shape:
        -> (M,) float64, float.
    """
    b = check_beta(beta) ** np.arange(int(num_bands), dtype=np.float64)
    norm2 = np.sqrt((b * b).sum())
    return b / norm2, float(b.sum() / norm2 / b.size)


def signed_robustness_score(distribution, *, beta: float = DEFAULT_BETA) -> float:
    """`(b_hat . v - eta) / (1 - eta)`: > 0 when more low-frequency mass than uniform.

    Shape:
        distribution: (M,) (renormalised to sum 1) -> float.

    Examples:
        >>> from lst_jax.spectral import signed_robustness_score
        >>> round(signed_robustness_score([0, 0, 0, 1.0]), 4)        # all in the top band
        -0.3487
    """
    v = np.asarray(distribution, np.float64)
    if v.ndim != 1 or v.size == 0 or not np.all(np.isfinite(v)) or (v < 0).any() \
            or not v.sum() > 0:
        raise ValueError("distribution must be a non-negative finite vector (M,) with a "
                         f"positive sum, got {v!r}")
    v = v / v.sum()
    b_hat, eta = score_weights(v.size, beta)
    if v.size == 1:      # one band: b_hat . v = eta = 1, the score is 0 / 0; report 0
        return 0.0
    return float((b_hat @ v - eta) / (1.0 - eta))


def spectral_robustness_score(distribution, *, beta: float = DEFAULT_BETA) -> float:
    """The reference's score `|b_hat . v - eta| / |1 - eta|` (the absolute signed score).

    Shape:
        distribution: (M,) -> float in [0, (b_hat[0] - eta) / (1 - eta)].

    Examples:
        >>> from lst_jax.spectral import spectral_robustness_score
        >>> round(spectral_robustness_score([1.0, 0, 0, 0]), 4)      # all in band 0
        0.4215
        >>> round(spectral_robustness_score([0.25] * 4), 12)          # uniform
        0.0
    """
    return abs(signed_robustness_score(distribution, beta=beta))


def score_range(num_bands: int, *, beta: float = DEFAULT_BETA) -> tuple[float, float]:
    """The (lowest, highest) signed score over all distributions (mass in the top band,
    mass in band 0).

    Shape:
        -> (float, float).

    Examples:
        >>> from lst_jax.spectral import score_range
        >>> [round(v, 4) for v in score_range(8)]
        [-0.3002, 0.5217]
    """
    b_hat, eta = score_weights(num_bands, beta)
    if num_bands == 1:
        return 0.0, 0.0
    return float((b_hat[-1] - eta) / (1 - eta)), float((b_hat[0] - eta) / (1 - eta))


__all__ = ["DEFAULT_BETA", "importance_distribution", "spectral_robustness_score",
           "signed_robustness_score", "score_weights", "score_range", "check_beta"]
