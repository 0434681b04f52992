"""LST numerics: the cancellation-free CE gradient, float64 ground-truth runs, and float32
trajectories that stay closer to float64 than the reference's arithmetic does."""

import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "experiments"))

import numerics  # noqa: E402  (experiments/numerics.py)

from lst_jax.traversal import LSTConfig, level_set_traversal  # noqa: E402
from lst_jax.traversal import run as run_mod  # noqa: E402
from lst_jax.traversal.step import ce_cotangent, forward_backward, input_gradient  # noqa: E402


def _exact_cotangent(logits, labels):
    """softmax - onehot in float64 numpy, the true-class entry as minus the sum of the others."""
    z = np.asarray(logits, np.float64)
    lp = z - z.max(1, keepdims=True)
    lp = lp - np.log(np.exp(lp).sum(1, keepdims=True))
    c = np.exp(lp)
    rows = np.arange(len(z))
    c[rows, labels] = 0.0
    c[rows, labels] = -c.sum(1)
    return c


def test_cotangent_keeps_the_true_class_term_when_p_y_rounds_to_one():
    logits = jnp.asarray([[30.0, 0.0, -2.0], [3.0, 1.0, 0.0], [90.0, 0.0, 1.0]], jnp.float32)
    labels = jnp.asarray([0, 1, 0])
    probs, unit, scale = ce_cotangent(logits, labels)
    exact = _exact_cotangent(logits, labels)
    rest = -exact[np.arange(3), labels]
    # the direction is exact even where 1 - p_y (3e-39) is below float32's normal range ...
    np.testing.assert_allclose(np.asarray(unit, np.float64), exact / rest[:, None], rtol=1e-5)
    # ... and so is the magnitude where float32 can hold it (XLA flushes subnormals to 0)
    got = np.asarray(unit, np.float64) * np.asarray(scale, np.float64)[:, None]
    np.testing.assert_allclose(got[:2], exact[:2], rtol=1e-5, atol=0)
    assert 0.0 <= float(scale[2]) < 1e-37
    np.testing.assert_array_equal(np.asarray(unit)[np.arange(3), labels], -1.0)
    assert np.all(np.abs(np.asarray(unit)) <= 1.0)
    # The reference's arithmetic loses the true-class entry: p_y rounds to 1 in float32.
    _, ref, ref_scale = ce_cotangent(logits, labels, reference_numerics=True)
    assert float(ref[0, 0]) == 0.0 and float(ref[2, 0]) == 0.0 and exact[0, 0] < -1e-13
    np.testing.assert_array_equal(ref_scale, 1.0)
    np.testing.assert_allclose(np.asarray(ref[1]), exact[1], rtol=1e-6)


def test_gradient_direction_and_scale_equal_the_float64_gradient():
    model_fn, params = numerics.small_cnn(6.0)
    from lst_jax.data.digits import load_digits32

    x, _ = load_digits32("test")
    x = jnp.asarray(x[:16])
    y = jnp.argmax(model_fn(params, x), -1)
    with jax.enable_x64(True):
        p64 = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), params)
        x64 = jnp.asarray(x, jnp.float64)
        # J^T (softmax - onehot) with the cotangent from float64 log space: autodiff of the
        # float64 CE would itself round p_y to 1 where 1 - p_y < 1e-16
        logits64, vjp = jax.vjp(lambda z: model_fn(p64, z), x64)
        (g64,) = vjp(jnp.asarray(_exact_cotangent(np.asarray(logits64), np.asarray(y))))
        g64 = np.asarray(g64)
    _, d, s = input_gradient(model_fn, params, x, y)
    _, d_ref, _ = input_gradient(model_fn, params, x, y, reference_numerics=True)
    g = np.asarray(d, np.float64) * np.asarray(s, np.float64)[:, None, None, None]
    norm = lambda a: np.sqrt(np.sum(a.reshape(len(a), -1) ** 2, axis=1))
    rel = norm(g - g64) / norm(g64)
    big = norm(g64) > 1e-30          # magnitudes float32 holds with full precision
    assert big.sum() >= 8 and np.all(rel[big] < 1e-4), (rel, norm(g64))
    # the reference's direction is wrong where p_y rounds to 1 (cosine far from 1 there)
    cos = lambda a, b: np.sum((a * b).reshape(len(a), -1), 1) / (norm(a) * norm(b) + 1e-300)
    assert np.min(cos(np.asarray(d_ref, np.float64), g64)) < 0.99
    assert np.min(cos(np.asarray(d, np.float64), g64)) > 1 - 1e-6
    # forward_backward multiplies it out
    _, fb = forward_backward(model_fn, params, x, y)
    np.testing.assert_allclose(np.asarray(fb), g.astype(np.float32), rtol=1e-5, atol=1e-30)


