"""Input-space mode connectivity: analytic toy models with known barriers, the optimisers'
stopping rules against literal single-sample loops, batching, input space, bad input,
compilation."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lst_jax.connectivity import (
    AttackConfig,
    BypassConfig,
    ConnectConfig,
    FVOConfig,
    OptimizerConfig,
    barrier_stats,
    bypass_barrier,
    connect,
    feature_visualization,
    free_optimize,
    model_in_space,
    noise_inputs,
    optimization_attack,
    optimize_inputs,
    path_losses,
    total_variation,
)
from lst_jax.connectivity import optimize as opt_mod
from lst_jax.connectivity.objective import deviation_objective
from lst_jax.connectivity.paths import path_point
from lst_jax.models.wrapper import IMAGENET_NORMALIZATION, Classifier, Normalization
from lst_jax.utils.compiles import compile_count
from subproc import fast_tiny_cnn
from tolerances import float64_atol

SHAPE = (8, 8, 3)


def _cnn(scale=10.0):
    return fast_tiny_cnn(0, SHAPE, 10, logit_scale=scale)


def _images(n, seed=0):
    return np.random.default_rng(seed).uniform(size=(n,) + SHAPE).astype(np.float32)


# ---------------------------------------------------------------- analytic toy models

def linear_softmax(params, x):
    return x.reshape(x.shape[0], -1) @ params["w"] + params["b"][None]


def test_convex_linear_softmax_has_no_barrier():
    """CE of a linear softmax model is convex along any line: the max is an endpoint."""
    rng = np.random.default_rng(1)
    params = {"w": rng.normal(size=(int(np.prod(SHAPE)), 5)).astype(np.float32),
              "b": rng.normal(size=5).astype(np.float32)}
    a, c = _images(6, 1), _images(6, 2)
    labels = np.argmax(linear_softmax(params, jnp.asarray(a)), -1)
    losses = np.asarray(path_losses(linear_softmax, params, a, c, labels, num_points=101))
    bar = barrier_stats(losses)
    assert np.all(bar.gap <= 1e-5 * np.maximum(1.0, bar.max)), bar.gap
    assert np.all(bar.max > 0)
    # the curve itself is convex (second differences >= 0 up to round-off)
    assert np.all(np.diff(losses, 2, axis=1) >= -1e-4)


def bump_model(params, x):
    """Class 0 everywhere except two Gaussian bumps of class 1 next to the line A -> C."""
    z = x.reshape(x.shape[0], -1)
    bump = 0.0
    for m, h in ((params["m1"], params["h1"]), (params["m2"], params["h2"])):
        d = jnp.sum((z - m[None]) ** 2, axis=1)
        bump = bump + h * jnp.exp(-d / (2 * params["s"] ** 2))
    return jnp.stack([jnp.full_like(bump, params["bias"]), bump], axis=-1)


def _bump_case():
    d = 16
    u = np.zeros(d, np.float32)
    u[0], u[1] = 1 / np.sqrt(2), -1 / np.sqrt(2)               # orthogonal to C - A
    ones = np.ones(d, np.float32)
    params = dict(m1=0.3 * ones + 0.1 * u, m2=0.7 * ones + 0.1 * u, h1=np.float32(10.0),
                  h2=np.float32(6.0), s=np.float32(0.3), bias=np.float32(6.0))
    return params, np.zeros((1, 4, 4, 1), np.float32), np.ones((1, 4, 4, 1), np.float32)


BUMP_BYPASS = BypassConfig(lr=0.05, steps=200)


def test_two_bump_barrier_position_and_bypass():
    params, a, c = _bump_case()
    losses = path_losses(bump_model, params, a, c, [0], num_points=101)
    bar = barrier_stats(losses)
    # the higher bump at alpha = 0.3; endpoints at softplus(-6)
    assert bar.index[0] == 30 and bar.alpha[0] == pytest.approx(0.3)
    assert bar.gap[0] > 3.0
    z = np.zeros(16)
    bump = sum(params[h] * np.exp(-np.sum((z - params[m]) ** 2) / (2 * 0.3 ** 2))
               for m, h in (("m1", "h1"), ("m2", "h2")))
    np.testing.assert_allclose(bar.start, np.log1p(np.exp(bump - 6.0)), rtol=1e-4)
    res = connect(bump_model, params, a, c, [0], config=ConnectConfig(
        points=101, segment_points=101, threshold=1e-3, max_depth=2, bypass=BUMP_BYPASS))
    # round 1 bypasses the first bump, round 2 the second one on B' -> C
    assert res.num_vertices[0] == 4
    assert res.vertex_alpha[0, 1] == pytest.approx(0.3)
    assert 0.5 < res.vertex_alpha[0, 2] < 0.9
    assert res.max_final_gap()[0] <= 1e-3
    assert np.nanmax(res.round_gap[1]) > 1e-3         # a secondary barrier existed
    np.testing.assert_array_equal(res.optimized_round, [0, 1])
    assert res.bypass_ce[0] < 0.01 < res.barrier_ce[0]
    np.testing.assert_array_equal(res.vertices[0, 0], a[0])
    np.testing.assert_array_equal(res.vertices[0, 3], c[0])
    np.testing.assert_array_equal(res.vertices[0, 4], c[0])     # padding


def test_recursion_stops_at_depth_and_threshold():
    params, a, c = _bump_case()
    base = ConnectConfig(points=101, segment_points=101, bypass=BUMP_BYPASS)
    kw = lambda **k: dict(config=base.replace(**k))
    r0 = connect(bump_model, params, a, c, [0], **kw(threshold=1e-3, max_depth=0))
    assert r0.num_vertices[0] == 2 and len(r0.optimized_pair) == 0
    assert r0.max_final_gap()[0] > 3.0
    r1 = connect(bump_model, params, a, c, [0], **kw(threshold=1e-3, max_depth=1))
    assert r1.num_vertices[0] == 3                    # depth limit, barrier left over
    assert r1.max_final_gap()[0] > 1e-3
    # threshold above the primary gap: nothing to bypass
    r = connect(bump_model, params, a, c, [0], **kw(threshold=5.0, max_depth=2))
    assert r.num_vertices[0] == 2 and len(r.optimized_pair) == 0
    # threshold above the secondary gap: one round, although depth 2 is allowed
    sec = float(np.nanmax(r1.round_gap[1]))
    r = connect(bump_model, params, a, c, [0], **kw(threshold=2 * sec, max_depth=2))
    assert r.num_vertices[0] == 3 and np.all(r.optimized_round == 0)


# ---------------------------------------------------------------- objectives, space

def test_total_variation_and_objective_reductions():
    z = np.random.default_rng(0).normal(size=(2, 3, 4, 2)).astype(np.float32)
    ref = [np.abs(np.diff(zi, axis=1)).sum() + np.abs(np.diff(zi, axis=0)).sum() for zi in z]
    np.testing.assert_allclose(total_variation(jnp.asarray(z)), ref, rtol=1e-6)
    model, params = _cnn()
    x, k = _images(2), _images(2, 5)
    total, ce = deviation_objective(model, params, jnp.asarray(x), jnp.array([1, 2]),
                                    jnp.asarray(k), jnp.array([0.1, 0.1]),
                                    jnp.array([1e-3, 0.0]))
    mse = ((x - k) ** 2).reshape(2, -1).mean(1)
    tv = np.asarray(total_variation(jnp.asarray(x - k)))
    np.testing.assert_allclose(total, ce + 0.1 * mse + np.array([1e-3, 0]) * tv, rtol=1e-6)


def test_normalised_space_round_trip_and_same_linear_paths():
    norm = IMAGENET_NORMALIZATION
    x = _images(3)
    np.testing.assert_allclose(norm.denormalize(norm(x)), x, atol=1e-6)
    assert Normalization().denormalize(x) is x
    model, params = _cnn()
    clf = Classifier(model.module, norm)
    fn, space = model_in_space(clf, space="normalized")
    assert fn == Classifier(model.module) and hash(fn) == hash(Classifier(model.module))
    z = np.asarray(space.from_pixels(x))
    np.testing.assert_allclose(fn(params, z), clf(params, x), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(space.to_pixels(z), x, atol=1e-6)
    # linear paths are the same curve in both spaces (normalisation is affine)
    a, c, y = x, _images(3, 9), np.array([0, 1, 2])
    lp = path_losses(clf, params, a, c, y, num_points=11)
    ln = path_losses(fn, params, z, space.from_pixels(c), y, num_points=11)
    np.testing.assert_allclose(lp, ln, rtol=1e-4, atol=1e-5)
    fn_p, sp = model_in_space(clf, space="pixel")
    assert fn_p is clf and sp.name == "pixel"
    assert model_in_space(linear_softmax, space="normalized")[0] is linear_softmax
    assert 0.0 <= space.out_of_range_fraction(z * 3.0).min()


# ---------------------------------------------------------------- stopping rules

@functools.lru_cache(maxsize=None)
def _reference_step(model, lr, wd, mse, tv):
    """One jitted Adam step of the authors' loop on one image, and the CE at a point."""
    tx = optax.chain(optax.add_decayed_weights(wd), optax.adam(lr))

    def obj(x, anchor, y, params):
        t, ce = deviation_objective(model, params, x, y, anchor, jnp.array([mse]),
                                    jnp.array([tv]))
        return t.sum(), ce[0]

    @jax.jit
    def step(x, state, anchor, y, params):
        (_, ce), g = jax.value_and_grad(obj, has_aux=True)(x, anchor, y, params)
        u, state = tx.update(g, state, x)
        return x + u, state, ce

    return tx, step, jax.jit(lambda x, anchor, y, params: obj(x, anchor, y, params)[1])


