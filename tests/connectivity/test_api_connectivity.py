"""The API conventions (docs/design.md, "API conventions") checked mechanically over every
public entry point of `lst_jax.connectivity`: data positional and every setting keyword-only,
`key` keyword, typed and without a default, results whose array leaves are `jax.Array`,
`mesh=None` on one device; the input optimiser's init/step pair is its batch runner."""

from __future__ import annotations

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lst_jax
from lst_jax import connectivity as conn
from tolerances import float64_atol

SHAPE = (8, 8, 3)


def model_fn(p, x):
    return x.reshape(len(x), -1) @ p


PARAMS = jax.random.normal(jax.random.key(0), (int(np.prod(SHAPE)), 4)) * 0.1
A = jnp.asarray(np.random.default_rng(0).uniform(size=(2,) + SHAPE), jnp.float32)
C = jnp.asarray(np.random.default_rng(1).uniform(size=(2,) + SHAPE), jnp.float32)
Y = jnp.array([1, 2])
KEY = jax.random.key(0)

# name -> (the positional data parameters, a call on tiny inputs or None: signature only)
ENTRY_POINTS = {
    "connect": (("model_fn", "params", "images", "target_images", "labels"),
                lambda **kw: conn.connect(model_fn, PARAMS, A, C, Y, config=conn.ConnectConfig(
                    points=5, max_depth=1, bypass=conn.BypassConfig(steps=3)), **kw)),
    "path_losses": (("model_fn", "params", "images", "target_images", "labels"),
                    lambda **kw: conn.path_losses(model_fn, PARAMS, A, C, Y, num_points=5,
                                                  **kw)),
    "path_losses_unchecked": (("model_fn", "params", "images", "target_images", "labels"),
                              lambda: jax.jit(lambda a, c: conn.path_losses_unchecked(
                                  model_fn, PARAMS, a, c, Y, num_points=5))(A, C)),
    "bypass_barrier": (("model_fn", "params", "images", "target_images", "barrier_points",
                        "labels"),
                       lambda **kw: conn.bypass_barrier(model_fn, PARAMS, A, C, (A + C) / 2, Y,
                                                        config=conn.BypassConfig(steps=3),
                                                        **kw)),
    "optimization_attack": (("model_fn", "params", "images", "target_classes"),
                            lambda **kw: conn.optimization_attack(
                                model_fn, PARAMS, A, Y, stop_loss=1.0,
                                config=conn.AttackConfig(steps=3), **kw)),
    "feature_visualization": (("model_fn", "params", "images", "labels"),
                              lambda **kw: conn.feature_visualization(
                                  model_fn, PARAMS, A, Y, config=conn.FVOConfig(steps=3),
                                  **kw)),
    "free_optimize": (("model_fn", "params", "images", "labels"),
                      lambda **kw: conn.free_optimize(model_fn, PARAMS, A, Y,
                                                      config=conn.FreeConfig(steps=3), **kw)),
    "optimize_inputs": (("model_fn", "params", "images", "labels"),
                        lambda **kw: conn.optimize_inputs(
                            model_fn, PARAMS, A, Y, config=conn.OptimizerConfig(steps=3),
                            **kw)),
    "optimize_inputs_unchecked": (("model_fn", "params", "images", "labels"),
                                  lambda: jax.jit(lambda a: conn.optimize_inputs_unchecked(
                                      model_fn, PARAMS, a, Y,
                                      config=conn.OptimizerConfig(steps=3)))(A)),
    "optimize_inputs_init": (("model_fn", "params", "images", "labels"),
                             lambda: conn.optimize_inputs_init(
                                 model_fn, PARAMS, A, Y, config=conn.OptimizerConfig(steps=3))),
    "optimize_inputs_step": (("model_fn", "params", "state"), None),
    "optimize_inputs_result": (("model_fn", "params", "state"), None),
    "noise_inputs": ((), lambda: conn.noise_inputs(key=KEY, num=2, image_shape=SHAPE)),
    "cross_validate_detector": (("features", "is_adversarial"),
                                lambda: conn.cross_validate_detector(
                                    np.concatenate([np.zeros((4, 2)), np.ones((4, 2))])
                                    + np.random.default_rng(0).normal(0, 0.1, (8, 2)),
                                    np.repeat([0, 1], 4), key=KEY,
                                    config=conn.DetectorConfig(folds=2))),
    "curve_features": (("model_fn", "params", "images", "references", "reference_classes"),
                       lambda **kw: conn.curve_features(model_fn, PARAMS, A, jnp.concatenate(
                           [A, C]), jnp.arange(4), num_points=5, **kw)),
    "select_references": (("model_fn", "params", "images", "labels"),
                          lambda: conn.select_references(
                              model_fn, PARAMS, A, jnp.argmax(model_fn(PARAMS, A), -1))),
    "barrier_stats": (("losses",), lambda: conn.barrier_stats(jnp.array([[0.1, 0.5, 0.2]]))),
    "untrained_model": (("arch",), None),
    "feature_matrix": (("features",), None),
    "total_variation": (("z",), None),
    "model_in_space": (("model_fn",), None),
}
RANDOM = ("noise_inputs", "cross_validate_detector", "untrained_model")


