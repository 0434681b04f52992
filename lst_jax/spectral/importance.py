"""I-ASIDE end to end: coalition values -> Shapley values -> importance distribution -> score.

Luo, McDermott, O'Riordan, *Interpreting Global Perturbation Robustness of Image Models using
Axiomatic Spectral Importance Decomposition*, TMLR 2024, arXiv 2408.01139; semantics of the
authors' code in `../shared/spec/iaside.md`.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from lst_jax.spectral.config import SpectralConfig
from lst_jax.spectral.sampling import group_layout, numpy_seed
from lst_jax.spectral.score import (
    importance_distribution,
    signed_robustness_score,
    spectral_robustness_score,
)
from lst_jax.spectral.shapley import (
    _permutation_estimate,
    _plan,
    all_coalitions,
    permutation_plan,
    shapley_matrix,
)
from lst_jax.spectral.values import (
    DEFAULT_BLOCK,
    check_config,
    check_value_inputs,
    coalition_log_probs,
    coalition_log_probs_unchecked,
)
from lst_jax.utils.checks import check_key


class SpectralImportance(NamedTuple):
    """Result of `spectral_importance` (every leaf a `jax.Array`: the float64 host
    statistics of `importance_statistics` in jax's default float, float32 unless x64 is
    enabled).

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

    Shape:
        shapley, shapley_se, distribution: (M,); score, signed_score, score_se,
        signed_score_se: (); coalitions: (C, M) bool; values: (C,); log_probs: (C, K)
        float32.
    """

    shapley: jax.Array
    shapley_se: jax.Array
    distribution: jax.Array
    score: jax.Array
    signed_score: jax.Array
    score_se: jax.Array
    signed_score_se: jax.Array
    coalitions: jax.Array
    values: jax.Array
    log_probs: jax.Array


class ImportanceStatistics(NamedTuple):
    """The statistics of `SpectralImportance` as float64 host (numpy) values, for jobs that
    store them exactly (`importance_statistics`). Same fields and shapes; scores are
    Python floats, values float64, log_probs float32."""

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


def coalitions_for(*, key, config: SpectralConfig) -> np.ndarray:
    """The coalitions the estimator needs (host plan): exact, all 2^M in index order;
    sampled, those the permutation walks of `permutation_plan(key=key)` visit.

    Shape:
        -> (C, M) bool.

    Examples:
        >>> import jax
        >>> from lst_jax.spectral import SpectralConfig, coalitions_for
        >>> coalitions_for(key=jax.random.key(0), config=SpectralConfig(num_bands=3)).shape
        (8, 3)
    """
    check_key(key)
    check_config(config)
    if config.estimator == "exact":
        return all_coalitions(config.num_bands)
    return permutation_plan(config.num_bands, num_permutations=config.num_permutations,
                            key=key).coalitions


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


def shapley_from_values(config: SpectralConfig, coalitions, log_probs, k: int, seed: int):
    """(Shapley values, standard errors) from the per-coalition, per-image log-probs
    (`seed`: `numpy_seed(key)`)."""
    values = np.asarray(log_probs, np.float64).mean(1)
    if config.estimator == "sampled":
        plan = _plan(config.num_bands, config.num_permutations, seed)
        if not np.array_equal(plan.coalitions, coalitions):
            raise ValueError("coalitions differ from the sampled estimator's plan")
        est = _permutation_estimate(plan, values)
        return est.values, est.se
    w = shapley_matrix(config.num_bands)
    per_group, sizes = group_values(log_probs, k, config.group_size)    # (2^M, G)
    if config.resample:   # independent coalitions: propagate each value's standard error
        se_v = _weighted_se(per_group, sizes)
        return w @ values, np.sqrt((w ** 2) @ se_v ** 2)
    return w @ values, _weighted_se(w @ per_group, sizes)


def bootstrap_score_se(config: SpectralConfig, log_probs, k: int, seed: int,
                       num: int = 1000) -> tuple[float, float]:
    """Bootstrap standard errors of (score, signed score) over the image groups.

    Groups (the min-max couples the images of a group) are resampled with replacement,
    `num` times (`default_rng([seed, 4])`, `seed = numpy_seed(key)`); each replicate's
    Shapley values are the size-weighted mean of the per-group Shapley values. NaN for the
    sampled estimator, for resampling (each coalition has its own images) or a single group.
    """
    from lst_jax.spectral.score import score_weights

    per_group, sizes = group_values(log_probs, k, config.group_size)
    n = sizes.shape[0]
    if config.estimator != "exact" or config.resample or n < 2:
        return math.nan, math.nan
    psi_g = shapley_matrix(config.num_bands) @ per_group                   # (M, G)
    idx = np.random.default_rng([seed, 4]).integers(n, size=(num, n))
    w = sizes[idx].astype(np.float64)                                       # (num, G)
    psi = np.einsum("mbg,bg->bm", psi_g[:, idx], w) / w.sum(1, keepdims=True)
    shifted = psi - psi.min(1, keepdims=True)
    total = shifted.sum(1, keepdims=True)
    dist = np.where(total > 0, shifted / np.where(total > 0, total, 1), 1.0 / psi.shape[1])
    b_hat, eta = score_weights(config.num_bands, config.beta)
    signed = (dist @ b_hat - eta) / (1 - eta) if config.num_bands > 1 else np.zeros(num)
    return float(np.abs(signed).std(ddof=1)), float(signed.std(ddof=1))


def spectral_importance(model_fn, params, images, labels, *, key,
                        config: SpectralConfig = SpectralConfig(), mesh=None,
                        batch_size: int | None = None, memory_budget=None,
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
            coalition draws `config.k` images from.
        key: typed key of every random draw: random-fill pairings, Gaussian noise,
            resampled images, permutations, bootstrap (`jax.random.key(seed)`; the host
            draws are seeded by `lst_jax.spectral.sampling.numpy_seed(key)`).
        config: `SpectralConfig` (bands, fill, post-processing, normalisation, groups,
            beta, resampling and k, estimator).
        mesh: None (one device) or `lst_jax.parallel.data_mesh()` (all devices).
        batch_size, memory_budget: images per device in one model call, and bytes per
            device (see `coalition_log_probs`).
        block_size, store: coalitions per stored block and the resumable storage of
            finished blocks (`BlockStore`; the job's run directory). None: in memory.
        progress, desc: progress bar and its label.
        Placement, sizes and blocks never change the numbers beyond float round-off.

    Returns:
        `SpectralImportance` (jax.Array leaves).

    Shape:
        images: (N, H, W, C) float32 in [0, 1] with H = W >= 16; labels: (N,) int.

    Deviations from the authors' code (documented in docs/iaside.md): common random
    numbers by default; `log_softmax` instead of `log(softmax)`; a ragged last group is
    padded with its own images instead of being dropped; constant groups give black images
    instead of 0 / 0.

    Examples:
        >>> import jax, numpy as np
        >>> from lst_jax.spectral import SpectralConfig, spectral_importance
        >>> model_fn = lambda p, x: x.reshape(len(x), -1) @ p     # a linear classifier
        >>> rng = np.random.default_rng(0)
        >>> w = 0.05 * rng.normal(size=(16 * 16 * 3, 3)).astype(np.float32)
        >>> x = rng.uniform(size=(6, 16, 16, 3)).astype(np.float32)
        >>> y = np.asarray(model_fn(w, x)).argmax(-1)
        >>> res = spectral_importance(model_fn, w, x, y, key=jax.random.key(0),
        ...                           config=SpectralConfig(num_bands=4, group_size=3))
        >>> res.distribution.shape, res.values.shape, res.log_probs.shape
        ((4,), (16,), (16, 6))
        >>> bool(abs(res.distribution.sum() - 1) < 1e-6), bool(0 <= res.score <= 1)
        (True, True)
    """
    seed = numpy_seed(key)
    _, _, k = check_value_inputs(model_fn, params, images, labels, config)
    coalitions = coalitions_for(key=key, config=config)
    log_probs = coalition_log_probs(model_fn, params, images, labels, coalitions, key=key,
                                    config=config, mesh=mesh, batch_size=batch_size,
                                    memory_budget=memory_budget, block_size=block_size,
                                    store=store, progress=progress, desc=desc)
    stats = _statistics(config, coalitions, jax.device_get(log_probs), k, seed)
    return SpectralImportance(*(jax.device_put(np.asarray(v)) for v in stats))


