"""The API conventions (docs/design.md), checked mechanically over every public entry point
of `lst_jax.spectral`: settings keyword-only (only the data parameters are positional), a
typed `key` keyword without default where randomness is used (an int or a raw uint32 key is
a TypeError), model-facing results whose leaves are `jax.Array`, `mesh=None` on one device,
and the traceable `_unchecked` core equal to the public function inside `jax.jit`."""

from __future__ import annotations

import inspect

import jax
import numpy as np
import pytest

import lst_jax
from lst_jax import spectral as sp
from subproc import run_python
from tolerances import reduction_atol

SIDE, N = 16, 8
CFG = sp.SpectralConfig(num_bands=2, group_size=4)


def _linear(p, x):
    return x.reshape(len(x), -1) @ p


def _data():
    rng = np.random.default_rng(0)
    w = (0.05 * rng.normal(size=(SIDE * SIDE * 3, 3))).astype(np.float32)
    x = rng.uniform(size=(N, SIDE, SIDE, 3)).astype(np.float32)
    return w, x, np.asarray(_linear(w, x)).argmax(-1).astype(np.int32)


def _model_call(fn, **extra):
    def call(key):
        w, x, y = _data()
        return fn(_linear, w, x, y, key=key, config=CFG, **extra)
    return call


def _lp_call(key):
    w, x, y = _data()
    return sp.coalition_log_probs(_linear, w, x, y, sp.all_coalitions(2), key=key, config=CFG)


def _filter_call(key):
    return sp.coalition_filter(_data()[1], np.array([True, False]), key=key, config=CFG)


def _plan_call(key):
    return sp.permutation_plan(3, num_permutations=2, key=key)


def _sampled_call(key):
    return sp.sampled_shapley(lambda b: b.sum(1) * 1.0, num_players=3, num_permutations=2,
                              key=key)


def _coalitions_call(key):
    return sp.coalitions_for(key=key, config=CFG)


def _summarize_call(key):
    lp = np.log(np.repeat([[0.25], [0.5], [0.4], [0.9]], N, axis=1)).astype(np.float32)
    return sp.summarize(sp.all_coalitions(2), lp, key=key, config=CFG)


# name: (data parameters, call(key) or None where no randomness, model-facing result)
ENTRY_POINTS = {
    "spectral_importance": (("model_fn", "params", "images", "labels"),
                            _model_call(sp.spectral_importance), True),
    "spectral_importance_unchecked": (("model_fn", "params", "images", "labels"),
                                      _model_call(sp.spectral_importance_unchecked), True),
    "coalition_log_probs": (("model_fn", "params", "images", "labels", "coalitions"),
                            _lp_call, True),
    "coalition_log_probs_unchecked": (("model_fn", "params", "images", "labels",
                                       "coalitions"), None, True),
    "coalition_filter": (("images", "coalition"), _filter_call, True),
    "summarize": (("coalitions", "log_probs"), _summarize_call, True),
    "importance_statistics": (("coalitions", "log_probs"), None, False),
    "coalitions_for": ((), _coalitions_call, False),
    "permutation_plan": (("num_players",), _plan_call, False),
    "sampled_shapley": (("value_fn",), _sampled_call, False),
    "permutation_shapley": (("plan", "values"), None, False),
    "exact_shapley": (("values",), None, False),
    "exact_shapley_of": (("value_fn",), None, False),
    "shapley_matrix": (("num_players",), None, False),
    "all_coalitions": (("num_players",), None, False),
    "coalition_index": (("bits",), None, False),
    "band_index_map": (("side",), None, False),
    "band_masks": (("side",), None, False),
    "band_sizes": (("side",), None, False),
    "coalition_mask": (("bits",), None, False),
    "image_spectra": (("images",), None, False),
    "filter_groups": (("spectra", "fill", "keep"), None, False),
    "importance_distribution": (("shapley",), None, False),
    "spectral_robustness_score": (("distribution",), None, False),
    "signed_robustness_score": (("distribution",), None, False),
    "score_range": (("num_bands",), None, False),
}
KEYED = [n for n in ENTRY_POINTS
         if "key" in inspect.signature(getattr(sp, n)).parameters]


def test_every_public_function_is_in_the_table():
    public = {n for n in dir(sp) if not n.startswith("_")
              and inspect.isfunction(getattr(sp, n))}
    assert public == set(ENTRY_POINTS)


@pytest.mark.parametrize("name", sorted(ENTRY_POINTS))
def test_settings_are_keyword_only_and_have_a_doctest(name):
    fn = getattr(sp, name)
    params = inspect.signature(fn).parameters.values()
    positional = tuple(p.name for p in params if p.kind is p.POSITIONAL_OR_KEYWORD)
    assert positional == ENTRY_POINTS[name][0]
    assert not any(p.kind in (p.VAR_POSITIONAL, p.POSITIONAL_ONLY) for p in params)
    assert ">>> " in (fn.__doc__ or ""), f"{name} has no docstring example"