def _reference_loop(model, params, x0, label, *, lr, wd=0.0, mse=0.0, tv=0.0, anchor=None,
                    steps, rule, threshold=-np.inf, min_step=0, trace=None):
    """The authors' loops, literally, for one sample (a Python loop over optax steps); appends
    each step's CE (before the update) to `trace` if given."""
    tx, step, ce_at = _reference_step(model, lr, wd, mse, tv)
    anchor = jnp.asarray((x0 if anchor is None else anchor)[None])
    x = jnp.asarray(x0[None])
    state = tx.init(x)
    y = jnp.array([label])
    best, best_ce, n = None, np.inf, 0
    for i in range(steps):
        x, state, ce = step(x, state, anchor, y, params)
        n += 1
        if trace is not None:
            trace.append(np.asarray(ce))
        if rule == "pre_step" and i >= min_step and float(ce) < threshold:
            break
        if rule == "post_step":
            post = float(ce_at(x, anchor, y, params))
            if post < best_ce:
                best, best_ce = x, post
            if post < threshold:
                break
    return np.asarray(best if rule == "post_step" else x)[0], n


def _reference_loop64(model, params, x0, label, **kw):
    """`_reference_loop` run in float64 (inputs, anchor and parameters cast): the float32 loop's
    round-off, amplified by the optimisation as much as it is, is its difference from this."""
    with jax.enable_x64(True):
        p64 = jax.tree.map(lambda v: np.asarray(v, np.float64), params)
        if kw.get("anchor") is not None:
            kw["anchor"] = np.asarray(kw["anchor"], np.float64)
        kw = {k: (np.float64(v) if isinstance(v, np.floating) else v) for k, v in kw.items()}
        x, n = _reference_loop(model, p64, np.asarray(x0, np.float64), label, **kw)
    assert x.dtype == np.float64
    return x, n


