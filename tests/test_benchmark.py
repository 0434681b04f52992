"""Smoke test of experiments/benchmark.py (the real benchmark is not a test): report
structure, the JAX/PyTorch agreement gate, the memory and bfloat16 checks, and the run
without torch. Tiny models, 2 iterations, one timed repetition."""

import json

import flax.linen as nn
import numpy as np
import pytest

from conftest import HAVE_TORCH
from experiments import benchmark as bm
from lst_jax.models.digits import DigitsResNet
from lst_jax.models.wrapper import Classifier

SHAPE = (16, 16, 3)


def _resnet_case() -> bm.Case:
    """A tiny digits ResNet and its PyTorch twin."""
    model_fn = Classifier(DigitsResNet(num_classes=4, widths=(4, 8)))
    params = bm.random_variables(model_fn, SHAPE)

    def make_torch():
        from torch_twins import digits_twin

        twin = digits_twin(model_fn.module, params, image_size=SHAPE[0])
        return bm.TorchNormalized(twin, model_fn.normalization).eval()

    return bm.Case("tiny", model_fn, params, SHAPE, make_torch,
                   bm.random_data(model_fn, params, SHAPE), (2,), "random init")


class _Linear(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool = False):
        return nn.Dense(4, name="fc")(x.reshape(x.shape[0], -1)), {}


def _run(case, tmp_path, **kw):
    return bm.run_benchmark([case], iters=2, reps=1, out=tmp_path, log=lambda s: None, **kw)


@pytest.mark.skipif(not HAVE_TORCH, reason="needs the optional torch extra")
def test_report_structure_and_agreement(tmp_path):
    report = _run(_resnet_case(), tmp_path, check_memory=False)
    saved = json.loads((tmp_path / "benchmark.json").read_text())
    assert set(saved) == {"machine", "settings", "results"}
    assert saved["machine"]["cores"] >= 1 and "jax" in saved["machine"]["versions"]
    (r,) = saved["results"]
    assert r["speed_reported"] and r["torch_agreement"]["ok"]
    assert r["torch_agreement"]["max_abs_diff"] <= 1e-3
    assert r["torch_agreement"]["accept_agreement"] == 1.0
    for k in ("jax_pair_it_per_s", "torch_pair_it_per_s", "jax_over_torch", "efficiency",
              "efficiency_loop", "jax_fwd_bwd_s", "jax_fwd_bwd_loop_s"):
        assert np.isfinite(r[k]) and r[k] > 0, k
    md = (tmp_path / "benchmark.md").read_text()
    assert md == report["markdown"]
    assert "| model | input | batch | iters | JAX pair-it/s | PyTorch pair-it/s" in md
    assert "| tiny | 16x16x3 | 2 | 2 |" in md


@pytest.mark.skipif(not HAVE_TORCH, reason="needs the optional torch extra")
def test_disagreement_reports_no_speed(tmp_path, monkeypatch):
    # A PyTorch loop whose final images are off by 5e-3 (more than one grey level), or
    # whose acceptance decisions differ once: no speed is reported.
    loop = bm.torch_traversal
    for corrupt in (lambda x, acc: (x + 5e-3, acc),
                    lambda x, acc: (x, acc ^ (bm.torch.arange(acc.numel()) == 0).view(acc.shape))):
        monkeypatch.setattr(bm, "torch_traversal", lambda *a, c=corrupt, **k: c(*loop(*a, **k)))
        report = _run(_resnet_case(), tmp_path, check_memory=False)
        (r,) = report["results"]
        assert not r["torch_agreement"]["ok"] and not r["speed_reported"]
        assert "jax_pair_it_per_s" not in r and "DISAGREE" in report["markdown"]


def test_without_torch_memory_and_bf16(tmp_path, monkeypatch):
    monkeypatch.setattr(bm, "HAVE_TORCH", False)
    model_fn = Classifier(_Linear())
    params = bm.random_variables(model_fn, (4, 4, 3), scale=30.0)
    case = bm.Case("linear", model_fn, params, (4, 4, 3), None,
                   bm.random_data(model_fn, params, (4, 4, 3)), (3,), "random init")
    report = _run(case, tmp_path, check_memory=True, bf16=True)
    (r,) = report["results"]
    assert r["speed_reported"] and r["jax_pair_it_per_s"] > 0 and "torch_skipped" in r
    assert "torch_pair_it_per_s" not in r
    mem = r["memory"]
    assert mem["ok"] and 0 <= mem["peak_2x"] - mem["peak"] <= mem["record_bytes"] + 256
    assert 0 <= r["bf16"]["conf_diff_same_images_max"] < 0.1
    assert r["bf16"]["pair_it_per_s"] > 0
