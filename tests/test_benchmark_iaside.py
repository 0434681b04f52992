"""Smoke test of experiments/benchmark_iaside.py (the benchmark itself is not a test): the
shipped digits ResNet with M = 2, K = 10, one repetition; the agreement gate refuses to
report a speed when the PyTorch procedure disagrees."""

import numpy as np
import pytest

from conftest import HAVE_TORCH
from experiments import benchmark_iaside as bi

pytestmark = pytest.mark.skipif(not HAVE_TORCH, reason="needs the optional torch extra")


def test_report_and_agreement_gate(monkeypatch):
    import torch

    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)   # keep the suite's setting
    r = bi.bench_model("digits_resnet", 2, 10, 20, 1, 1e-4, log=lambda s: None, threads=1)
    assert r["speed_reported"] and r["agreement"]["ok"]
    assert r["agreement"]["max_value_diff"] < 1e-5
    for k in ("jax_evals_per_s", "limit_evals_per_s", "efficiency", "torch_evals_per_s",
              "jax_over_torch", "fwd_jax_over_torch_batch10", "fwd_jax_over_torch_batch"):
        assert np.isfinite(r[k]) and r[k] > 0, k
    md = bi.markdown_report([r], bi.lst_bench.machine_info())
    assert "| digits_resnet | 32x32x3 | 2 | 10 | 20 |" in md

    import torch_iaside

    ref = torch_iaside.reference_values
    monkeypatch.setattr(torch_iaside, "reference_values", lambda *a, **k: ref(*a, **k) + 1e-3)
    bad = bi.bench_model("digits_resnet", 2, 10, 20, 1, 1e-4, log=lambda s: None)
    assert not bad["speed_reported"] and "jax_evals_per_s" not in bad
    assert "DISAGREE" in bi.markdown_report([bad], bi.lst_bench.machine_info())
