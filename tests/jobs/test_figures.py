"""Figures and summaries that state their scale and their error (issue 19, item 8)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from lst_jax.jobs.profile.compare import UNIT_INTERVAL_METRICS
from lst_jax.jobs.profile.report import metric_errors, render_markdown
from lst_jax.plots import profile as plots
from lst_jax.plots.connectivity import round_profiles
from lst_jax.utils.rounding import format_estimate

LADDER = Path(__file__).resolve().parents[2] / "docs" / "profile" / "ladder" / "profile.json"


def test_format_estimate_rounds_to_the_error():
    assert format_estimate(0.0030922293663024902) == "0.00309"
    assert format_estimate(0.9075041532516479, 0.0123) == "0.908 ± 0.012"
    assert format_estimate(0.3218002887, 0.0038477) == "0.3218 ± 0.0038"
    assert format_estimate(12.0, 3.0) == "12.0 ± 3.0"
    assert format_estimate(None) == "-" and format_estimate(float("nan")) == "nan"


def test_metric_errors_from_a_committed_profile():
    profile = json.loads(LADDER.read_text())
    err = metric_errors(profile)
    m = "digits_resnet-linf"
    rob = profile["results"]["robustness"][m]
    p, n = rob["robust_accuracy"], rob["num_images"]
    assert err[m]["robust_accuracy"] == pytest.approx(np.sqrt(p * (1 - p) / n))
    assert err[m]["iaside_score"] == profile["results"]["iaside"][m]["score_se"]
    mean, std, k = profile["results"]["lst"][m]["table1"]["rmse"]
    assert err[m]["lst_rmse"] == pytest.approx(std / np.sqrt(k))
    # Hanley-McNeil: an AUROC from ~300 clean and ~300 adversarial rows has an SE of ~0.01
    assert 0.002 < err[m]["detect_auroc_optimization"] < 0.03
    # no per-pair barrier values without the run's cache: no made-up error
    assert not any(k.startswith("barrier_") for k in err[m])
    md = render_markdown(profile, {}, err)
    assert "0.912 ± 0.016" in md                  # PGD robust accuracy of linf, to its SE
    assert "0.9124579124579124" not in md


def test_metric_panels_start_at_zero_with_error_bars_and_labels_inside(tmp_path):
    table = {"a-normal": {"x": 0.0, "m": 0.9001, "big": 1.0},
             "a-linf8": {"x": 0.86, "m": 0.9003, "big": 10.0},
             "a-linf": {"x": 0.91, "m": 0.9002, "big": 5.0}}
    errors = {k: {"m": 0.01, "x": 0.02} for k in table}
    captured = {}
    real_save = plots.save_png

    def keep(fig, path):
        captured["fig"] = fig
        return real_save(fig, path)

    plots.save_png, old = keep, plots.save_png
    try:
        out = plots.plot_metrics_against(table, list(table), ["m", "big"], "x",
                                         tmp_path / "f.png", errors=errors,
                                         unit_interval=("m", "x"))
    finally:
        plots.save_png = old
    assert out.is_file()
    fig = captured["fig"]
    ax_m, ax_big = fig.axes[:2]
    lo, hi = ax_m.get_ylim()
    assert lo <= 0 and 1 <= hi < 1.1          # a 0.0002 spread stays a 0.0002 spread
    lo, hi = ax_big.get_ylim()
    assert lo <= 0 and hi >= 10
    assert "values 0.9 to 0.9" in ax_m.get_title()
    renderer = fig.canvas.get_renderer()
    for ax in (ax_m, ax_big):
        assert ax.containers or ax.collections         # error bars drawn
        box = ax.get_window_extent(renderer)
        texts = [t for t in ax.texts if t.get_text() in ("normal", "linf8", "linf")]
        assert len(texts) == 3
        bbs = [t.get_window_extent(renderer) for t in texts]
        for bb in bbs:                                   # inside the axes
            assert box.x0 - 1 <= bb.x0 and bb.x1 <= box.x1 + 1
            assert box.y0 - 1 <= bb.y0 and bb.y1 <= box.y1 + 1
        for i in range(3):                               # on top of no other label
            for j in range(i):
                assert not bbs[i].overlaps(bbs[j]), (ax.get_title(), texts[i].get_text(),
                                                     texts[j].get_text())
    assert "lst_rmse" in UNIT_INTERVAL_METRICS and "mce" not in UNIT_INTERVAL_METRICS


def test_round_figure_has_no_panel_for_a_round_that_measured_nothing(tmp_path, monkeypatch):
    import lst_jax.plots.connectivity as pc

    captured = {}
    monkeypatch.setattr(pc, "save_png", lambda fig, path: captured.setdefault("fig", fig))
    primary = np.linspace(0, 1, 11)
    measured = (np.array([[0.1, 0.3, 0.1], [np.nan] * 3]), np.array([0.0, 0.5, 1.0]))
    empty = (np.full((2, 3), np.nan), np.array([0.0, 0.5, 1.0]))
    round_profiles(primary, [measured, empty], tmp_path / "r.png")
    titles = [ax.get_title() for ax in captured["fig"].axes]
    assert len(titles) == 2 and titles[1].startswith("secondary")
    assert not any("nan" in t for t in titles)