def _assert_rows_close(a, b, ref32, ref64, what):
    """Two float32 results of the same optimisation (batched vs single row, one chunking vs
    another, the batched loop vs the literal loop) agree to a tolerance derived from the
    float32 loop's error against float64 (tests/tolerances.py): batch composition changes the
    float32 summation order of the convolutions like another CPU's vector width does, and
    the optimisation amplifies both alike."""
    tol = float64_atol(ref32, ref64)
    diff = float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))
    assert diff <= tol, f"{what}: max |difference| {diff:.3g} > {tol:.3g}"


def test_stopping_rules_match_literal_loops_and_batched_equals_single():
    model, params = _cnn()
    x0 = _images(4, 3)
    y = np.array([3, 5, 7, 1])
    # free optimisation: thresholds that stop rows at different steps (row 3 never)
    thr = np.array([2.6, 2.1, 0.3, -1.0], np.float32)
    cfg = OptimizerConfig(steps=25, stop="pre_step", record=True, lr=0.05, weight_decay=1e-2)
    res = optimize_inputs(model, params, x0, y, config=cfg.replace(threshold=thr))
    assert len(set(res.steps.tolist())) > 2 and res.steps[3] == 25 and not res.stopped[3]
    for b in range(4):
        ref, n = _reference_loop(model, params, x0[b], y[b], lr=0.05, wd=1e-2, steps=25,
                                 rule="pre_step", threshold=thr[b], trace=(ce32 := []))
        ref64, n64 = _reference_loop64(model, params, x0[b], y[b], lr=0.05, wd=1e-2, steps=25,
                                       rule="pre_step", threshold=thr[b], trace=(ce64 := []))
        assert res.steps[b] == n == n64
        _assert_rows_close(res.x[b], ref, ref, ref64, f"row {b}: batched vs literal loop")
        single = optimize_inputs(model, params, x0[b:b + 1], y[b:b + 1],
                                 config=cfg.replace(threshold=thr[b:b + 1]))
        assert single.steps[0] == res.steps[b]
        # a row alone and beside others: the same semantics, equal up to float32 round-off
        # (which the optimisation may amplify: docs/connectivity.md, "Batching")
        _assert_rows_close(single.x[0], res.x[b], ref, ref64, f"row {b}: single vs batched")
        steps = int(res.steps[b])
        _assert_rows_close(single.trace[:steps, 0], res.trace[:steps, b], ce32, ce64,
                           f"row {b}: CE per step, single vs batched")
        assert np.array_equal(np.isnan(single.trace[:, 0]), np.isnan(res.trace[:, b]))
    # frozen rows: NaN in the trace after their last update
    assert np.all(np.isnan(res.trace[res.steps[0] + 1:, 0]))
    assert np.all(np.isfinite(res.trace[:res.steps[0], 0]))


