"""`lst-jax profile`: end to end on two shipped models (quick preset), cached units, a
changed setting reruns only its analysis, a killed run resumes to the same result, and
validation before any work. Spearman's exact p-values against scipy."""

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest

from lst_jax import cli
from lst_jax.jobs.profile import profile_job, profile_preset, spearman
from lst_jax.jobs.profile.compare import significance_threshold
from subproc import kill_cli_when

MODELS = ["digits_resnet-normal", "digits_resnet-linf"]
ARGS = ["profile", "--models", *MODELS, "--preset", "quick", "--quiet"]
REPORT_FILES = ("report.md", "report.html", "profile.json", "profile.csv")


def _snapshot(root: Path) -> dict:
    """path -> (bytes, mtime) of every file under root."""
    return {str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("profile") / "quick"
    assert cli.main([*ARGS, "--out", str(out)]) == 0
    return out


def test_quick_profile_writes_every_report_with_finite_metrics(quick):
    for name in REPORT_FILES:
        assert (quick / name).is_file(), name
    prof = json.loads((quick / "profile.json").read_text())
    assert prof["models"] == MODELS
    want = {"clean_accuracy", "robust_accuracy", "mean_corruption_accuracy", "mce",
            "lst_rmse", "lst_linf", "hull_mean_conf", "hull_frac_above_delta", "star_min_conf",
            "iaside_score", "iaside_signed_score", "iaside_low_band_importance",
            "barrier_real_max_median", "barrier_adv_max_median", "barrier_real_gap_median",
            "barrier_adv_gap_median", "detect_auroc_optimization"}
    for m in MODELS:
        assert want <= set(prof["metrics"][m]), set(prof["metrics"][m])
        assert all(v is not None and np.isfinite(v) for v in prof["metrics"][m].values())
    assert prof["metrics"]["digits_resnet-normal"]["mce"] == pytest.approx(1.0)
    assert (prof["metrics"]["digits_resnet-linf"]["robust_accuracy"]
            > prof["metrics"]["digits_resnet-normal"]["robust_accuracy"])
    rows = (quick / "profile.csv").read_text().splitlines()
    assert rows[0].startswith("model,") and len(rows) == 1 + len(MODELS)
    md = (quick / "report.md").read_text()
    figures = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert figures and all((quick / f).is_file() for f in figures)
    page = (quick / "report.html").read_text()
    refs = re.findall(r"""(?:src|href)\s*=\s*["']([^"']*)["']""", page)
    assert len(refs) == len(figures) and all(r.startswith("data:image/png;base64,")
                                             for r in refs)
    assert "<link" not in page and "<script" not in page and "url(" not in page


def test_second_call_recomputes_nothing_and_gives_identical_files(quick, monkeypatch):
    before = _snapshot(quick / "cache")
    reports = {n: (quick / n).read_bytes() for n in REPORT_FILES}
    import lst_jax.jobs.connectivity.job as conn
    import lst_jax.jobs.iaside.job as ia
    import lst_jax.jobs.lst.full_eval as fe
    import lst_jax.robustness.evaluate as rob

    def boom(*a, **k):
        raise AssertionError("recomputed a cached analysis")

    for module, fn in [(rob, "robustness_measurements"), (fe, "full_evaluation"),
                       (ia, "spectral_importance"), (conn, "_barrier_compute"),
                       (conn, "_detect_compute")]:
        monkeypatch.setattr(module, fn, boom)
    assert cli.main([*ARGS, "--out", str(quick)]) == 0
    assert _snapshot(quick / "cache") == before
    assert {n: (quick / n).read_bytes() for n in REPORT_FILES} == reports


def test_changed_setting_recomputes_only_its_analysis(quick, tmp_path):
    import shutil

    out = tmp_path / "changed"
    shutil.copytree(quick, out)
    others = ("lst", "iaside", "connectivity", "pool")
    before = {k: _snapshot(out / "cache" / k) for k in others}
    rob_before = set(os.listdir(out / "cache" / "robustness"))
    cfg = profile_preset("quick")
    cfg = cfg.replace(robustness_seed=3)
    prof = profile_job(MODELS, cfg, out, progress=False)
    assert {k: _snapshot(out / "cache" / k) for k in others} == before   # untouched
    rob_after = set(os.listdir(out / "cache" / "robustness"))
    assert rob_before < rob_after and len(rob_after - rob_before) == len(MODELS)
    old = json.loads((quick / "profile.json").read_text())
    for k in ("lst", "iaside", "connectivity"):
        assert prof["results"][k] == old["results"][k]


def test_killed_profile_resumes_to_the_uninterrupted_result(quick, tmp_path):
    out = tmp_path / "killed"
    # killed once the first analysis unit has finished, before the report exists
    kill_cli_when([*ARGS, "--out", out], lambda: bool(list((out / "cache").rglob("result.json"))))
    assert not (out / "profile.json").exists()
    assert cli.main([*ARGS, "--out", str(out)]) == 0
    a = json.loads((out / "profile.json").read_text())
    b = json.loads((quick / "profile.json").read_text())
    assert a["metrics"] == b["metrics"]
    def strip(r):   # timings differ between runs, nothing else may
        if isinstance(r, dict):
            return {k: strip(v) for k, v in r.items() if k != "seconds"}
        return r

    for analysis in b["results"]:
        for m in b["results"][analysis]:
            assert strip(a["results"][analysis][m]) == strip(b["results"][analysis][m])
    assert (out / "profile.csv").read_bytes() == (quick / "profile.csv").read_bytes()


@pytest.mark.parametrize("models, match", [
    ([], "at least one model"),
    (["digits_resnet-nromal"], "unknown model 'digits_resnet-nromal'"),
    (["digits_resnet-normal", "resnet50-normal"], "same data"),
    (["digits_resnet-normal", "digits_resnet-normal"], "more than once"),
])
def test_bad_model_lists_fail_before_any_work(tmp_path, models, match):
    out = tmp_path / "bad"
    with pytest.raises(ValueError, match=match):
        profile_job(models, "quick", out, progress=False)
    assert not out.exists()


def test_cli_reports_bad_input_cleanly(tmp_path, capsys):
    assert cli.main(["profile", "--models", "nope", "--out", str(tmp_path / "x")]) == 2
    assert "unknown model 'nope'" in capsys.readouterr().err
    with pytest.raises(ValueError, match="unknown preset"):
        profile_preset("fast")


def test_spearman_exact_p_values_against_scipy():
    from scipy import stats

    rng = np.random.default_rng(0)
    for n in (3, 5, 7):
        x = rng.normal(size=n)
        y = x + rng.normal(size=n)
        s = spearman(x, y)
        assert s["rho"] == pytest.approx(stats.spearmanr(x, y).statistic)
        ref = stats.permutation_test((x,), lambda a: stats.spearmanr(a, y).statistic,
                                     permutation_type="pairings", n_resamples=np.inf)
        assert s["p"] == pytest.approx(ref.pvalue)
    assert spearman([1, 2], [2, 1])["rho"] is None
    assert spearman([1, 2, 3], [5, 5, 5])["note"] == "constant across models"
    assert significance_threshold(4) is None and significance_threshold(5) == pytest.approx(1.0)


def test_num_images_sets_the_robustness_images(tmp_path, monkeypatch, capsys):
    """`--num-images N`: the robustness analysis' first N images (the only images the profile
    loads itself), in the config and in the regenerate line; 0 is refused before any work."""
    from lst_jax.jobs import profile as profile_pkg

    seen = {}

    def fake(models, config, out, **kw):
        seen.update(config=config, command=kw["command"])
        raise KeyboardInterrupt      # stop here: the parsed settings are what is tested

    monkeypatch.setattr(profile_pkg, "profile_job", fake)
    assert cli.main(["profile", "--preset", "quick", "--num-images", "12", "--out",
                     str(tmp_path / "p"), "--quiet"]) == 130
    assert seen["config"].robustness.num_images == 12
    assert "--num-images 12" in seen["command"]
    assert profile_preset("quick").robustness.num_images == 64     # the preset's otherwise
    capsys.readouterr()
    assert cli.main(["profile", "--num-images", "0", "--out", str(tmp_path / "q")]) == 2
    assert "num_images must be a positive integer, got 0" in capsys.readouterr().err
    assert not (tmp_path / "q").exists()
