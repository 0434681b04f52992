"""I-ASIDE core: band geometry, the coalition filter, Shapley values and the score.

References: the reference's own mask loop (tests/torch_iaside.py logic re-done in numpy), a
brute-force Shapley average over all permutations, analytic games (additive, squared-sum:
psi_i = a_i * sum a), the spec's derived score table, and a low-pass model whose answer is
known.
"""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lst_jax.spectral import (
    SpectralConfig,
    all_coalitions,
    band_index_map,
    band_masks,
    band_sizes,
    coalition_filter,
    coalition_log_probs,
    coalition_mask,
    exact_shapley,
    exact_shapley_of,
    importance_distribution,
    importance_statistics,
    permutation_plan,
    permutation_shapley,
    sampled_shapley,
    score_range,
    shapley_matrix,
    signed_robustness_score,
    spectral_importance,
    spectral_robustness_score,
)
from lst_jax.spectral.score import score_weights

KEY = jax.random.key(42)   # the seed the configs held before keys replaced it


def _reference_mask(dim, bits):
    """The authors' construction (spec section 2): highest selected band first, outer square
    set to 1, inner square set to 0 (centred layout)."""
    m = len(bits)
    mask = np.zeros((dim, dim), bool)
    for i in reversed(range(m)):
        if bits[i]:
            r = int(dim * (i + 1) / m)
            s = (dim - r) // 2
            mask[s:s + r, s:s + r] = True
            r = int(dim * i / m)
            s = (dim - r) // 2
            mask[s:s + r, s:s + r] = False
    return mask


# ------------------------------------------------------------------------------ bands
@pytest.mark.parametrize("side,m", [(16, 1), (16, 3), (16, 16), (17, 4), (32, 8), (33, 5),
                                    (64, 7), (224, 8)])
def test_bands_partition_the_spectrum_and_match_the_reference_loop(side, m):
    masks = band_masks(side, num_bands=m, centred=True)
    assert masks.shape == (m, side, side)
    assert (masks.sum(0) == 1).all()                       # every bin in exactly one band
    assert masks.reshape(m, -1).any(1).all()               # no band is empty
    rng = np.random.default_rng(side * 31 + m)
    for bits in [np.ones(m, bool)] + [rng.random(m) < 0.5 for _ in range(6)]:
        np.testing.assert_array_equal(coalition_mask(bits, side=side, centred=True),
                                      _reference_mask(side, bits))
        np.testing.assert_array_equal(coalition_mask(bits, side=side),
                                      np.fft.ifftshift(_reference_mask(side, bits)))
    # the natural layout is the centred one shifted back
    np.testing.assert_array_equal(band_index_map(side, num_bands=m),
                                  np.fft.ifftshift(band_index_map(side, num_bands=m,
                                                                  centred=True)))


def test_band_geometry_224_and_even_asymmetry():
    # spec section 2, [derived]: bins per band and channel at 224, M = 8
    np.testing.assert_array_equal(band_sizes(224, num_bands=8),
                                  [784, 2352, 3920, 5488, 7056, 8624, 10192, 11760])
    rows = np.flatnonzero(band_masks(224, num_bands=8, centred=True)[0].any(1))
    assert (rows.min(), rows.max()) == (98, 125)           # 14 bins below DC = 112, 13 above
    # even side: frequency -r/2 is in band 0, +r/2 is not (not Hermitian-symmetric)
    centred = band_index_map(16, num_bands=4, centred=True)
    assert centred[8, 6] == 0 and centred[8, 10] == 1
    assert band_index_map(32, num_bands=8)[0, 0] == 0                # DC (natural layout [0, 0])
    # odd sides on an even image sit half a bin off centre: at 16 x 16, M = 16, band 0 is the
    # single bin (-1, -1) and DC belongs to band 1 (the reference's integer geometry)
    centred = band_index_map(16, num_bands=16, centred=True)
    assert centred[7, 7] == 0 and centred[8, 8] == 1


@pytest.mark.parametrize("bad", [0, -1, 2.0, True, 17])
def test_bad_num_bands(bad):
    with pytest.raises(ValueError, match="num_bands"):
        band_masks(16, num_bands=bad)


# ------------------------------------------------------------------------------ filter
def _images(n=23, side=16, seed=0):
    return np.random.default_rng(seed).uniform(size=(n, side, side, 3)).astype(np.float32)


