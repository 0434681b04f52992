"""The API conventions (docs/design.md), checked mechanically over every public function of
`lst_jax.traversal`, `lst_jax.robustness`, `lst_jax.attacks` and `lst_jax.geometry`: settings
keyword-only (only the data parameters are positional), a typed `key` keyword (an int or a
raw uint32 key is a TypeError), model-facing results whose leaves are `jax.Array`, `mesh=None`
on one device, and the `_unchecked` cores traceable inside `jax.jit`."""

from __future__ import annotations

import inspect

import jax
import numpy as np
import pytest

import lst_jax
from lst_jax import attacks, geometry, robustness, traversal
from subproc import run_python

SIDE, N, K = 8, 4, 4
LST = traversal.LSTConfig(iters=3, log_step=2)
PGD = attacks.PGDAttackConfig(eps=8 / 255, steps=2)
CORR = robustness.CorruptionConfig(corruptions=("contrast", "gaussian_noise"),
                                   severities=(1,))
ROB = robustness.RobustnessConfig(pgd_radii=(8,), headline_radius=8, pgd_steps=2,
                                  corruptions=("contrast",), severities=(1,))
WIDTH = geometry.WidthConfig(radii=(0.5,), num_dirs=2)


def _linear(p, x):
    return x.reshape(len(x), -1) @ p


def _data():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(SIDE * SIDE * 3, K)).astype(np.float32)
    x = rng.uniform(size=(N, SIDE, SIDE, 3)).astype(np.float32)
    return w, x, np.asarray(_linear(w, x)).argmax(-1).astype(np.int32)


def _pair_call(fn, **kw):
    def call(key):
        w, x, y = _data()
        return fn(_linear, w, x, x[::-1], y, key=key, **kw)
    return call


def _model_call(fn, **kw):
    def call(key):
        w, x, y = _data()
        return fn(_linear, w, x, y, key=key, **kw)
    return call


def _step_call(key):
    w, x, y = _data()
    state = traversal.lst_init(_linear, w, x, x[::-1], y, key=key, config=LST)
    return traversal.lst_step(_linear, w, state, config=LST)


def _widths_call(key):
    w, x, y = _data()
    d = geometry.width_directions(_linear, w, x, x[::-1], y)
    return geometry.path_widths(_linear, w, x, d, y, key=key, config=WIDTH)


def _no_key(fn):
    return lambda key: fn()


def _hull():
    w, x, y = _data()
    return geometry.hull_confidences(_linear, w, x, x[::-1], x * 0.5, y,
                                     grid=geometry.triangle_grid(n=2))


def _paths():
    w, x, y = _data()
    return geometry.linear_path_confidences(_linear, w, x, x[::-1], y, num_points=3)


MODEL = ("model_fn", "params", "images", "labels")
PAIRS = ("model_fn", "params", "images", "target_images", "labels")
# module: {name: (data parameters, call(key) or None, model-facing result)}
ENTRY_POINTS = {
    traversal: {
        "level_set_traversal": (PAIRS, _pair_call(traversal.level_set_traversal, config=LST),
                                True),
        "level_set_traversal_unchecked": (
            PAIRS, _pair_call(traversal.level_set_traversal_unchecked, config=LST), True),
        "lst_init": (PAIRS, _pair_call(traversal.lst_init, config=LST), True),
        "lst_step": (("model_fn", "params", "state"), _step_call, True),
        "record_of": (("state",), None, True),
        "reference_log_points": (("result",), None, True),
        "forward_backward": (MODEL, None, True),
        "project_orthogonal": (("g", "v"), None, False),
        "preset": (("name",), None, False),
    },
    robustness: {
        "accuracy": (MODEL, _no_key(lambda: robustness.accuracy(_linear, *_data())), True),
        "pgd_accuracy": (MODEL, _model_call(robustness.pgd_accuracy, config=PGD), True),
        "pgd_examples": (MODEL, _model_call(robustness.pgd_examples, config=PGD), True),
        "corruption_accuracy": (MODEL, _model_call(robustness.corruption_accuracy,
                                                   config=CORR), True),
        "robustness_measurements": (MODEL, _model_call(robustness.robustness_measurements,
                                                       config=ROB), True),
        "corrupt": (("images",), lambda key: robustness.corrupt(
            _data()[1], name="gaussian_noise", severity=2, key=key), True),
        "corruption_key": ((), lambda key: robustness.corruption_key(
            key=key, name="contrast", severity=1), False),
        "corruption_errors": (("errors", "baseline_errors"), None, False),
        "mean_corruption_error": (("errors", "baseline_errors"), None, False),
        "relative_mean_corruption_error": (("errors", "clean_error", "baseline_errors",
                                            "baseline_clean_error"), None, False),
    },
    attacks: {
        "pgd_linf": (MODEL, _model_call(attacks.pgd_linf, config=PGD), True),
        "pgd_linf_unchecked": (MODEL, _model_call(attacks.pgd_linf_unchecked, config=PGD),
                               True),
    },
    geometry: {
        "hull_confidences": (("model_fn", "params", "images", "vertex1", "vertex2", "labels"),
                             _no_key(_hull), True),
        "multi_hull_confidences": (("model_fn", "params", "images", "outputs", "labels"),
                                   None, True),
        "linear_path_confidences": (PAIRS, _no_key(_paths), True),
        "path_widths": (("model_fn", "params", "images", "direction", "labels"),
                        _widths_call, True),
        "width_directions": (PAIRS, None, True),
        "evaluate_combinations": (("model_fn", "params", "vertices", "weights", "labels"),
                                  None, True),
        "evaluate_in_chunks": (("model_fn", "params", "probe_fn", "data", "total"), None,
                               True),
        "combination_probes": (("data", "idx"), None, False),
        "triangle_statistics": (("conf",), None, True),
        "per_source_statistics": (("tri_stats",), None, True),
        "triangle_grid": ((), None, False),
        "round_pairs": (("rounds",), None, False),
        "triangle_embedding": (("x0", "x1", "x2"), None, False),
        "embed_grid": (("coords",), None, False),
        "stat_names": ((), None, False),
    },
}
ALL = [(m, n) for m, table in ENTRY_POINTS.items() for n in table]
IDS = [f"{m.__name__.split('.')[-1]}.{n}" for m, n in ALL]
# pgd_linf draws random numbers only for its random start: `key=None` with `start=`
OPTIONAL_KEY = {"pgd_linf", "pgd_linf_unchecked"}