def test_compacted_batches_equal_uncompacted():
    """Rows finishing at many different steps: shrinking the batch as rows finish (to
    multiples of 2 rows) gives the results of the fixed batch (the unchecked core: one while
    loop, no compaction), and those of other chunkings."""
    model, params = _cnn()
    x0 = _images(12, 7)
    y = np.arange(12) % 10
    thr = np.linspace(0.2, 2.5, 12).astype(np.float32)
    cfg = OptimizerConfig(steps=30, stop="post_step", keep_best=True, record=True, lr=0.05,
                          weight_decay=1e-3, tv_weight=1e-4, threshold=thr)
    fixed = jax.tree.map(np.asarray, opt_mod.optimize_inputs_unchecked(
        model, params, jnp.asarray(x0), jnp.asarray(y), config=cfg,
        anchor=jnp.zeros_like(x0)))
    run = functools.partial(opt_mod.run_batches, model, params, x0, y, cfg.static,
                            cfg.hyper(12), anchor=np.zeros_like(x0), min_batch=2)
    comp, chunked = run(), run(chunk=5)
    assert len(set(fixed.steps.tolist())) > 4            # the rows really stop apart
    # each row's float32 round-off, from the literal loop in float32 and float64
    x32, x64, ce32, ce64 = [], [], [], []
    for b in range(12):
        loop = dict(lr=0.05, wd=1e-3, tv=1e-4, steps=30, rule="post_step", threshold=thr[b],
                    anchor=np.zeros_like(x0[b]))
        ref, _ = _reference_loop(model, params, x0[b], y[b], **loop, trace=(t32 := []))
        ref64, _ = _reference_loop64(model, params, x0[b], y[b], **loop, trace=(t64 := []))
        x32.append(ref), x64.append(ref64), ce32.append(t32), ce64.append(t64)
    for r in (comp, chunked):
        np.testing.assert_array_equal(r.steps, fixed.steps)
        np.testing.assert_array_equal(r.stopped, fixed.stopped)
        np.testing.assert_array_equal(np.isnan(r.trace), np.isnan(fixed.trace))
        for b in range(12):
            _assert_rows_close(r.x[b], fixed.x[b], x32[b], x64[b], f"row {b}: x")
            n = len(ce32[b])
            _assert_rows_close(r.trace[:n, b], fixed.trace[:n, b], ce32[b], ce64[b],
                               f"row {b}: CE per step")
            _assert_rows_close(r.ce[b], fixed.ce[b], ce32[b], ce64[b], f"row {b}: best CE")