@pytest.mark.parametrize("normalize", ["group", "per_image"])
@pytest.mark.parametrize("post", ["abs", "real"])
def test_zero_fill_full_coalition_gives_back_the_normalised_image(normalize, post):
    x = _images()                          # 23 images: groups of 10, 10 and a ragged 3
    cfg = SpectralConfig(num_bands=4, fill="zero", post=post, normalize=normalize)
    got = np.asarray(coalition_filter(x, np.ones(4, bool), key=KEY, config=cfg))
    assert got.shape == x.shape
    step = 10 if normalize == "group" else 1
    for s in range(0, 23, step):
        g = x[s:s + step]
        np.testing.assert_allclose(got[s:s + step], (g - g.min()) / (g.max() - g.min()),
                                   atol=2e-6)


@pytest.mark.parametrize("fill", ["zero", "gaussian", "random"])
def test_empty_coalition_is_black_and_outputs_in_range(fill):
    x = _images(12)
    cfg = SpectralConfig(num_bands=4, fill=fill)
    assert np.all(np.asarray(coalition_filter(x, np.zeros(4, bool), key=KEY, config=cfg)) == 0)
    y = np.asarray(coalition_filter(x, np.array([True, False, True, False]), key=KEY,
                                    config=cfg))
    assert y.min() >= 0 and y.max() <= 1 and y.max() == 1   # min-max over each group


def test_zero_fill_low_band_is_an_ideal_low_pass():
    # real post-processing, one image per group: the filtered image is the exact band-pass
    # (numpy FFT), min-max normalised
    x = _images(3, side=32)
    bits = np.array([True, True, False, False])
    cfg = SpectralConfig(num_bands=4, fill="zero", post="real", normalize="per_image")
    got = np.asarray(coalition_filter(x, bits, key=KEY, config=cfg))
    keep = coalition_mask(bits, side=32)[None, :, :, None]
    want = np.real(np.fft.ifft2(np.fft.fft2(x.astype(np.float64), axes=(1, 2)) * keep,
                                axes=(1, 2)))
    lo = want.min(axis=(1, 2, 3), keepdims=True)
    want = (want - lo) / (want.max(axis=(1, 2, 3), keepdims=True) - lo)
    np.testing.assert_allclose(got, want, atol=2e-6)


# ------------------------------------------------------------------------------ Shapley
def _brute_force_shapley(v, m):
    """Average marginal contribution over all M! orders."""
    psi = np.zeros(m)
    for order in itertools.permutations(range(m)):
        s = 0
        for i in order:
            psi[i] += v[s | (1 << i)] - v[s]
            s |= 1 << i
    return psi / math.factorial(m)


def test_exact_shapley_equals_the_permutation_average_and_the_reference_weights():
    m = 5
    v = np.random.default_rng(0).normal(size=2 ** m)
    np.testing.assert_allclose(exact_shapley(v), _brute_force_shapley(v, m), atol=1e-12)
    w = shapley_matrix(8)
    assert w.shape == (8, 256)
    # spec section 6, M = 8: subset weights 0.125, 0.01786, 0.00595, 0.00357, ...
    np.testing.assert_allclose(w[0, [1 << 1, 0b110, 0b1110, 0b11110]],
                               [-0.01786, -0.00595, -0.00357, -0.00357], atol=1e-5)
    np.testing.assert_allclose(w[0, [0, 1, 255]], [-0.125, 0.125, 0.125])


def test_shapley_axioms():
    m = 6
    rng = np.random.default_rng(1)
    bits = all_coalitions(m)
    u, v = rng.normal(size=2 ** m), rng.normal(size=2 ** m)
    psi_u, psi_v = exact_shapley(u), exact_shapley(v)
    # efficiency
    assert abs(psi_u.sum() - (u[-1] - u[0])) < 1e-12
    # linearity
    np.testing.assert_allclose(exact_shapley(2.0 * u - 3.0 * v), 2 * psi_u - 3 * psi_v,
                               atol=1e-12)
    # symmetry: a game symmetric in players 1 and 4 gives them equal values
    swap = bits.copy()
    swap[:, [1, 4]] = swap[:, [4, 1]]
    idx = (swap.astype(np.int64) << np.arange(m)).sum(1)
    sym = u + u[idx]
    psi = exact_shapley(sym)
    assert abs(psi[1] - psi[4]) < 1e-12 and abs(psi[1] - psi[2]) > 1e-3
    # dummy player: player 3 never changes the value -> 0
    dummy = u[(bits & ~(np.arange(m) == 3)).astype(np.int64) @ (1 << np.arange(m))]
    assert abs(exact_shapley(dummy)[3]) < 1e-12
    # additive game: psi = the weights
    a = rng.normal(size=m)
    np.testing.assert_allclose(exact_shapley_of(lambda b: b @ a, num_players=m), a,
                               atol=1e-12)


