"""Stay on the device (issue 20): once the parameters are placed (`jax.device_put`), the hot
loops of LST, I-ASIDE, the input optimiser and path losses make no implicit transfer. Every
host->device copy inside the library is an explicit `jax.device_put` (of the host inputs, once),
and every device->host copy an explicit `jax.device_get` (results, and the few flags that steer
compaction), so each call runs under `jax.transfer_guard("disallow")`, which raises on any
implicit transfer (e.g. a numpy array passed to a jitted function, or `np.asarray` of a
device array)."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from subproc import fast_tiny_cnn

SHAPE = (16, 16, 3)


@pytest.fixture(scope="module")
def placed():
    model, params = fast_tiny_cnn(0, SHAPE, 10, logit_scale=10.0)
    x = np.random.default_rng(0).uniform(size=(8,) + SHAPE).astype(np.float32)
    return model, jax.device_put(params), x, np.arange(8, dtype=np.int32) % 10


def test_guard_catches_an_implicit_transfer():
    f = jax.jit(lambda a: a + 1)
    with jax.transfer_guard("disallow"), pytest.raises(Exception, match="[Dd]isallowed"):
        f(np.ones(3, np.float32))


def test_input_optimiser_under_transfer_guard(placed):
    from lst_jax.connectivity import FreeConfig, free_optimize
    from lst_jax.connectivity.optimize import OptimizerConfig, run_batches

    model, params, x, y = placed
    with jax.transfer_guard("disallow"):
        res = free_optimize(model, params, x, y, config=FreeConfig(steps=40, threshold=0.5),
                            batch_size=8)
        # the runner with compaction down to 2 rows
        cfg = OptimizerConfig(steps=40, stop="pre_step", lr=5e-2, threshold=0.5)
        comp = run_batches(model, params, x, y, cfg.static, cfg.hyper(len(x)), chunk=8,
                           min_batch=2)
    assert res.x.shape == x.shape and np.all(np.isfinite(jax.device_get(res.ce)))
    assert np.all(np.isfinite(comp.ce))


def test_path_losses_under_transfer_guard(placed):
    from lst_jax.connectivity import path_losses

    model, params, x, y = placed
    with jax.transfer_guard("disallow"):
        losses = path_losses(model, params, x[:5], x[3:8], y[:5], num_points=7)
    assert losses.shape == (5, 7) and np.all(np.isfinite(jax.device_get(losses)))


def test_lst_under_transfer_guard(placed):
    from lst_jax.traversal import level_set_traversal, preset

    model, params, x, y = placed
    key = jax.device_put(jax.random.key(0))
    with jax.transfer_guard("disallow"):
        res = level_set_traversal(model, params, x[:4], x[4:], y[:4], key=key,
                                  config=preset("paper", iters=4))
        images = jax.device_get(res.images)
    assert images.shape == (4,) + SHAPE


def test_iaside_under_transfer_guard(placed):
    from lst_jax.spectral import SpectralConfig, spectral_importance

    model, params, x, y = placed
    key = jax.device_put(jax.random.key(0))
    with jax.transfer_guard("disallow"):
        imp = spectral_importance(model, params, x, y, key=key,
                                  config=SpectralConfig(num_bands=4))
    assert imp.distribution.shape == (4,)