def test_attack_min_step_and_fvo_keep_best_match_literal_loops():
    model, params = _cnn()
    k = _images(3, 4)
    targets = np.array([2, 4, 6])
    stop = np.array([2.0, 0.01, 5.0], np.float32)     # row 2 below min_step at once
    # (TV of x - K starts at exact ties, where its L1 subgradient flips sign on round-off:
    # with a large weight Adam amplifies that into different trajectories; 1e-7 is the demo's)
    cfg = AttackConfig(lr=0.05, steps=30, mse_weight=0.1, tv_weight=1e-7, min_step=5)
    res = optimization_attack(model, params, k, targets, stop_loss=stop, config=cfg)
    for b in range(3):
        ref, n = _reference_loop(model, params, k[b], targets[b], lr=0.05, mse=0.1, tv=1e-7,
                                 steps=30, rule="pre_step", threshold=stop[b], min_step=5)
        assert res.steps[b] == n, (b, res.steps, n)
        np.testing.assert_allclose(res.x[b], ref, atol=1e-5)
    assert res.steps[2] == 6      # i > 5 - 1: the first allowed stop, after update 5
    # FVO: post-update CE, keep best, stop below threshold; rows with and without TV
    x0 = 0.01 * np.random.default_rng(0).normal(size=(2,) + SHAPE).astype(np.float32)
    cfg = FVOConfig(lr=0.05, steps=40, weight_decay=1e-2, threshold=0.47,
                    tv_weight=(1e-3, 0.0))
    fvo = feature_visualization(model, params, x0, np.array([4, 4]), config=cfg, record=True)
    for b, tv in enumerate([1e-3, 0.0]):
        ref, n = _reference_loop(model, params, x0[b], 4, lr=0.05, wd=1e-2, tv=tv, steps=40,
                                 rule="post_step", threshold=0.47, anchor=np.zeros_like(x0[b]))
        assert fvo.steps[b] == n
        np.testing.assert_allclose(fvo.x[b], ref, atol=1e-5)
    assert fvo.stopped.any()
    np.testing.assert_allclose(fvo.ce, np.nanmin(fvo.trace[1:], axis=0), rtol=1e-5)


def test_noise_starts_are_per_row_and_seeded():
    noise = lambda seed, n: noise_inputs(key=jax.random.key(seed), num=n, image_shape=SHAPE)
    a = noise(0, 3)
    np.testing.assert_array_equal(a[:2], noise(0, 2))
    assert not np.allclose(a, noise(1, 3))
    assert 0.005 < a.std() < 0.02


# ---------------------------------------------------------------- bypass

def test_exact_bypass_stays_in_the_hyperplane_faithful_drifts():
    model, params = _cnn()
    a, c = _images(3, 1), _images(3, 2)
    y = np.argmax(np.asarray(model(params, jnp.asarray(a))), -1)
    b = path_point(a, c, np.array([5, 6, 7]), 11)
    v = (c - a).reshape(3, -1)

    def rel(x):
        d = (x - b).reshape(3, -1)
        return np.abs((d * v).sum(1)) / (np.linalg.norm(d, axis=1) * np.linalg.norm(v, axis=1))

    ex = bypass_barrier(model, params, a, c, b, y,
                        config=BypassConfig(lr=0.01, steps=100, mode="exact"))
    fa = bypass_barrier(model, params, a, c, b, y, config=BypassConfig(lr=0.01, steps=100))
    ex, fa = jax.tree.map(np.asarray, ex), jax.tree.map(np.asarray, fa)
    assert np.all(np.abs(ex.x - b).max(axis=(1, 2, 3)) > 0.1)     # it did move
    assert np.all(rel(ex.x) < 1e-6), rel(ex.x)
    assert np.all(rel(fa.x) > 1e-4), rel(fa.x)      # Adam leaves the plane (the authors')
    assert np.all(ex.steps == 100)