@pytest.mark.parametrize("module", list(ENTRY_POINTS), ids=lambda m: m.__name__)
def test_every_public_function_is_in_the_table(module):
    public = {n for n in dir(module) if not n.startswith("_")
              and inspect.isfunction(getattr(module, n))}
    assert public == set(ENTRY_POINTS[module])


@pytest.mark.parametrize("module,name", ALL, ids=IDS)
def test_settings_are_keyword_only_and_have_a_doctest(module, name):
    fn = getattr(module, name)
    params = inspect.signature(fn).parameters.values()
    positional = tuple(p.name for p in params if p.kind is p.POSITIONAL_OR_KEYWORD)
    assert positional == ENTRY_POINTS[module][name][0]
    assert not any(p.kind in (p.VAR_POSITIONAL, p.POSITIONAL_ONLY) for p in params)
    assert ">>> " in (fn.__doc__ or ""), f"{name} has no docstring example"
    assert "chunk_size" not in inspect.signature(fn).parameters   # the size knob: batch_size


KEYED = [(m, n) for m, n in ALL if "key" in inspect.signature(getattr(m, n)).parameters]


@pytest.mark.parametrize("module,name", KEYED,
                         ids=[f"{m.__name__.split('.')[-1]}.{n}" for m, n in KEYED])
def test_key_is_keyword_and_typed(module, name):
    key = inspect.signature(getattr(module, name)).parameters["key"]
    assert key.kind is key.KEYWORD_ONLY
    assert (key.default is None) if name in OPTIONAL_KEY else (key.default is key.empty)
    call = ENTRY_POINTS[module][name][1]
    if call is None or name.endswith("_unchecked"):
        return
    for bad in (0, jax.random.PRNGKey(0)):
        with pytest.raises(TypeError, match="typed"):
            call(bad)


MODEL_FACING = [(m, n) for m, n in ALL if ENTRY_POINTS[m][n][2] and ENTRY_POINTS[m][n][1]]


@pytest.mark.parametrize("module,name", MODEL_FACING,
                         ids=[f"{m.__name__.split('.')[-1]}.{n}" for m, n in MODEL_FACING])
def test_model_facing_results_are_jax_arrays(module, name):
    out = ENTRY_POINTS[module][name][1](jax.random.key(0))
    leaves = jax.tree.leaves(out)
    assert leaves and all(isinstance(v, jax.Array) for v in leaves), \
        {type(v).__name__ for v in leaves}


def test_configs_validate_replace_and_hold_no_seed():
    for cfg in (LST, PGD, CORR, ROB, WIDTH):
        assert "seed" not in type(cfg).__dataclass_fields__
        assert cfg.replace() == cfg
    for make, field in ((lambda: LST.replace(iters=0), "iters"),
                        (lambda: PGD.replace(steps=0), "steps"),
                        (lambda: PGD.replace(eps=2.0), "eps"),
                        (lambda: CORR.replace(table="svhn"), "table"),
                        (lambda: ROB.replace(headline_radius=4), "headline_radius"),
                        (lambda: WIDTH.replace(num_dirs=1), "num_dirs")):
        with pytest.raises(ValueError, match=field):
            make()
    assert traversal.LSTConfig.preset("paper") == traversal.preset("paper")
    w, x, y = _data()
    with pytest.raises(TypeError, match="config"):
        traversal.level_set_traversal(_linear, w, x, x, y, key=jax.random.key(0), config={})
    with pytest.raises(TypeError, match="config"):
        robustness.pgd_accuracy(_linear, w, x, y, key=jax.random.key(0), config={})


