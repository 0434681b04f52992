"""I-ASIDE end to end: coalition values -> Shapley values -> importance distribution -> score.

Luo, McDermott, O'Riordan, *Interpreting Global Perturbation Robustness of Image Models using
Axiomatic Spectral Importance Decomposition*, TMLR 2024, arXiv 2408.01139; semantics of the
authors' code in `../shared/spec/iaside.md`.
"""

from __future__ import annotations

import math
import time
from typing import NamedTuple

import numpy as np

from lst_jax.spectral.config import SpectralConfig
from lst_jax.spectral.sampling import group_layout
from lst_jax.spectral.score import (importance_distribution, signed_robustness_score,
                                    spectral_robustness_score)
from lst_jax.spectral.shapley import (all_coalitions, permutation_plan, permutation_shapley,
                                      shapley_matrix)
from lst_jax.spectral.values import DEFAULT_BLOCK, check_value_inputs, coalition_log_probs


class SpectralImportance(NamedTuple):
    """Result of `spectral_importance`.

    Attributes:
        shapley: Shapley value of each band (0 = lowest frequency), in nats.
        shapley_se: standard error: exact estimator, the sampling error over the images
            (groups are the independent units); sampled estimator, the permutation-sampling
            error (the value function held fixed).
        distribution: the spectral importance distribution (>= 0, sums to 1).
        score, signed_score: the spectral robustness score (reference) and its signed form.
        score_se, signed_score_se: their bootstrap standard errors over the image groups
            (exact estimator with common random numbers; NaN otherwise).
        coalitions: the coalitions evaluated (exact: index order).
        values: v(S) = mean log-probability of the true label, per coalition.
        log_probs: per coalition and image.
        seconds: wall time of this call.

    Shape:
        shapley, shapley_se, distribution: (M,); coalitions: (C, M) bool; values: (C,)
        float64; log_probs: (C, K) float32.
    """

    shapley: np.ndarray
    shapley_se: np.ndarray
    distribution: np.ndarray
    score: float
    signed_score: float
    score_se: float
    signed_score_se: float
    coalitions: np.ndarray
    values: np.ndarray
    log_probs: np.ndarray
    seconds: float


def coalitions_for(config: SpectralConfig) -> np.ndarray:
    """The coalitions the estimator needs (exact: all 2^M in index order; sampled: those
    the permutation walks visit, seeded by `config.seed`).

    Shape:
        -> (C, M) bool.
    """
    if config.estimator == "exact":
        return all_coalitions(config.num_bands)
    return permutation_plan(config.num_bands, config.num_permutations, config.seed).coalitions