def test_permutation_sampler_converges_with_shrinking_standard_errors():
    m = 8
    rng = np.random.default_rng(2)
    table = rng.normal(size=2 ** m) + 3 * all_coalitions(m).sum(1) ** 1.5 / m
    game = lambda b: table[(b.astype(np.int64) << np.arange(m)).sum(1)]
    exact = exact_shapley(table)
    small = sampled_shapley(game, num_players=m, num_permutations=16, key=jax.random.key(0))
    large = sampled_shapley(game, num_players=m, num_permutations=256, key=jax.random.key(0))
    for est in (small, large):
        assert np.all(np.abs(est.values - exact) <= 4 * est.se + 1e-12)
        assert abs(est.values.sum() - (table[-1] - table[0])) < 1e-9   # every walk: efficient
    assert np.all(large.se < small.se)
    assert 2.5 < np.median(small.se / large.se) < 6.5                # ~ sqrt(256 / 16) = 4


@pytest.mark.parametrize("m", [16, 32])
def test_permutation_sampler_on_a_large_analytic_game(m):
    # v(S) = (sum_{i in S} a_i)^2 has psi_i = a_i * sum(a); only visited coalitions are used
    a = np.random.default_rng(m).uniform(0.5, 2.0, size=m)
    calls = []

    def game(bits):
        calls.append(len(bits))
        return (bits @ a) ** 2

    est = sampled_shapley(game, num_players=m, num_permutations=32, key=jax.random.key(1))
    assert calls == [len(permutation_plan(m, num_permutations=32, key=jax.random.key(1))
                         .coalitions)] and calls[0] <= 2 * 32 * m
    assert np.all(np.abs(est.values - a * a.sum()) <= 4 * est.se + 1e-9)
    # an additive game has no sampling error: every permutation gives the exact values
    plan = permutation_plan(m, num_permutations=4, key=jax.random.key(0))
    exact = permutation_shapley(plan, plan.coalitions @ a)
    np.testing.assert_allclose(exact.values, a, atol=1e-12)
    np.testing.assert_allclose(exact.se, 0, atol=1e-12)


# ------------------------------------------------------------------------------ score
@pytest.mark.parametrize("m,eta,low,top", [(4, 0.4766, 0.4215, 0.3487),
                                           (6, 0.3684, 0.4810, 0.3306),
                                           (8, 0.2991, 0.5217, 0.3002),
                                           (10, 0.2501, 0.5499, 0.2671)])
def test_score_matches_the_spec_table(m, eta, low, top):
    assert abs(score_weights(m)[1] - eta) < 1e-4
    one = np.eye(m)
    assert abs(spectral_robustness_score(one[0]) - low) < 1e-4
    assert abs(spectral_robustness_score(one[-1]) - top) < 1e-4      # the abs quirk
    assert abs(signed_robustness_score(one[-1]) + top) < 1e-4
    assert abs(spectral_robustness_score(np.full(m, 1.0 / m))) < 1e-12
    np.testing.assert_allclose(score_range(m), (-top, low), atol=1e-4)


def test_distribution_shift_normalise_and_guard():
    d = importance_distribution([0.5, -1.0, 2.0, 0.0])
    np.testing.assert_allclose(d, np.array([1.5, 0.0, 3.0, 1.0]) / 5.5)
    with pytest.warns(RuntimeWarning, match="equal"):
        np.testing.assert_allclose(importance_distribution([0.3, 0.3, 0.3]), 1 / 3)
    with pytest.raises(ValueError, match="beta"):
        spectral_robustness_score(d, beta=1.0)