def test_float64_mode_runs_in_float64_and_does_not_recompile():
    model_fn, params = numerics.small_cnn(6.0)
    rng = np.random.default_rng(0)
    xs, xt = (rng.uniform(size=(4, 32, 32, 3)).astype(np.float32) for _ in range(2))
    ys = np.asarray(jnp.argmax(model_fn(params, xs), -1))
    cfg = LSTConfig(iters=3, log_step=3)
    r = level_set_traversal(model_fn, params, xs, xt, ys, key=jax.random.key(0), config=cfg,
                            precision="float64")
    assert isinstance(r.images, jax.Array) and r.images.dtype == np.float64   # jax arrays
    assert r.record.conf_source.dtype == np.float64
    n = run_mod._traverse_jit._cache_size()
    level_set_traversal(model_fn, params, xs[::-1], xt, ys[::-1], key=jax.random.key(1), config=cfg,
                        precision="float64")
    assert run_mod._traverse_jit._cache_size() == n
    r32 = level_set_traversal(model_fn, params, xs, xt, ys, key=jax.random.key(0), config=cfg)
    assert r32.images.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(r32.images), r.images, atol=1e-5)
    with pytest.raises(ValueError, match="precision"):
        level_set_traversal(model_fn, params, xs, xt, ys, key=jax.random.key(0), config=cfg,
                            precision="float16")


@pytest.fixture(scope="module")
def measured():
    """`numerics.measure` of both models on the 32 pairs of the README's table (no torch)."""
    return {name: numerics.measure(name, pairs=32, with_torch=False)
            for name in ("digits_resnet", "small_cnn")}


@pytest.mark.parametrize("name", ["digits_resnet", "small_cnn"])
def test_float32_gradient_is_closer_to_float64_than_the_reference_arithmetic(measured, name):
    """Per step, at the float64 trajectory's iterates x_10, x_50, x_100 (rounded to float32):
    the relative error of the float32 input gradient against float64. The default arithmetic
    beats the reference's on the median and the mean at every count (digits ResNet: the median
    by more than 3x; small CNN, where the reference's direction is wrong: the max by more than
    1000x), and on no pair is it worse beyond round-off (a pair whose float32 forward takes
    another ReLU branch than float64 at the same input has the same large error in both).
    """
    r = measured[name]
    valid = np.asarray(r["valid_mask"])
    if name == "small_cnn":
        assert r["saturated"] >= 3              # the regime the fix is for
    for k in ("10", "50", "100"):
        new = r["step_errors"]["lst_jax"][k]
        ref = r["step_errors"]["lst_jax_reference_numerics"][k]
        assert new["mean"] < ref["mean"], (k, new["mean"], ref["mean"])
        factor = 3.0 if name == "digits_resnet" else 1.0
        assert factor * new["median"] < ref["median"], (k, new["median"], ref["median"])
        if name == "small_cnn":
            assert 1000 * new["max"] < ref["max"], (k, new["max"], ref["max"])
        e_new = np.asarray(new["per_pair"])[valid]
        e_ref = np.asarray(ref["per_pair"])[valid]
        worse = e_new > 1.01 * e_ref + 1e-5
        assert not worse.any(), (k, e_new[worse], e_ref[worse])


def test_float32_trajectories_stay_closer_on_saturated_sources(measured):
    """Whole trajectories, per pair max |x_f32 - x_f64| over pixels (the README's table): on
    the small CNN (saturated sources) the default beats the reference's arithmetic on the max
    (by more than 10x), the mean and the median at 10, 50 and 100 iterations.

    Not asserted on the unsaturated digits ResNet: there both float32 trajectories are
    dominated by events of the model's own float32 arithmetic (a ReLU pre-activation within
    round-off of 0 takes the other branch), and which arithmetic ends closer differs with the
    pair set and the CPU (docs/lst.md, "Numerics"); its per-step error is asserted above.
    """
    r = measured["small_cnn"]
    for k in ("10", "50", "100"):
        new, ref = r["runs"]["lst_jax"][k], r["runs"]["lst_jax_reference_numerics"][k]
        assert new["flipped"] == ref["flipped"] == 0, k
        assert new["max"] < 0.1 * ref["max"], (k, new["max"], ref["max"])
        assert new["mean"] < ref["mean"], (k, new["mean"], ref["mean"])
        assert new["median"] < ref["median"], (k, new["median"], ref["median"])


def test_float64_ground_truth_equals_the_pytorch_loop_in_float64():
    """Two independent float64 implementations of the same arithmetic agree; the PyTorch
    loop (softmax - onehot) differs from the exact trajectory where the small CNN's sources
    are saturated beyond float64's spacing near 1."""
    pytest.importorskip("torch")
    r = numerics.measure("small_cnn", pairs=8, iters=(10, 20))
    assert r["torch64_same_decisions_as_jax64_reference_numerics"]
    assert max(r["torch64_vs_jax64_reference_numerics"].values()) < 1e-10
    assert set(r["runs"]) == {"lst_jax", "lst_jax_reference_numerics", "pytorch"}