def spectral_importance_unchecked(model_fn, params, images, labels, *, key,
                                  config: SpectralConfig,
                                  batch_size: int | None = None) -> SpectralImportance:
    """`spectral_importance` as one traceable computation: no validation, no placement,
    no blocks, store or progress bar; usable inside `jax.jit` (`params`, `images`,
    `labels` may be traced).

    `key` and `config` must be concrete: the pairings, resampled images, permutations and
    bootstrap draws are made on the host from `numpy_seed(key)` (close over the key). The
    statistics are computed in jax's default float (float32 unless x64), so they equal
    `spectral_importance`'s to float32 round-off. `batch_size`: images per model call
    (`jax.lax.map` over chunks); None: every coalition x image in one call.

    Shape:
        images: (N, H, W, C) float32 in [0, 1], square; labels: (N,) int
        -> `SpectralImportance` with the shapes of `spectral_importance`.

    Examples:
        >>> import jax, numpy as np
        >>> from lst_jax.spectral import SpectralConfig, spectral_importance_unchecked
        >>> model_fn = lambda p, x: x.reshape(len(x), -1) @ p
        >>> rng = np.random.default_rng(0)
        >>> w = 0.05 * rng.normal(size=(16 * 16 * 3, 3)).astype(np.float32)
        >>> x = rng.uniform(size=(6, 16, 16, 3)).astype(np.float32)
        >>> cfg, key = SpectralConfig(num_bands=4, group_size=3), jax.random.key(0)
        >>> score = jax.jit(lambda p, x, y: spectral_importance_unchecked(
        ...     model_fn, p, x, y, key=key, config=cfg).score)
        >>> score(w, x, np.asarray(model_fn(w, x)).argmax(-1)).shape
        ()
    """
    seed = numpy_seed(key)
    k = images.shape[0] if config.k is None else config.k
    coalitions = coalitions_for(key=key, config=config)
    log_probs = coalition_log_probs_unchecked(model_fn, params, images, labels, coalitions,
                                              key=key, config=config, batch_size=batch_size)
    return _traced_statistics(config, coalitions, log_probs, k, seed)


