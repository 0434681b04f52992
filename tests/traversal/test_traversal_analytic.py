"""LST on models whose level sets are known, and its basic invariants."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lst_jax.traversal import LSTConfig, level_set_traversal, project_orthogonal

SHAPE = (8, 8, 3)
D = int(np.prod(SHAPE))


def logistic_fn(params, x):
    """Binary logistic regression: logits (0, w.x + b); level sets are hyperplanes."""
    z = x.reshape(x.shape[0], -1) @ params["w"] + params["b"]
    return jnp.stack([jnp.zeros_like(z), z], axis=-1)


def constant_fn(params, x):
    """Logits independent of the input: the gradient is exactly zero."""
    return jnp.broadcast_to(params["logits"], (x.shape[0], params["logits"].shape[0]))


def _logistic_setup(b=4, seed=0):
    k = jax.random.split(jax.random.key(seed), 3)
    params = {"w": jax.random.normal(k[0], (D,)), "b": jnp.float32(0.1)}
    xs = jax.random.uniform(k[1], (b,) + SHAPE, minval=0.35, maxval=0.65)
    xt = jax.random.uniform(k[2], (b,) + SHAPE, minval=0.35, maxval=0.65)
    z = logistic_fn(params, xs)[:, 1]
    labels = (z > 0).astype(jnp.int32)
    return params, xs, xt, labels


@pytest.mark.parametrize("noise", [0.0, 2 / 255])
def test_logistic_level_set_is_held_and_target_approached(noise):
    params, xs, xt, labels = _logistic_setup()
    cfg = LSTConfig(step_size=0.05, iters=100, pthresh=0.05, noise=noise)
    res = level_set_traversal(logistic_fn, params, xs, xt, labels,
                              key=jax.random.key(1), config=cfg)
    conf = np.asarray(res.record.conf_source)
    conf0 = np.asarray(res.initial.conf_source)
    assert np.max(np.abs(conf - conf0[None])) <= 1e-5
    dist = np.asarray(res.record.dist_target)
    d0 = np.asarray(res.initial.dist_target)
    assert np.all(np.diff(np.concatenate([d0[None], dist]), axis=0) <= 1e-5)
    # What remains is the component along w, which the traversal may not remove.
    w = np.asarray(params["w"])
    x0 = np.asarray(res.start).reshape(len(xs), -1)
    resid = np.abs((np.asarray(xt).reshape(len(xs), -1) - x0) @ w) / np.linalg.norm(w)
    assert np.all(dist[-1] <= resid + 0.01 * d0)
    assert np.all(dist[-1] < 0.5 * d0)
    assert np.all(np.asarray(res.record.accepted))


def test_projection_is_orthogonal(key):
    g, v = jax.random.normal(key, (2,) + SHAPE)
    p = project_orthogonal(g, v)
    assert abs(float(jnp.vdot(p, g))) <= 1e-4 * float(jnp.linalg.norm(g) * jnp.linalg.norm(v))
    np.testing.assert_allclose(project_orthogonal(g, g), 0.0, atol=1e-5)


def test_zero_step_returns_noised_source():
    params, xs, xt, labels = _logistic_setup()
    cfg = LSTConfig(step_size=0.0, iters=10)
    res = level_set_traversal(logistic_fn, params, xs, xt, labels,
                              key=jax.random.key(2), config=cfg)
    np.testing.assert_array_equal(np.asarray(res.images), np.asarray(res.start))
    noise = np.asarray(res.start) - np.asarray(xs)
    assert np.max(np.abs(noise)) <= 2 / 255 + 1e-7
    assert np.max(np.abs(noise)) > 1 / 255  # the start really is noised


def test_zero_noise_start_is_source():
    params, xs, xt, labels = _logistic_setup()
    res = level_set_traversal(logistic_fn, params, xs, xt, labels, key=jax.random.key(2),
                              config=LSTConfig(iters=1, noise=0.0))
    np.testing.assert_array_equal(np.asarray(res.start), np.asarray(xs))


@pytest.mark.parametrize("adv_pert", [False, True])
def test_outputs_stay_in_unit_box(adv_pert):
    k = jax.random.split(jax.random.key(3), 3)
    params = {"w": 50.0 * jax.random.normal(k[0], (D,)), "b": jnp.float32(0.0)}
    xs = jax.random.uniform(k[1], (4,) + SHAPE)
    xt = (jax.random.uniform(k[2], (4,) + SHAPE) > 0.5).astype(jnp.float32)  # box corners
    labels = jnp.argmax(logistic_fn(params, xs), -1).astype(jnp.int32)
    cfg = LSTConfig(step_size=0.5, iters=30, pthresh=1.0, adv_pert=adv_pert,
                    adv_step_size=0.1, log_images=True, log_step=7)
    res = level_set_traversal(logistic_fn, params, xs, xt, labels,
                              key=jax.random.key(4), config=cfg)
    for a in (res.images, res.logged_images, res.start):
        a = np.asarray(a)
        assert a.min() >= 0.0 and a.max() <= 1.0
    assert res.logged_images.shape == (5, 4) + SHAPE   # ceil(30 / 7)


@pytest.mark.parametrize("adv_pert", [False, True])
def test_zero_gradient_gives_no_nan(adv_pert):
    params = {"logits": jnp.array([0.0, 50.0, -3.0])}
    k = jax.random.split(jax.random.key(5))
    xs = jax.random.uniform(k[0], (3,) + SHAPE)
    xt = jax.random.uniform(k[1], (3,) + SHAPE)
    labels = jnp.array([1, 1, 1], jnp.int32)
    cfg = LSTConfig(step_size=0.1, iters=20, adv_pert=adv_pert)
    res = level_set_traversal(constant_fn, params, xs, xt, labels,
                              key=jax.random.key(6), config=cfg)
    assert np.all(np.isfinite(np.asarray(res.images)))
    # With g = 0 the projection keeps all of v: a straight line toward the target.
    d0 = np.asarray(res.initial.dist_target)
    np.testing.assert_allclose(np.asarray(res.record.dist_target[-1]), d0 * 0.9 ** 20,
                               rtol=1e-4)


def test_rejected_samples_are_unchanged_bit_for_bit():
    """A negative threshold rejects every step: x stays exactly at the start."""
    params, xs, xt, labels = _logistic_setup()
    cfg = LSTConfig(step_size=0.3, iters=15, pthresh=-1.0)
    res = level_set_traversal(logistic_fn, params, xs, xt, labels,
                              key=jax.random.key(7), config=cfg)
    np.testing.assert_array_equal(np.asarray(res.images), np.asarray(res.start))
    assert not np.any(np.asarray(res.record.accepted))


def test_adversarial_term_raises_confidence():
    """Subtracting the accumulated CE gradient is descent on -log p: confidence goes up."""
    params, xs, xt, labels = _logistic_setup()
    cfg = LSTConfig(step_size=0.0, iters=20, adv_pert=True, adv_step_size=0.01, noise=0.0)
    res = level_set_traversal(logistic_fn, params, xs, xt, labels,
                              key=jax.random.key(8), config=cfg)
    assert np.all(np.asarray(res.record.conf_source[-1]) > np.asarray(res.initial.conf_source))