def test_second_call_does_not_recompile():
    model, params = _cnn()
    a, c = _images(2, 1), _images(2, 2)
    y = np.array([1, 2])
    cfg = BypassConfig(lr=0.01, steps=5)
    bypass_barrier(model, params, a, c, (a + c) / 2, y, config=cfg)
    path_losses(model, params, a, c, y, num_points=11)
    # new data, new traced hyperparameters, same shapes and static settings: no program
    with compile_count() as count:
        bypass_barrier(model, params, c, a, (a + 2 * c) / 3, y[::-1],
                       config=cfg.replace(lr=0.02, mse_weight=0.5))
        path_losses(model, params, c, a, y[::-1], num_points=11)
    assert count.matching("_run_jit") == 0 and count.matching("_evaluate_jit") == 0


# ---------------------------------------------------------------- bad input

def test_bad_input_names_the_argument():
    model, params = _cnn()
    a, c = _images(2), _images(2, 1)
    y = np.array([0, 1])
    with pytest.raises(ValueError, match="images and target_images must have the same shape"):
        path_losses(model, params, a, c[:1], y)
    with pytest.raises(ValueError, match="num_points must be an integer >= 2"):
        path_losses(model, params, a, c, y, num_points=1)
    bad = a.copy()
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="target_images contains NaN"):
        path_losses(model, params, a, bad, y)
    with pytest.raises(ValueError, match="labels must lie in \\[0, 10\\)"):
        path_losses(model, params, a, c, np.array([0, 10]))
    with pytest.raises(ValueError, match="max_depth must be an integer >= 0"):
        ConnectConfig(max_depth=-1)
    with pytest.raises(ValueError, match="segment_points must be an integer >= 2"):
        ConnectConfig(points=10, segment_points=1)
    with pytest.raises(ValueError, match="segment_points must be an integer >= 2"):
        ConnectConfig(points=3)
    with pytest.raises(ValueError, match="images and target_images must have the same shape"):
        connect(model, params, a, c[:, :4], y)
    with pytest.raises(ValueError, match="threshold must be a non-negative"):
        ConnectConfig(threshold=-1.0)
    with pytest.raises(ValueError, match="target_classes must lie in"):
        optimization_attack(model, params, a, np.array([3, -1]))
    with pytest.raises(ValueError, match="images contains NaN"):
        free_optimize(model, params, bad, y)
    with pytest.raises(ValueError, match="labels must lie in"):
        feature_visualization(model, params, a[:1], np.array([12]))
    with pytest.raises(ValueError, match="config.tv_weight has 3 values"):
        feature_visualization(model, params, a, y, config=FVOConfig(tv_weight=(0, 0, 0)))
    with pytest.raises(ValueError, match="stop_loss must be a scalar or have shape"):
        optimization_attack(model, params, a, y, stop_loss=np.ones(3))
    with pytest.raises(ValueError, match="mode must be one of"):
        BypassConfig(mode="approximate")
    with pytest.raises(ValueError, match="steps must be a positive integer"):
        FVOConfig(steps=0)
    with pytest.raises(ValueError, match="images and barrier_points must have the same"):
        bypass_barrier(model, params, a, c, a[:, :4], y)


def test_untrained_resnet18_has_torchvision_init_statistics():
    from lst_jax.connectivity import untrained_model

    model, params = untrained_model("resnet18", key=jax.random.key(0))
    p = params["params"]
    k = np.asarray(p["layer3_0"]["conv1"]["kernel"])             # 3x3x128 -> 256
    assert np.std(k) == pytest.approx(np.sqrt(2.0 / (9 * 256)), rel=0.02)
    fc = np.asarray(p["fc"]["kernel"])
    assert np.abs(fc).max() <= 1 / np.sqrt(512) and np.abs(fc).max() > 0.9 / np.sqrt(512)
    assert np.abs(np.asarray(p["fc"]["bias"])).max() > 0         # torch draws the bias too
    assert np.all(np.asarray(params["batch_stats"]["bn1"]["var"]) == 1.0)
    assert model.normalization.mean == (0.4914, 0.4822, 0.4465)
    with pytest.raises(ValueError, match="arch must be one of"):
        untrained_model("vgg16", key=jax.random.key(0))