def summarize(coalitions, log_probs, *, key, config: SpectralConfig) -> SpectralImportance:
    """Shapley values, distribution and scores from finished coalition log-probabilities
    (e.g. `coalition_log_probs` of `coalitions_for(key=key, config=config)`).

    Shape:
        coalitions: (C, M) bool; log_probs: (C, K) -> `SpectralImportance`.

    Examples:
        >>> import jax, numpy as np
        >>> from lst_jax.spectral import SpectralConfig, all_coalitions, summarize
        >>> lp = np.log([[1 / 3] * 4, [0.5] * 4, [0.4] * 4, [0.9] * 4])   # v of 4 coalitions
        >>> res = summarize(all_coalitions(2), lp, key=jax.random.key(0),
        ...                 config=SpectralConfig(num_bands=2, group_size=2))
        >>> [round(float(v), 4) for v in res.shapley]          # efficiency: log(2.7)
        [0.6082, 0.3851]
    """
    stats = importance_statistics(coalitions, log_probs, key=key, config=config)
    return SpectralImportance(*(jax.device_put(np.asarray(v)) for v in stats))


def importance_statistics(coalitions, log_probs, *, key,
                          config: SpectralConfig) -> ImportanceStatistics:
    """`summarize` as float64 host values (`ImportanceStatistics`), for jobs that store the
    statistics exactly.

    Shape:
        coalitions: (C, M) bool; log_probs: (C, K) -> `ImportanceStatistics`.

    Examples:
        >>> import jax, numpy as np
        >>> from lst_jax.spectral import SpectralConfig, all_coalitions, importance_statistics
        >>> lp = np.log([[0.1] * 4, [0.2] * 4, [0.4] * 4, [0.8] * 4])     # additive game
        >>> st = importance_statistics(all_coalitions(2), lp, key=jax.random.key(0),
        ...                            config=SpectralConfig(num_bands=2, group_size=2))
        >>> st.shapley.round(6).tolist(), st.distribution.tolist()       # log 2, log 4
        ([0.693147, 1.386294], [0.0, 1.0])
    """
    seed = numpy_seed(key)
    check_config(config)
    lp = np.asarray(jax.device_get(log_probs), np.float32)
    if lp.ndim != 2 or lp.shape[0] != len(coalitions):
        raise ValueError(f"log_probs must have shape ({len(coalitions)}, K), got {lp.shape}")
    return _statistics(config, np.asarray(coalitions, bool), lp, lp.shape[1], seed)


def _statistics(config: SpectralConfig, coalitions, log_probs, k: int,
                seed: int) -> ImportanceStatistics:
    shapley, se = shapley_from_values(config, coalitions, log_probs, k, seed)
    dist = importance_distribution(shapley)
    score_se, signed_se = bootstrap_score_se(config, log_probs, k, seed)
    return ImportanceStatistics(shapley, se, dist,
                                spectral_robustness_score(dist, beta=config.beta),
                                signed_robustness_score(dist, beta=config.beta), score_se,
                                signed_se, np.asarray(coalitions, bool),
                                np.asarray(log_probs, np.float64).mean(1),
                                np.asarray(log_probs, np.float32))