# ------------------------------------------------------------------------------ end to end
class _LowPassLinear:
    """Per-image standardisation then a linear classifier on the pixels; `cutoff` puts an
    ideal, Hermitian-symmetric low-pass filter (|frequency index| <= cutoff on both axes)
    in front, so the classifier sees only bands 0 and 1 of 8 at 32 x 32 (cutoff 3)."""

    def __init__(self, cutoff=None):
        self.cutoff = cutoff

    def __hash__(self):
        return hash(("low-pass", self.cutoff))

    def __eq__(self, other):
        return isinstance(other, _LowPassLinear) and other.cutoff == self.cutoff

    def __call__(self, params, x):
        if self.cutoff is not None:
            k = np.abs(np.fft.fftfreq(x.shape[1]) * x.shape[1])
            keep = jnp.asarray((k[:, None] <= self.cutoff) & (k[None, :] <= self.cutoff))
            spec = jnp.fft.fft2(x, axes=(1, 2)) * keep[None, :, :, None]
            x = jnp.real(jnp.fft.ifft2(spec, axes=(1, 2)))
        x = x.reshape(x.shape[0], -1)
        x = (x - x.mean(1, keepdims=True)) / (x.std(1, keepdims=True) + 1e-6)
        return x @ params


@pytest.mark.parametrize("post", ["abs", "real"])
def test_low_pass_model_puts_its_importance_in_the_low_bands(post):
    side, m = 32, 8
    rng = np.random.default_rng(3)
    x = rng.uniform(size=(30, side, side, 3)).astype(np.float32)
    w = jnp.asarray(rng.normal(size=(side * side * 3, 10)) * 0.3, jnp.float32)
    cfg = SpectralConfig(num_bands=m, fill="random", post=post)
    res = {}
    for cutoff in (None, 3):
        f = _LowPassLinear(cutoff)
        y = np.asarray(jnp.argmax(f(w, jnp.asarray(x)), -1)).astype(np.int32)
        res[cutoff] = spectral_importance(f, w, x, y, key=KEY, config=cfg)
    low, plain = res[3], res[None]
    assert low.distribution[:2].sum() > 0.9
    assert low.score > plain.score + 0.15 and low.signed_score > 0.3 > plain.signed_score
    if post == "real":
        # the filter is linear: the invisible bands 2..7 are symmetric players (equal
        # values up to float32 round-off, all the minimum, so 0 importance)
        np.testing.assert_allclose(low.shapley[2:], low.shapley[2], atol=1e-4)
        assert low.distribution[2:].max() < 1e-5 * abs(low.shapley).max()


def test_values_reuse_the_compiled_program():
    from lst_jax.parallel import sharded as sh_mod
    from subproc import fast_tiny_cnn

    model_fn, params = fast_tiny_cnn(0, (16, 16, 3))
    x, y = _images(12), np.arange(12, dtype=np.int32) % 10
    cfg = SpectralConfig(num_bands=3)
    bits = all_coalitions(3)
    a = coalition_log_probs(model_fn, params, x, y, bits, key=KEY, config=cfg, block_size=3)
    n = sh_mod._apply._cache_size()
    b = coalition_log_probs(model_fn, params, x[::-1].copy(), y[::-1].copy(), bits, key=KEY,
                            config=cfg, block_size=3)
    assert sh_mod._apply._cache_size() == n                     # no recompilation
    assert a.shape == (8, 12) and not np.allclose(a, b)
    np.testing.assert_allclose(b, coalition_log_probs(
        model_fn, params, x[::-1].copy(), y[::-1].copy(), bits, key=KEY, config=cfg,
        block_size=8, batch_size=30), atol=1e-6)                # chunking: same numbers


# ------------------------------------------------------------------------------ bad input
def _tiny():
    from subproc import fast_tiny_cnn

    return fast_tiny_cnn(0, (16, 16, 3))


@pytest.mark.parametrize("case,arg", [
    ("num_bands", "num_bands"), ("non_square", "square"), ("too_small", "at least 16"),
    ("k0", "k"), ("empty", "images"), ("labels", "labels"), ("nan", "images"),
    ("fill", "fill"), ("bands_vs_side", "num_bands"), ("group", "group_size"),
    ("nchw", "images"), ("resample_k", "k"), ("estimator", "estimator")])
