"""Shapley values of a game over M players from the values of its coalitions.

Coalitions are bit vectors `bits (M,) bool` (player 0 = lowest band); in the exact
enumeration coalition `s` has index `sum_k bits[k] 2^k`. The expensive part of I-ASIDE is
evaluating the coalitions; everything here is host arithmetic on their values (float64).

- **Exact**: `psi = W @ U` with a fixed `(M, 2^M)` weight matrix: `W[i, s] = w(|s| - 1)` if
  player i is in s, `-w(|s|)` otherwise, `w(k) = 1 / (M C(M-1, k))` (`math.comb`; the
  reference's `scipy.special` is never imported in its file).
- **Permutation sampling** (for M beyond enumeration, e.g. 16 or 32): each random
  permutation is walked forward (player pi_k's marginal `U(pi_0..pi_k) - U(pi_0..pi_{k-1})`)
  and backward (the reversed permutation: antithetic, its coalitions are the complements);
  the estimate is the mean marginal over all walks, its standard error the spread of the
  per-permutation (forward + backward) / 2 means over sqrt(P). Only the coalitions the walks
  visit are evaluated (at most 2M per permutation).

`../shared/STYLE.md` practice 16; `../shared/spec/iaside.md` section 6.
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple

import numpy as np

from lst_jax.utils.checks import check_positive_int

MAX_EXACT_PLAYERS = 16   # 65536 coalitions; beyond that use permutation sampling


def _check_players(num_players, limit: int | None = None) -> int:
    m = check_positive_int("num_bands", num_players)
    if limit is not None and m > limit:
        raise ValueError(f"num_bands={m} is too many for exact enumeration (2^{m} coalitions; "
                         f"at most {limit}): use the permutation-sampling estimator "
                         "(estimator='sampled')")
    return m


def all_coalitions(num_players: int) -> np.ndarray:
    """Every coalition in index order (row s has bit k = (s >> k) & 1).

    Shape:
        -> (2^M, M) bool.

    Examples:
        >>> from lst_jax.spectral import all_coalitions
        >>> all_coalitions(2).astype(int).tolist()
        [[0, 0], [1, 0], [0, 1], [1, 1]]
    """
    m = _check_players(num_players, MAX_EXACT_PLAYERS)
    s = np.arange(2 ** m, dtype=np.int64)
    return ((s[:, None] >> np.arange(m, dtype=np.int64)[None, :]) & 1).astype(bool)


def coalition_index(bits) -> np.ndarray:
    """Index `sum_k bits[..., k] 2^k` of each coalition (M <= 62).

    Shape:
        bits: (..., M) bool -> (...) int64.

    Examples:
        >>> import numpy as np
        >>> from lst_jax.spectral import coalition_index
        >>> coalition_index(np.array([[True, False, True], [False, True, False]])).tolist()
        [5, 2]
    """
    bits = np.asarray(bits, bool)
    if bits.shape[-1] > 62:
        raise ValueError(f"coalition indices need M <= 62, got M = {bits.shape[-1]}")
    return (bits.astype(np.int64) << np.arange(bits.shape[-1], dtype=np.int64)).sum(-1)


def shapley_weights(num_players: int) -> np.ndarray:
    """`w(k) = k! (M-1-k)! / M! = 1 / (M C(M-1, k))`, the weight of a subset of size k.

    Shape:
        -> (M,) float64 (M = 8: 0.125, 0.01786, 0.00595, 0.00357, 0.00357, ...).
    """
    m = _check_players(num_players)
    return np.array([1.0 / (m * math.comb(m - 1, k)) for k in range(m)], np.float64)


def shapley_matrix(num_players: int) -> np.ndarray:
    """The exact-Shapley weight matrix: `psi = shapley_matrix(M) @ values`.

    Shape:
        -> (M, 2^M) float64; each row sums to 0 (efficiency: the columns of the empty and
        the full coalition sum to -1 and +1, all others to 0).

    Examples:
        >>> from lst_jax.spectral import shapley_matrix
        >>> shapley_matrix(2).tolist()
        [[-0.5, 0.5, -0.5, 0.5], [-0.5, -0.5, 0.5, 0.5]]
    """
    bits = all_coalitions(num_players)
    w = shapley_weights(bits.shape[1])
    size = bits.sum(1)
    plus = w[np.maximum(size - 1, 0)][None, :]
    minus = w[np.minimum(size, bits.shape[1] - 1)][None, :]
    return np.where(bits.T, plus, -minus)


def exact_shapley(values) -> np.ndarray:
    """Exact Shapley values from the values of all 2^M coalitions in index order (host
    arithmetic in float64, as every game-theory helper here).

    Shape:
        values: (2^M,) -> (M,) float64.

    Examples:
        >>> from lst_jax.spectral import exact_shapley
        >>> exact_shapley([0.0, 1.0, 2.0, 4.0]).tolist()     # v({0,1}) has a synergy of 1
        [1.5, 2.5]
    """
    values = np.asarray(values, np.float64)
    m = int(round(math.log2(values.shape[0]))) if values.ndim == 1 and values.size else -1
    if m < 1 or values.shape != (2 ** m,):
        raise ValueError(f"values must hold 2^M coalition values (M >= 1), got shape "
                         f"{values.shape}")
    return shapley_matrix(m) @ values


class PermutationPlan(NamedTuple):
    """The walks of the antithetic permutation estimator and the coalitions they visit.

    Shape:
        perms: (P, M) int, the forward walks (the backward walk of row p is its reverse);
        coalitions: (U, M) bool, every distinct coalition visited (sorted rows);
        forward: (P, M + 1) int, row of `coalitions` of each forward prefix (0..M players);
        backward: (P, M + 1) int, the same for the reversed permutations.
    """

    perms: np.ndarray
    coalitions: np.ndarray
    forward: np.ndarray
    backward: np.ndarray


def permutation_plan(num_players: int, *, num_permutations: int, key) -> PermutationPlan:
    """P random permutations and the coalitions their walks visit (host plan, drawn by
    `numpy.random.default_rng([numpy_seed(key), M])`).

    Raises:
        ValueError: num_permutations < 2 (the standard error needs two); TypeError: key
        not a typed key.

    Shape:
        -> `PermutationPlan` (P = num_permutations, M = num_players).

    Examples:
        >>> import jax
        >>> from lst_jax.spectral import permutation_plan
        >>> plan = permutation_plan(4, num_permutations=3, key=jax.random.key(0))
        >>> plan.perms.shape, plan.forward.shape, bool(len(plan.coalitions) <= 2 * 3 * 4 + 2)
        ((3, 4), (3, 5), True)
    """
    from lst_jax.spectral.sampling import numpy_seed

    return _plan(num_players, num_permutations, numpy_seed(key))


def _plan(num_players: int, num_permutations: int, seed: int) -> PermutationPlan:
    """`permutation_plan` from the integer seed of the host draws."""
    m = _check_players(num_players)
    p = check_positive_int("num_permutations", num_permutations)
    if p < 2:
        raise ValueError(f"num_permutations must be at least 2 (standard errors), got {p}")
    rng = np.random.default_rng([int(seed), m])
    perms = np.stack([rng.permutation(m) for _ in range(p)])
    walks = np.concatenate([perms, perms[:, ::-1]])               # (2P, M)
    prefix = np.zeros((2 * p, m + 1, m), bool)
    rows = np.arange(2 * p)[:, None]
    for k in range(m):
        prefix[:, k + 1] = prefix[:, k]
        prefix[rows[:, 0], k + 1, walks[:, k]] = True
    coalitions, inverse = np.unique(prefix.reshape(-1, m), axis=0, return_inverse=True)
    inverse = inverse.reshape(2 * p, m + 1)
    return PermutationPlan(perms, coalitions, inverse[:p], inverse[p:])


def permutation_marginals(plan: PermutationPlan, values) -> np.ndarray:
    """Each player's marginal contribution in every walk.

    Shape:
        values: (U,) values of `plan.coalitions` -> (2, P, M) float64 (forward, backward).
    """
    values = np.asarray(values, np.float64)
    if values.shape != (plan.coalitions.shape[0],):
        raise ValueError(f"values must have shape ({plan.coalitions.shape[0]},) (one per "
                         f"plan coalition), got {values.shape}")
    p, m = plan.perms.shape
    out = np.zeros((2, p, m))
    for side, (walk_idx, walks) in enumerate(((plan.forward, plan.perms),
                                              (plan.backward, plan.perms[:, ::-1]))):
        gain = np.diff(values[walk_idx], axis=1)                   # (P, M) by walk step
        np.put_along_axis(out[side], walks, gain, axis=1)          # by player
    return out


class ShapleyEstimate(NamedTuple):
    """Shapley values with standard errors (zero for an exact enumeration of a fixed game).

    Shape:
        values, se: (M,) float64.
    """

    values: np.ndarray
    se: np.ndarray


def permutation_shapley(plan: PermutationPlan, values) -> ShapleyEstimate:
    """Antithetic permutation estimate from the values of `plan.coalitions` (float64 host
    arithmetic).

    Shape:
        values: (U,) -> ShapleyEstimate with (M,) values and standard errors.

    Examples:
        >>> import jax
        >>> from lst_jax.spectral import permutation_plan, permutation_shapley
        >>> plan = permutation_plan(3, num_permutations=4, key=jax.random.key(0))
        >>> est = permutation_shapley(plan, plan.coalitions @ [1.0, 2.0, 3.0])   # additive
        >>> est.values.round(12).tolist(), est.se.round(12).tolist()
        ([1.0, 2.0, 3.0], [0.0, 0.0, 0.0])
    """
    return _permutation_estimate(plan, values)


def _permutation_estimate(plan: PermutationPlan, values) -> ShapleyEstimate:
    marg = permutation_marginals(plan, values)
    pair = marg.mean(0)                                            # (P, M) antithetic means
    p = pair.shape[0]
    return ShapleyEstimate(pair.mean(0), pair.std(0, ddof=1) / math.sqrt(p))


def sampled_shapley(value_fn: Callable[[np.ndarray], np.ndarray], *, num_players: int,
                    num_permutations: int, key) -> ShapleyEstimate:
    """Permutation-sampling Shapley values of the game `value_fn(bits (n, M)) -> (n,)`.

    `value_fn` is called once, on the distinct coalitions the walks visit
    (`permutation_plan(num_players, num_permutations=..., key=key)`).

    Shape:
        -> ShapleyEstimate with (M,) float64 values and standard errors.

    Examples:
        >>> import jax, numpy as np
        >>> from lst_jax.spectral import sampled_shapley
        >>> est = sampled_shapley(lambda b: (b @ np.ones(4)) ** 2, num_players=4,
        ...                       num_permutations=8, key=jax.random.key(0))
        >>> est.values.round(6).tolist()                    # symmetric players: 16 / 4 each
        [4.0, 4.0, 4.0, 4.0]
    """
    plan = permutation_plan(num_players, num_permutations=num_permutations, key=key)
    return _permutation_estimate(plan, np.asarray(value_fn(plan.coalitions), np.float64))


def exact_shapley_of(value_fn: Callable[[np.ndarray], np.ndarray], *,
                     num_players: int) -> np.ndarray:
    """Exact Shapley values of the game `value_fn(bits (2^M, M)) -> (2^M,)`.

    Shape:
        -> (M,) float64.

    Examples:
        >>> import numpy as np
        >>> from lst_jax.spectral import exact_shapley_of
        >>> exact_shapley_of(lambda b: b @ np.array([1.0, -2.0]), num_players=2).tolist()
        [1.0, -2.0]
    """
    return exact_shapley(value_fn(all_coalitions(num_players)))


__all__ = ["MAX_EXACT_PLAYERS", "all_coalitions", "coalition_index", "shapley_weights",
           "shapley_matrix", "exact_shapley", "exact_shapley_of", "PermutationPlan",
           "permutation_plan", "permutation_marginals", "permutation_shapley",
           "sampled_shapley", "ShapleyEstimate"]