def test_exports():
    for module, names in ((traversal, ("LSTConfig", "LSTHyper", "LSTState", "LSTResult",
                                       "Pairs", "level_set_traversal",
                                       "level_set_traversal_unchecked", "lst_init",
                                       "lst_step")),
                          (robustness, ("RobustnessConfig", "CorruptionConfig", "accuracy",
                                        "pgd_accuracy", "corruption_accuracy",
                                        "robustness_measurements")),
                          (attacks, ("PGDAttackConfig", "pgd_linf")),
                          (geometry, ("WidthConfig", "hull_confidences", "path_widths",
                                      "linear_path_confidences"))):
        for name in names:
            assert getattr(lst_jax, name) is getattr(module, name), name


def test_own_loop_of_init_and_step_equals_the_runner():
    """The optax shape: lst_init + cfg.iters x lst_step (in a user's jit) reproduces the
    runner's final images and last record (same step arithmetic; float32 round-off of a
    differently fused program at most)."""
    w, x, y = _data()
    key = jax.random.key(1)
    cfg = LST.replace(iters=5, adv_pert=True)
    res = traversal.level_set_traversal(_linear, w, x, x[::-1], y, key=key, config=cfg)
    state = traversal.lst_init(_linear, w, x, x[::-1], y, key=key, config=cfg)
    np.testing.assert_array_equal(state.x, res.start)
    step = jax.jit(lambda s: traversal.lst_step(_linear, w, s, config=cfg))
    for _ in range(cfg.iters):
        state = step(state)
    np.testing.assert_allclose(state.x, res.images, atol=1e-6)
    rec = traversal.record_of(state)
    np.testing.assert_array_equal(rec.accepted, res.record.accepted[-1])
    np.testing.assert_allclose(rec.conf_source, res.record.conf_source[-1], atol=1e-6)
    assert not hasattr(state, "step")


def test_unchecked_cores_inside_jit_equal_the_public_functions():
    w, x, y = _data()
    key = jax.random.key(2)
    ref = traversal.level_set_traversal(_linear, w, x, x[::-1], y, key=key, config=LST)
    core = jax.jit(lambda p, a: traversal.level_set_traversal_unchecked(
        _linear, p, a, a[::-1], y, key=key, config=LST))(w, x)
    for a, b in zip(jax.tree.leaves(ref), jax.tree.leaves(core)):
        np.testing.assert_array_equal(a, b)
    adv = attacks.pgd_linf(_linear, w, x, y, key=key, config=PGD)
    adv_core = jax.jit(lambda a, eps: attacks.pgd_linf_unchecked(
        _linear, w, a, y, key=key, config=PGD.replace(eps=eps)))(x, PGD.eps)
    np.testing.assert_array_equal(adv, adv_core)


CHILD = r"""
import jax, jax.numpy as jnp, numpy as np
from lst_jax import geometry, robustness, traversal
from lst_jax.parallel import sharded
seen = []
real = sharded.sharded_apply
def spy(fn, params, batch, mesh=None, **kw):
    seen.append(int(mesh.size))
    return real(fn, params, batch, mesh, **kw)
sharded.sharded_apply = spy
import lst_jax.parallel as par
import lst_jax.parallel.evaluators as ev
par.sharded_apply = ev.sharded_apply = spy
rng = np.random.default_rng(0)
w = rng.normal(size=(8 * 8 * 3, 4)).astype(np.float32)
x = rng.uniform(size=(4, 8, 8, 3)).astype(np.float32)
y = np.asarray(x.reshape(4, -1) @ w).argmax(-1)
lin = lambda p, a: a.reshape(len(a), -1) @ p
key = jax.random.key(0)
outs = [
    traversal.level_set_traversal(lin, w, x, x[::-1], y, key=key,
                                  config=traversal.LSTConfig(iters=2)),
    robustness.accuracy(lin, w, x, y),
    robustness.pgd_accuracy(lin, w, x, y, key=key,
                            config=robustness.PGDAttackConfig(steps=1)),
    robustness.corruption_accuracy(lin, w, x, y, key=key, config=robustness.CorruptionConfig(
        corruptions=("contrast",), severities=(1,))),
    geometry.hull_confidences(lin, w, x, x[::-1], x * 0.5, y, memory_budget="64MiB"),
]
emit({"devices": jax.device_count(), "mesh_sizes": seen,
      "result_devices": sorted({d.id for v in jax.tree.leaves(outs) for d in v.devices()})})
"""


def test_mesh_none_is_one_device():
    out = run_python(CHILD, devices=2, timeout=300)
    assert out["devices"] == 2
    assert out["mesh_sizes"] and set(out["mesh_sizes"]) == {1}
    assert out["result_devices"] == [0]