@pytest.mark.parametrize("name", KEYED)
def test_key_is_keyword_without_default_and_typed(name):
    key = inspect.signature(getattr(sp, name)).parameters["key"]
    assert key.kind is key.KEYWORD_ONLY and key.default is key.empty
    call = ENTRY_POINTS[name][1]
    if call is None:
        return
    for bad in (0, jax.random.PRNGKey(0)):
        with pytest.raises(TypeError, match="typed PRNG key"):
            call(bad)


@pytest.mark.parametrize("name", [n for n, e in ENTRY_POINTS.items() if e[2] and e[1]])
def test_model_facing_results_are_jax_arrays(name):
    out = ENTRY_POINTS[name][1](jax.random.key(0))
    leaves = jax.tree.leaves(out)
    assert leaves and all(isinstance(v, jax.Array) for v in leaves), \
        {type(v).__name__ for v in leaves}


def test_config_has_no_seed_and_validates():
    assert "seed" not in sp.SpectralConfig.__dataclass_fields__
    assert CFG.replace(k=4).k == 4
    with pytest.raises(ValueError, match="k"):
        CFG.replace(k=0)
    with pytest.raises(ValueError, match="preset"):
        sp.SpectralConfig.preset("nope")
    with pytest.raises(TypeError, match="config"):
        sp.spectral_importance(_linear, *_data(), key=jax.random.key(0), config={})


def test_exports():
    for name in ("SpectralConfig", "SpectralImportance", "spectral_importance",
                 "spectral_importance_unchecked", "coalition_log_probs", "coalition_filter",
                 "spectral_robustness_score"):
        assert getattr(lst_jax, name) is getattr(sp, name)


def test_unchecked_core_inside_jit_equals_the_public_function():
    w, x, y = _data()
    key = jax.random.key(3)
    cfg = CFG.replace(fill="gaussian")
    ref = sp.spectral_importance(_linear, w, x, y, key=key, config=cfg)
    core = jax.jit(lambda p, x, y: sp.spectral_importance_unchecked(
        _linear, p, x, y, key=key, config=cfg, batch_size=2))(w, x, y)
    # the same filtered images through the same model: the log-probs differ by the
    # float32 round-off of the model's dot products (768 terms), the statistics by the
    # float32 arithmetic of the core (few terms; 1e-5 covers their O(10) ulps at |v| <= 2)
    atol = 2 * reduction_atol(np.abs(x).reshape(N, -1) @ np.abs(w), SIDE * SIDE * 3)
    np.testing.assert_allclose(core.log_probs, ref.log_probs, atol=max(atol, 1e-6))
    for f in ("values", "shapley", "shapley_se", "distribution", "score", "signed_score",
              "score_se", "signed_score_se"):
        np.testing.assert_allclose(getattr(core, f), getattr(ref, f), atol=1e-5, err_msg=f)
    with pytest.raises(TypeError, match="concrete"):
        jax.jit(lambda k: sp.spectral_importance_unchecked(_linear, w, x, y, key=k,
                                                           config=cfg).score)(key)


def test_sampled_core_equals_the_public_function():
    w, x, y = _data()
    key = jax.random.key(1)
    cfg = sp.SpectralConfig(num_bands=3, group_size=4, estimator="sampled",
                            num_permutations=3)
    ref = sp.spectral_importance(_linear, w, x, y, key=key, config=cfg)
    core = sp.spectral_importance_unchecked(_linear, w, x, y, key=key, config=cfg)
    np.testing.assert_array_equal(core.coalitions, ref.coalitions)
    for f in ("shapley", "shapley_se", "distribution", "score"):
        np.testing.assert_allclose(getattr(core, f), getattr(ref, f), atol=1e-5, err_msg=f)
    # another key: other walks, the same compiled statistics program
    from lst_jax.spectral.importance import _jnp_statistics

    n = _jnp_statistics._cache_size()
    other = sp.spectral_importance_unchecked(_linear, w, x, y, key=jax.random.key(2),
                                             config=cfg)
    assert _jnp_statistics._cache_size() == n and other.shapley.shape == (3,)


CHILD = r"""
import jax, numpy as np
from lst_jax.parallel import sharded
from lst_jax import spectral as sp
seen = []
real = sharded.sharded_apply
def spy(fn, params, batch, mesh=None, **kw):
    seen.append(int(mesh.size))
    return real(fn, params, batch, mesh, **kw)
sp.values.sharded_apply = spy
rng = np.random.default_rng(0)
w = (0.05 * rng.normal(size=(16 * 16 * 3, 3))).astype(np.float32)
x = rng.uniform(size=(4, 16, 16, 3)).astype(np.float32)
res = sp.spectral_importance(lambda p, x: x.reshape(len(x), -1) @ p, w, x,
                             np.array([0, 1, 2, 0]), key=jax.random.key(0),
                             config=sp.SpectralConfig(num_bands=2, group_size=2))
emit({"devices": jax.device_count(), "mesh_sizes": seen,
      "result_devices": sorted({d.id for v in jax.tree.leaves(res) for d in v.devices()})})
"""


def test_mesh_none_is_one_device():
    out = run_python(CHILD, devices=2, timeout=300)
    assert out["devices"] == 2
    assert out["mesh_sizes"] and set(out["mesh_sizes"]) == {1}
    assert out["result_devices"] == [0]