def _traced_statistics(config: SpectralConfig, coalitions, log_probs, k: int,
                       seed: int) -> SpectralImportance:
    """`_statistics` in jnp on traced log-probs. The host draws from `seed` (permutation
    walks, bootstrap groups) are arguments of one program per (config, k), so another key
    does not compile again."""
    m, draws = config.num_bands, {}
    layout = group_layout(k, config.group_size)
    sizes = layout.real.sum(1)
    if config.estimator == "sampled":
        plan = _plan(m, config.num_permutations, seed)
        draws = {"forward": plan.forward, "backward": plan.backward,
                 "inv_forward": np.argsort(plan.perms, axis=1),     # step of each player
                 "inv_backward": np.argsort(plan.perms[:, ::-1], axis=1)}
    elif not config.resample and len(sizes) >= 2:
        idx = np.random.default_rng([seed, 4]).integers(len(sizes), size=(1000, len(sizes)))
        draws = {"idx": idx, "wts": sizes[idx].astype(jnp.result_type(float))}
    stats = _jnp_statistics(config, k, draws, log_probs)
    return SpectralImportance(*stats[:7], jnp.asarray(coalitions), *stats[7:])


@functools.partial(jax.jit, static_argnums=(0, 1))
def _jnp_statistics(config: SpectralConfig, k: int, draws: dict, log_probs):
    from lst_jax.spectral.score import score_weights

    m = config.num_bands
    layout = group_layout(k, config.group_size)
    sizes = layout.real.sum(1)
    n_groups = len(sizes)
    lp = log_probs.astype(jnp.result_type(float))
    values = lp.mean(1)
    pad = lp[:, layout.position] * layout.real[None]                  # (C, G, g)
    per_group = pad.sum(-1) / sizes[None]                             # (C, G)

    def weighted_se(x):              # over the last axis (groups), NaN for one group
        if n_groups < 2:
            return jnp.full(x.shape[:-1], jnp.nan, x.dtype)
        w = (sizes / sizes.sum()).reshape((1,) * (x.ndim - 1) + (-1,))
        mean = (x * w).sum(-1, keepdims=True)
        return jnp.sqrt((w ** 2 * (x - mean) ** 2).sum(-1) * n_groups / (n_groups - 1))

    if config.estimator == "sampled":
        fwd = jnp.take_along_axis(jnp.diff(values[draws["forward"]], axis=1),
                                  draws["inv_forward"], axis=1)
        bwd = jnp.take_along_axis(jnp.diff(values[draws["backward"]], axis=1),
                                  draws["inv_backward"], axis=1)
        pair = (fwd + bwd) / 2
        shapley = pair.mean(0)
        se = pair.std(0, ddof=1) / math.sqrt(pair.shape[0])
    else:
        w = jnp.asarray(shapley_matrix(m), values.dtype)
        shapley = w @ values
        se = (jnp.sqrt((w ** 2) @ weighted_se(per_group) ** 2) if config.resample
              else weighted_se(w @ per_group))
    b_hat, eta = score_weights(m, config.beta)
    b_hat = jnp.asarray(b_hat, values.dtype)

    def dist_signed(psi):            # (..., M) -> distribution, signed score
        shifted = psi - psi.min(-1, keepdims=True)
        total = shifted.sum(-1, keepdims=True)
        d = jnp.where(total > 0, shifted / jnp.where(total > 0, total, 1), 1.0 / m)
        signed = (d @ b_hat - eta) / (1 - eta) if m > 1 else jnp.zeros(psi.shape[:-1])
        return d, signed

    dist, signed = dist_signed(shapley)
    score_se = signed_se = jnp.asarray(jnp.nan, values.dtype)
    if "idx" in draws:
        idx, wts = draws["idx"], draws["wts"]
        psi_g = jnp.asarray(shapley_matrix(m), values.dtype) @ per_group     # (M, G)
        psi = jnp.einsum("mbg,bg->bm", psi_g[:, idx], wts) / wts.sum(1, keepdims=True)
        _, s_b = dist_signed(psi)
        score_se, signed_se = jnp.abs(s_b).std(ddof=1), s_b.std(ddof=1)
    return (shapley, se, dist, jnp.abs(signed), signed, score_se, signed_se, values,
            log_probs)


__all__ = ["SpectralImportance", "ImportanceStatistics", "spectral_importance",
           "spectral_importance_unchecked", "summarize", "importance_statistics",
           "coalitions_for", "shapley_from_values", "group_values", "bootstrap_score_se"]
