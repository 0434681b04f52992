"""Fused vs plain step, compile-once, jit vs no-jit, chunked runner, input validation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import tiny_cnn
from lst_jax.traversal import (
    LSTConfig,
    level_set_traversal,
    level_set_traversal_unchecked,
    reference_log_points,
)
from lst_jax.traversal import run as run_mod

SHAPE = (16, 16, 3)


def _batch(b=6, seed=0):
    model_fn, params = tiny_cnn(seed, SHAPE, logit_scale=30.0)
    k = jax.random.split(jax.random.key(seed + 10), 2)
    xs = jax.random.uniform(k[0], (b,) + SHAPE)
    xt = jax.random.uniform(k[1], (b,) + SHAPE)
    labels = jnp.argmax(model_fn(params, xs), -1).astype(jnp.int32)
    return model_fn, params, xs, xt, labels


@pytest.mark.parametrize("adv_pert,pthresh", [(False, 0.05), (True, 0.0)])
def test_fused_equals_plain_two_pass(adv_pert, pthresh):
    model_fn, params, xs, xt, labels = _batch()
    cfg = LSTConfig(step_size=0.05, iters=50, pthresh=pthresh, adv_pert=adv_pert,
                    adv_step_size=2e-3)
    a = level_set_traversal(model_fn, params, xs, xt, labels, key=jax.random.key(1), config=cfg)
    b = level_set_traversal(model_fn, params, xs, xt, labels, key=jax.random.key(1),
                            config=cfg.replace(fused=False))
    assert float(jnp.max(jnp.abs(a.images - b.images))) <= 1e-5
    np.testing.assert_array_equal(np.asarray(a.record.accepted), np.asarray(b.record.accepted))
    np.testing.assert_allclose(a.record.conf_source, b.record.conf_source, atol=1e-5)
    if pthresh == 0.0:  # the case must really exercise rejections
        assert 0 < float(jnp.mean(a.record.accepted)) < 1


def test_second_call_does_not_recompile():
    model_fn, params, xs, xt, labels = _batch()
    cfg = LSTConfig(iters=5, log_step=2)
    level_set_traversal(model_fn, params, xs, xt, labels, key=jax.random.key(0), config=cfg)
    n = run_mod._traverse_jit._cache_size()
    # New data, new key, new float hyperparameters, same shapes and static settings.
    model_fn2, params2, xs2, xt2, labels2 = _batch(seed=3)
    level_set_traversal(model_fn2, params2, xs2, xt2, labels2, key=jax.random.key(5),
                        config=cfg.replace(step_size=0.2, pthresh=0.3, noise=0.0))
    assert run_mod._traverse_jit._cache_size() == n
    # The chunked (progress) runner compiles once too, including the remainder chunk.
    level_set_traversal(model_fn, params, xs, xt, labels, key=jax.random.key(0), config=cfg,
                        progress=True)
    m = run_mod._chunk_jit._cache_size()
    level_set_traversal(model_fn2, params2, xs2, xt2, labels2, key=jax.random.key(1),
                        config=cfg.replace(step_size=0.3), progress=True)
    assert run_mod._chunk_jit._cache_size() == m


def test_jit_equals_disable_jit():
    model_fn, params, xs, xt, labels = _batch(b=3)
    cfg = LSTConfig(iters=6, log_step=4, log_images=True, adv_pert=True)
    a = level_set_traversal_unchecked(model_fn, params, xs, xt, labels, key=jax.random.key(2),
                                      config=cfg)
    with jax.disable_jit():
        b = level_set_traversal_unchecked(model_fn, params, xs, xt, labels,
                                          key=jax.random.key(2), config=cfg)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_allclose(np.asarray(x, np.float32), np.asarray(y, np.float32),
                                   atol=1e-5)


@pytest.mark.parametrize("log_images", [False, True])
def test_progress_runner_matches_single_scan(log_images, capsys):
    model_fn, params, xs, xt, labels = _batch(b=4)
    cfg = LSTConfig(iters=23, log_step=5, log_images=log_images, adv_pert=True)
    a = level_set_traversal(model_fn, params, xs, xt, labels, key=jax.random.key(3), config=cfg)
    b = level_set_traversal(model_fn, params, xs, xt, labels, key=jax.random.key(3), config=cfg,
                            progress=True)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    err = capsys.readouterr().err
    assert "23/23" in err and "it/s" in err


def test_record_and_log_point_semantics():
    model_fn, params, xs, xt, labels = _batch(b=2)
    cfg = LSTConfig(iters=10, log_step=4, log_images=True)
    res = level_set_traversal(model_fn, params, xs, xt, labels, key=jax.random.key(4), config=cfg)
    assert res.record.conf_source.shape == (10, 2)
    assert res.logged_images.shape == (3, 2) + SHAPE          # x_0, x_4, x_8
    np.testing.assert_array_equal(res.logged_images[0], res.start)
    logs = reference_log_points(res, log_step=4)
    probs = jax.nn.softmax(model_fn(params, res.logged_images[1]), -1)
    np.testing.assert_allclose(logs.conf_source[1], probs[jnp.arange(2), labels], atol=1e-5)
    # The last record entry describes the final images.
    final = jax.nn.softmax(model_fn(params, res.images), -1)[jnp.arange(2), labels]
    np.testing.assert_allclose(res.record.conf_source[-1], final, atol=1e-5)
    d = jnp.sqrt(jnp.sum((res.images - xt) ** 2, axis=(1, 2, 3)))
    np.testing.assert_allclose(res.record.dist_target[-1], d, rtol=1e-5)


def test_valid_mask_is_the_argmax_filter():
    model_fn, params, xs, xt, labels = _batch(b=4)
    wrong = labels.at[1].set((labels[1] + 1) % 10)
    res = level_set_traversal(model_fn, params, xs, xt, wrong, key=jax.random.key(0),
                              config=LSTConfig(iters=2))
    np.testing.assert_array_equal(np.asarray(res.valid), [True, False, True, True])


def _good():
    return _batch(b=3)


@pytest.mark.parametrize("mutate,match", [
    (lambda a: dict(a, target_images=a["target_images"][:2]), "target_images"),
    (lambda a: dict(a, images=a["images"][0]), "images must have rank 4"),
    (lambda a: dict(a, images=jnp.transpose(a["images"], (0, 3, 1, 2)),
                    target_images=jnp.transpose(a["target_images"], (0, 3, 1, 2))),
     "images looks like NCHW"),
    (lambda a: dict(a, target_images=a["target_images"][..., :1]),
     "target_images must have 3 channels"),
    (lambda a: dict(a, images=a["images"][..., :1], target_images=a["target_images"][..., :1]),
     "model_fn"),
    (lambda a: dict(a, images=a["images"] * 255.0), r"images must lie in \[0, 1\]"),
    (lambda a: dict(a, target_images=a["target_images"] - 0.5),
     r"target_images must lie in \[0, 1\]"),
    (lambda a: dict(a, images=a["images"].at[0, 0, 0, 0].set(jnp.nan)), "images contains NaN"),
    (lambda a: dict(a, images=(a["images"] * 255).astype(jnp.uint8)), "images must be floating"),
    (lambda a: dict(a, labels=a["labels"].at[0].set(10)), r"labels must lie in \[0, 10\)"),
    (lambda a: dict(a, labels=a["labels"].at[0].set(-1)), r"labels must lie in \[0, 10\)"),
    (lambda a: dict(a, labels=a["labels"][:2]), r"labels must have shape \(3,\)"),
    (lambda a: dict(a, labels=a["labels"].astype(jnp.float32)), "labels must be integer"),
    (lambda a: dict(a, target_labels=jnp.array([0, 1, 12])), "target_labels must lie"),
])
def test_bad_input_raises_value_error_naming_argument(mutate, match):
    model_fn, params, xs, xt, labels = _good()
    args = mutate(dict(images=xs, target_images=xt, labels=labels, target_labels=None))
    with pytest.raises(ValueError, match=match):
        level_set_traversal(model_fn, params, args["images"], args["target_images"],
                            args["labels"],
                            key=jax.random.key(0), config=LSTConfig(iters=2),
                            target_labels=args["target_labels"])


@pytest.mark.parametrize("field,value", [("iters", 0), ("iters", -3), ("log_step", 0),
                                         ("iters", 2.5), ("step_size", -0.1),
                                         ("adv_step_size", float("nan")), ("noise", -1.0),
                                         ("adv_pert", 1)])
def test_bad_config_raises_value_error_naming_field(field, value):
    with pytest.raises(ValueError, match=field):
        LSTConfig(**{field: value})


def test_model_must_return_2d_logits():
    _, params, xs, xt, labels = _batch(b=2)
    with pytest.raises(ValueError, match="model_fn"):
        level_set_traversal(lambda p, x: jnp.sum(x), params, xs, xt, labels,
                            key=jax.random.key(0), config=LSTConfig(iters=1))
