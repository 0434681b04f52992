"""Parity at JAX's default matmul precision (the library's policy, docs/scaling.md: it never
sets a precision itself; the suite's conftest sets "highest" for every other test).

Tolerances are those a TF32 pass allows, the default for float32 matmuls and convolutions on
NVIDIA GPUs from Ampere on: inputs rounded to a 10-bit mantissa, unit round-off
u = 2**-11, so a dot product of length n errs by at most about 2u * sum |a_i b_i|, and a
network of L such layers by roughly L times that relative to its logits' scale. On a CPU
`default` is full float32 (the same numbers as "highest"), so here these tests can only
confirm the CPU; on a GPU or TPU they check the TF32 / bfloat16-pass bound they state."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from conftest import HAVE_TORCH, tiny_cnn
from lst_jax.traversal import LSTConfig, level_set_traversal

SHAPE = (16, 16, 3)
U_TF32 = 2.0 ** -11
LAYERS = 3                       # TinyCNN: conv, conv, dense


def _tolerance(logits) -> float:
    """Absolute error a TF32 pass allows on logits: 2u per layer, relative to their scale."""
    return 2 * U_TF32 * LAYERS * float(np.abs(logits).max())


@pytest.mark.skipif(not HAVE_TORCH, reason="needs the optional torch extra")
def test_logits_match_pytorch_at_default_precision():
    import torch

    from torch_reference import torch_tiny_cnn

    torch.set_num_threads(2)
    model_fn, params = tiny_cnn(0, SHAPE, logit_scale=30.0)
    x = np.random.default_rng(0).uniform(size=(8,) + SHAPE).astype(np.float32)
    with torch.no_grad():
        ref = torch_tiny_cnn(params)(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).numpy()
    with jax.default_matmul_precision("default"):
        got = np.asarray(jax.jit(model_fn)(params, x))
    np.testing.assert_allclose(got, ref, atol=_tolerance(ref))
    if jax.default_backend() == "cpu":            # CPU: default == highest, float32 exact-ish
        np.testing.assert_allclose(got, ref, atol=1e-4)


def test_lst_at_default_precision_matches_highest_within_tf32():
    """A short traversal without rejections (pthresh 1: every step accepted, so the two runs
    cannot branch apart): outputs and confidences at `default` against `highest`."""
    model_fn, params = tiny_cnn(0, SHAPE, logit_scale=30.0)
    rng = np.random.default_rng(1)
    xs, xt = (rng.uniform(size=(4,) + SHAPE).astype(np.float32) for _ in range(2))
    ys = np.asarray(model_fn(params, xs)).argmax(-1)
    cfg = LSTConfig(step_size=0.05, iters=5, pthresh=1.0, adv_pert=False, noise=0.0)
    runs = {}
    for prec in ("highest", "default"):
        with jax.default_matmul_precision(prec):
            runs[prec] = jax.device_get(level_set_traversal(model_fn, params, xs, xt, ys,
                                                            key=jax.random.key(0), config=cfg))
    hi, de = runs["highest"], runs["default"]
    assert np.all(hi.record.accepted) and np.all(de.record.accepted)
    # each step moves 5% of the way; a TF32 gradient direction errs by ~LAYERS * 2u relative
    scale = float(np.abs(hi.images - xs).max())
    np.testing.assert_allclose(de.images, hi.images, atol=2 * U_TF32 * LAYERS * scale + 1e-6)
    np.testing.assert_allclose(de.record.conf_source, hi.record.conf_source,
                               atol=2 * U_TF32 * LAYERS + 1e-6)


def test_cli_matmul_precision_flag(monkeypatch):
    from lst_jax import cli

    before = jax.config.jax_default_matmul_precision
    try:
        assert cli.main(["--matmul-precision", "high", "models"]) == 0
        assert jax.config.jax_default_matmul_precision == "high"
    finally:
        jax.config.update("jax_default_matmul_precision", before)
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["--matmul-precision", "tf32", "models"])