def test_bad_input_is_a_value_error_naming_the_argument(case, arg, monkeypatch):
    from lst_jax.parallel import sharded as sh_mod

    model_fn, params = _tiny()
    x, y = _images(10), np.arange(10, dtype=np.int32)
    kw, cfg = {}, {"num_bands": 4}
    if case == "num_bands":
        cfg["num_bands"] = 0
    elif case == "non_square":
        x = np.zeros((10, 16, 20, 3), np.float32)
    elif case == "too_small":
        x = np.zeros((10, 8, 8, 3), np.float32)
    elif case == "k0":
        cfg["k"] = 0
    elif case == "empty":
        x, y = x[:0], y[:0]
    elif case == "labels":
        y = y + 5                                     # 10..14 for a 10-class model
    elif case == "nan":
        x = x.copy()
        x[3, 2, 2, 0] = np.nan
    elif case == "fill":
        cfg["fill"] = "noise"
    elif case == "bands_vs_side":
        cfg["num_bands"], cfg["estimator"] = 17, "sampled"
    elif case == "group":
        cfg["group_size"] = 0
    elif case == "nchw":
        x = x.transpose(0, 3, 1, 2).copy()
    elif case == "resample_k":
        cfg["resample"] = True
    elif case == "estimator":
        cfg["num_bands"], cfg["estimator"] = 17, "exact"
    monkeypatch.setattr(sh_mod, "_apply", None)       # nothing may be compiled
    with pytest.raises(ValueError, match=arg):
        spectral_importance(model_fn, params, x, y, key=KEY, config=SpectralConfig(**cfg),
                            **kw)


def test_resampling_draws_per_coalition_and_is_order_independent():
    from subproc import fast_tiny_cnn

    model_fn, params = fast_tiny_cnn(0, (16, 16, 3), logit_scale=10.0)
    x, y = _images(30), np.arange(30, dtype=np.int32) % 10
    cfg = SpectralConfig(num_bands=3, resample=True, k=12)
    bits = all_coalitions(3)
    full = coalition_log_probs(model_fn, params, x, y, bits, key=KEY, config=cfg,
                               block_size=8)
    part = coalition_log_probs(model_fn, params, x, y, bits[[5, 3]], key=KEY, config=cfg,
                               block_size=8)
    full, part = np.asarray(full), np.asarray(part)
    np.testing.assert_array_equal(part, full[[5, 3]])     # a coalition's draw is its own
    crn = coalition_log_probs(model_fn, params, x[:12], y[:12], bits, key=KEY,
                              config=cfg.replace(resample=False), block_size=8)
    assert np.abs(full[1:] - crn[1:]).max() > 0.01         # other images than the CRN sample
    # empty coalition: black images, on which this bias-free ReLU CNN outputs zero logits
    np.testing.assert_allclose(full[0], np.log(0.1), rtol=1e-6)


def test_sampled_estimator_on_a_model_agrees_with_the_exact_one():
    from subproc import fast_tiny_cnn

    model_fn, params = fast_tiny_cnn(2, (16, 16, 3), logit_scale=10.0)
    x = _images(10)
    y = np.asarray(jax.jit(model_fn)(params, x)).argmax(-1).astype(np.int32)
    exact = importance_statistics(*_coalitions_and_log_probs(spectral_importance(
        model_fn, params, x, y, key=KEY, config=SpectralConfig(num_bands=8))),
        key=KEY, config=SpectralConfig(num_bands=8))
    cfg = SpectralConfig(num_bands=8, estimator="sampled", num_permutations=8)
    sampled = spectral_importance(model_fn, params, x, y, key=KEY, config=cfg)
    assert len(sampled.coalitions) < 2 * 8 * 8 < 256       # only the visited coalitions
    idx = (np.asarray(sampled.coalitions).astype(np.int64) << np.arange(8)).sum(1)
    np.testing.assert_allclose(sampled.values, exact.values[idx], atol=1e-6)
    # the pipeline's estimate is the permutation estimator of the exact game's values
    plan = permutation_plan(8, num_permutations=8, key=KEY)
    ref = permutation_shapley(plan, exact.values[idx])
    np.testing.assert_allclose(sampled.shapley, ref.values, atol=1e-6)
    np.testing.assert_allclose(sampled.shapley_se, ref.se, atol=1e-6)
    # M = 16 on a 16 x 16 image (one-bin bands) runs through the same pipeline
    big_cfg = SpectralConfig(num_bands=16, estimator="sampled", num_permutations=2)
    big = spectral_importance(model_fn, params, x, y, key=KEY, config=big_cfg)
    assert big.shapley.shape == (16,) and np.isfinite(big.shapley_se).all()
    # efficiency, on the float64 statistics of the same log-probabilities (the result's
    # jax arrays are those statistics rounded to float32)
    big = importance_statistics(*_coalitions_and_log_probs(big), key=KEY, config=big_cfg)
    assert abs(big.shapley.sum() - (big.values[-1] - big.values[0])) < 1e-9   # efficiency


def _coalitions_and_log_probs(res):
    return np.asarray(res.coalitions), np.asarray(res.log_probs)