def group_values(log_probs, k: int, group_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-group mean log-probabilities and group sizes (the independent sampling units).

    Shape:
        log_probs: (C, K) -> (C, G) float64, (G,) int.
    """
    layout = group_layout(k, group_size)
    lp = np.asarray(log_probs, np.float64)
    sizes = layout.real.sum(1)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    return np.add.reduceat(lp, starts, axis=1) / sizes, sizes


def _weighted_se(per_group: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Standard error of the size-weighted mean over groups (axis -1); NaN for one group."""
    n = per_group.shape[-1]
    if n < 2:
        return np.full(per_group.shape[:-1], np.nan)
    w = sizes / sizes.sum()
    mean = (per_group * w).sum(-1, keepdims=True)
    return np.sqrt((w ** 2 * (per_group - mean) ** 2).sum(-1) * n / (n - 1))


def shapley_from_values(config: SpectralConfig, coalitions, log_probs, k: int):
    """(Shapley values, standard errors) from the per-coalition, per-image log-probs."""
    values = np.asarray(log_probs, np.float64).mean(1)
    if config.estimator == "sampled":
        plan = permutation_plan(config.num_bands, config.num_permutations, config.seed)
        if not np.array_equal(plan.coalitions, coalitions):
            raise ValueError("coalitions differ from the sampled estimator's plan")
        est = permutation_shapley(plan, values)
        return est.values, est.se
    w = shapley_matrix(config.num_bands)
    per_group, sizes = group_values(log_probs, k, config.group_size)    # (2^M, G)
    if config.resample:   # independent coalitions: propagate each value's standard error
        se_v = _weighted_se(per_group, sizes)
        return w @ values, np.sqrt((w ** 2) @ se_v ** 2)
    return w @ values, _weighted_se(w @ per_group, sizes)


def bootstrap_score_se(config: SpectralConfig, log_probs, k: int,
                       num: int = 1000) -> tuple[float, float]:
    """Bootstrap standard errors of (score, signed score) over the image groups.

    Groups (the min-max couples the images of a group) are resampled with replacement,
    `num` times (`default_rng([seed, 4])`); each replicate's Shapley values are the
    size-weighted mean of the per-group Shapley values. NaN for the sampled estimator, for
    resampling (each coalition has its own images) or a single group.
    """
    from lst_jax.spectral.score import score_weights

    per_group, sizes = group_values(log_probs, k, config.group_size)
    n = sizes.shape[0]
    if config.estimator != "exact" or config.resample or n < 2:
        return math.nan, math.nan
    psi_g = shapley_matrix(config.num_bands) @ per_group                   # (M, G)
    idx = np.random.default_rng([config.seed, 4]).integers(n, size=(num, n))
    w = sizes[idx].astype(np.float64)                                       # (num, G)
    psi = np.einsum("mbg,bg->bm", psi_g[:, idx], w) / w.sum(1, keepdims=True)
    shifted = psi - psi.min(1, keepdims=True)
    total = shifted.sum(1, keepdims=True)
    dist = np.where(total > 0, shifted / np.where(total > 0, total, 1), 1.0 / psi.shape[1])
    b_hat, eta = score_weights(config.num_bands, config.beta)
    signed = (dist @ b_hat - eta) / (1 - eta) if config.num_bands > 1 else np.zeros(num)
    return float(np.abs(signed).std(ddof=1)), float(signed.std(ddof=1))


def spectral_importance(model_fn, params, images, labels,
                        config: SpectralConfig = SpectralConfig(), *, k: int | None = None,
                        mesh=None, images_per_call: int | None = None, memory_budget=None,
                        block_size: int = DEFAULT_BLOCK, store=None,
                        progress: bool = False, desc: str = "I-ASIDE") -> SpectralImportance:
    """Spectral importance of M frequency bands and the spectral robustness score.

    The value of a coalition of bands is the mean over K images of
    `log_softmax(model(filter(x, S)))[y]` (the empty coalition: black images); the Shapley
    values of the bands are exact over all 2^M coalitions (`estimator="exact"`) or estimated
    from antithetic permutations (`"sampled"`, only the visited coalitions are evaluated);
    the distribution is the shifted, normalised Shapley vector and the score its
    normalised inner product with `beta^k` (see `lst_jax.spectral.score`).

    Args:
        model_fn, params: `model_fn(params, images) -> logits` on [0, 1] NHWC pixels.
        images, labels: the K images (common random numbers, default: grouped in order into
            groups of `config.group_size`), or with `config.resample` the pool each
            coalition draws `k` images from.
        config: `SpectralConfig` (bands, fill, post-processing, normalisation, groups,
            beta, seed, resampling, estimator).
        mesh, images_per_call, memory_budget, block_size, store, progress, desc: see
            `coalition_log_probs` (they never change the numbers beyond float round-off).

    Returns:
        `SpectralImportance`.

    Shape:
        images: (N, H, W, C) float32 in [0, 1] with H = W >= 16; labels: (N,) int.

    Deviations from the authors' code (documented in docs/iaside.md): common random
    numbers by default; `log_softmax` instead of `log(softmax)`; a ragged last group is
    padded with its own images instead of being dropped; constant groups give black images
    instead of 0 / 0.

    Examples:
        >>> from lst_jax.spectral import SpectralConfig, spectral_importance
        >>> res = spectral_importance(model_fn, params, x, y, SpectralConfig(num_bands=8))
        >>> res.distribution, res.score                     # doctest: +SKIP
    """
    t0 = time.perf_counter()
    _, _, k = check_value_inputs(model_fn, params, images, labels, config, k)
    coalitions = coalitions_for(config)
    log_probs = coalition_log_probs(model_fn, params, images, labels, coalitions, config, k=k,
                                    mesh=mesh, images_per_call=images_per_call,
                                    memory_budget=memory_budget, block_size=block_size,
                                    store=store, progress=progress, desc=desc)
    return summarize(config, coalitions, log_probs, k, time.perf_counter() - t0)


def summarize(config: SpectralConfig, coalitions, log_probs, k: int,
              seconds: float = math.nan) -> SpectralImportance:
    """Shapley values, distribution and scores from finished coalition log-probabilities."""
    shapley, se = shapley_from_values(config, coalitions, log_probs, k)
    dist = importance_distribution(shapley)
    score_se, signed_se = bootstrap_score_se(config, log_probs, k)
    return SpectralImportance(shapley, se, dist, spectral_robustness_score(dist, config.beta),
                              signed_robustness_score(dist, config.beta), score_se, signed_se,
                              np.asarray(coalitions, bool),
                              np.asarray(log_probs, np.float64).mean(1),
                              np.asarray(log_probs, np.float32), float(seconds))


__all__ = ["SpectralImportance", "spectral_importance", "summarize", "coalitions_for",
           "shapley_from_values", "group_values", "bootstrap_score_se"]