def test_the_table_covers_every_public_function():
    public = {n for n, v in vars(conn).items()
              if inspect.isfunction(v) and not n.startswith("_")}
    assert public == set(ENTRY_POINTS)


def test_every_public_name_is_exported_from_lst_jax():
    for name in ENTRY_POINTS:
        assert getattr(lst_jax, name) is getattr(conn, name)
    for name in ("ConnectConfig", "OptimizerConfig", "ConnectResult", "OptimizeResult",
                 "DetectorResult", "OptimizerState", "Barrier"):
        assert getattr(lst_jax, name) is getattr(conn, name)
    # job functions are not part of the method package
    for name in ("bypass_job", "synthetic_job", "barrier_model_run", "detect_model_run",
                 "BarrierRunConfig", "DetectRunConfig", "BypassRunConfig",
                 "SyntheticRunConfig"):
        assert not hasattr(conn, name), name


@pytest.mark.parametrize("name", sorted(ENTRY_POINTS))
def test_only_data_is_positional(name):
    data, _ = ENTRY_POINTS[name]
    params = inspect.signature(getattr(conn, name)).parameters.values()
    positional = tuple(p.name for p in params if p.kind is p.POSITIONAL_OR_KEYWORD)
    assert positional == data
    assert all(p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) for p in params)
    names = {p.name for p in params}
    if "mesh" in names:
        assert inspect.signature(getattr(conn, name)).parameters["mesh"].default is None
    if "batch_size" in names and not name.endswith("_unchecked"):   # the two size knobs
        assert "memory_budget" in names
    assert not names & {"chunk_size", "min_batch", "evaluate_fn", "validate", "seed"}


@pytest.mark.parametrize("name", RANDOM)
def test_key_is_keyword_typed_and_required(name):
    p = inspect.signature(getattr(conn, name)).parameters["key"]
    assert p.kind is p.KEYWORD_ONLY and p.default is p.empty
    calls = {"noise_inputs": lambda k: conn.noise_inputs(key=k, num=1, image_shape=SHAPE),
             "cross_validate_detector": lambda k: conn.cross_validate_detector(
                 np.zeros((4, 1)), [0, 0, 1, 1], key=k, config=conn.DetectorConfig(folds=2)),
             "untrained_model": lambda k: conn.untrained_model("resnet18", key=k)}
    for bad in (0, jax.random.PRNGKey(0)):
        with pytest.raises(TypeError, match="typed PRNG key"):
            calls[name](bad)


@pytest.mark.parametrize("name", sorted(n for n, (_, call) in ENTRY_POINTS.items() if call))
def test_result_leaves_are_jax_arrays(name):
    out = ENTRY_POINTS[name][1]()
    leaves = jax.tree.leaves(out)
    assert leaves and all(isinstance(v, jax.Array) for v in leaves), \
        {type(v).__name__ for v in leaves}


@pytest.mark.parametrize("name", sorted(n for n, (_, call) in ENTRY_POINTS.items()
                                        if call and "mesh" in inspect.signature(
                                            getattr(conn, n)).parameters))
def test_mesh_none_runs_on_one_device(name):
    for v in jax.tree.leaves(ENTRY_POINTS[name][1](mesh=None)):
        assert len(v.devices()) == 1


def test_detector_folds_follow_the_key_as_the_cli_seed():
    """`random_state_of(key(seed)) == seed`: a CLI seed keeps the folds it had as an int."""
    from lst_jax.connectivity.detect import cross_validate_np, random_state_of

    assert [random_state_of(jax.random.key(s)) for s in (0, 1, 12345)] == [0, 1, 12345]
    x = np.random.default_rng(3).normal(size=(20, 3))
    y = np.repeat([0, 1], 10)
    x[y == 1] += 0.5
    res = conn.cross_validate_detector(x, y, key=jax.random.key(7),
                                       config=conn.DetectorConfig(folds=4))
    ref = cross_validate_np(x, y, random_state=7, config=conn.DetectorConfig(folds=4))
    np.testing.assert_array_equal(res.scores, ref.scores.astype(np.float32))


