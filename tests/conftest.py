"""Strict JAX settings for the whole suite, PRNG-key fixtures, torch gating, tiny models."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_default_matmul_precision", "highest")

try:  # torch is an optional extra; its tests skip cleanly without it
    import torch  # noqa: F401

    HAVE_TORCH = True
except ImportError:  # pragma: no cover - exercised on machines without torch
    HAVE_TORCH = False

requires_torch = pytest.mark.skipif(not HAVE_TORCH, reason="needs the optional torch extra")


@pytest.fixture
def key():
    return jax.random.key(0)


from subproc import TinyCNN  # noqa: E402  (one definition; subproc avoids importing torch)


def tiny_cnn(seed: int = 0, image_shape=(16, 16, 3), num_classes: int = 10,
             logit_scale: float = 1.0):
    """(model_fn, params) of a randomly initialised TinyCNN.

    `logit_scale` multiplies the last layer's kernel: random nets are nearly uniform, a scale
    of ~30 makes them confident enough that the acceptance test really rejects steps.
    """
    from lst_jax.models.wrapper import Classifier

    model_fn = Classifier(TinyCNN(num_classes))
    params = model_fn.init(jax.random.key(seed), image_shape)
    fc = dict(params["params"]["fc"], kernel=params["params"]["fc"]["kernel"] * logit_scale)
    return model_fn, {"params": dict(params["params"], fc=fc)}