def test_init_step_loop_is_the_batch_runner():
    """`optimize_inputs_init` + `config.num_iterations` calls of `optimize_inputs_step` give
    `optimize_inputs`'s result (the same iteration), for a rule that stops rows apart."""
    cfg = conn.OptimizerConfig(steps=20, stop="post_step", keep_best=True, record=True,
                               lr=0.01, tv_weight=1e-3, threshold=(0.2, 0.1))
    state = conn.optimize_inputs_init(model_fn, PARAMS, A, Y, config=cfg)
    for _ in range(cfg.num_iterations):
        state = conn.optimize_inputs_step(model_fn, PARAMS, state, config=cfg)
    mine = conn.optimize_inputs_result(model_fn, PARAMS, state, config=cfg)
    ref = conn.optimize_inputs(model_fn, PARAMS, A, Y, config=cfg)
    np.testing.assert_array_equal(mine.steps, ref.steps)
    np.testing.assert_array_equal(mine.stopped, ref.stopped)
    assert len(set(np.asarray(ref.steps).tolist())) == 2      # the rows stop apart
    unchecked = conn.optimize_inputs_unchecked(model_fn, PARAMS, A, Y, config=cfg)
    np.testing.assert_array_equal(unchecked.steps, ref.steps)
    # the same iteration in three programs (a jitted step, the while loop, the compacting
    # runner): float32 round-off, bounded from the same loop's float64 run
    with jax.enable_x64(True):
        x64 = np.asarray(conn.optimize_inputs_unchecked(
            model_fn, np.asarray(PARAMS, np.float64), np.asarray(A, np.float64), Y,
            config=cfg).x)
    assert x64.dtype == np.float64
    tol = float64_atol(np.asarray(ref.x), x64)
    for other in (mine, unchecked):
        assert float(np.abs(np.asarray(other.x) - np.asarray(ref.x)).max()) <= tol


def test_configs_are_frozen_validated_and_replaceable():
    for cfg in (conn.ConnectConfig(), conn.OptimizerConfig(), conn.FVOConfig(),
                conn.BypassConfig(), conn.FreeConfig(), conn.AttackConfig(),
                conn.DetectorConfig()):
        with pytest.raises(Exception):
            cfg.steps = 1          # frozen (steps or not: every field assignment is refused)
        assert cfg.replace() == cfg
    with pytest.raises(ValueError, match="method must be one of"):
        conn.ConnectConfig(method="teleport")
    with pytest.raises(ValueError, match="lr must be non-negative"):
        conn.OptimizerConfig(lr=-1.0)
    with pytest.raises(ValueError, match="tv_weight must be a non-negative"):
        conn.FVOConfig(tv_weight=(0.0, -1.0))
    with pytest.raises(ValueError, match="C must be a positive number"):
        conn.DetectorConfig(C=0)


def test_memory_budget_plans_the_rows_per_call():
    """A budget that holds one row per call runs the rows one at a time (the same rows, up
    to float32 round-off of other batch sizes); one too small for a row is refused."""
    from lst_jax.connectivity.optimize import step_memory

    cfg = conn.OptimizerConfig(steps=5, lr=0.01)
    fixed, per_row = step_memory(model_fn, PARAMS, SHAPE, cfg.static)
    assert fixed >= 0 and per_row >= 4 * int(np.prod(SHAPE))    # at least the iterate
    whole = conn.optimize_inputs(model_fn, PARAMS, A, Y, config=cfg)
    one = conn.optimize_inputs(model_fn, PARAMS, A, Y, config=cfg,
                               memory_budget=fixed + per_row)
    np.testing.assert_array_equal(one.steps, whole.steps)
    with jax.enable_x64(True):     # this loop's float32 round-off, against float64
        x64 = np.asarray(conn.optimize_inputs_unchecked(
            model_fn, np.asarray(PARAMS, np.float64), np.asarray(A, np.float64), Y,
            config=cfg).x)
    tol = float64_atol(np.asarray(whole.x), x64)
    assert float(np.abs(np.asarray(one.x) - np.asarray(whole.x)).max()) <= tol
    with pytest.raises(ValueError, match="memory_budget=.* too small"):
        conn.optimize_inputs(model_fn, PARAMS, A, Y, config=cfg, memory_budget=fixed)
