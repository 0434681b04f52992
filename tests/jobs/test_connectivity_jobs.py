"""The connectivity jobs on the shipped digits models: the detector beats chance and is
deterministic, per-model runs are reused / resumed / kept apart by config, and every
`lst-jax connectivity` mode runs end to end (quick settings)."""

import dataclasses
import json

import numpy as np
import pytest

from lst_jax.cli import build_parser, main
from lst_jax.jobs.connectivity import job as jobs
from lst_jax.jobs.connectivity.command import barrier_config, detect_config
from lst_jax.jobs.rundir import RunDir

MODEL = "digits_resnet-normal"


def _args(*argv):
    return build_parser().parse_args(["connectivity", *argv])


def test_detector_beats_chance_on_digits_same_seed_same_result(tmp_path, capsys):
    argv = ["detect", "--quick", "--quiet", "--models", MODEL, "--attacks", "optimization",
            "--folds", "4"]
    cfg = detect_config(_args(*argv))
    s1 = jobs.detect_model_run(MODEL, cfg, tmp_path / "a", progress=False)
    s2 = jobs.detect_model_run(MODEL, cfg, tmp_path / "b", progress=False)
    e = s1["attacks"]["optimization"]
    with capsys.disabled():
        print(f"\n[detector] {MODEL}, optimisation attack ({e['n_adversarial']} adversarial / "
              f"{s1['n_clean']} clean, 21-point curves, 4-fold CV): AUROC {e['auroc']:.3f}, "
              f"accuracy {e['accuracy']:.3f}")
    assert e["auroc"] > 0.7 and e["accuracy"] > 0.6 and e["n_adversarial"] >= 30
    z1 = RunDir(s1["run_dir"]).load_npz("detector_optimization.npz")
    z2 = RunDir(s2["run_dir"]).load_npz("detector_optimization.npz")
    np.testing.assert_array_equal(z1["scores"], z2["scores"])
    s2 = dict(s2, run_dir=s1["run_dir"])
    assert json.dumps(s1, sort_keys=True) == json.dumps(s2, sort_keys=True)
    # the CLI over the same root reuses the finished run (no attack is run again)
    assert main(["connectivity", *argv, "--root", str(tmp_path / "a")]) == 0
    assert (tmp_path / "a" / "detect.md").exists() and (tmp_path / "a" / "figures" /
                                                        "detect_roc.png").exists()


def test_barrier_run_is_reused_resumed_and_keyed_by_config(tmp_path, monkeypatch):
    root = tmp_path / "runs"
    argv = ["barrier", "--quick", "--quiet", "--models", MODEL, "--classes", "0", "1", "2",
            "--batch-size", "2", "--root", str(root)]
    assert main(["connectivity", *argv]) == 0
    summary = json.loads((root / "barrier.json").read_text())[MODEL]
    for g in ("real", "adversarial"):
        assert summary[g]["n"] == 3
        for k in ("max_median", "max_mean", "gap_median", "gap_mean"):
            assert np.isfinite(summary[g][k])
    assert (root / "figures" / "barrier_boxplots.png").exists()
    run = RunDir(summary["run_dir"])
    cfg = barrier_config(_args(*argv))
    # same config: the stored result, nothing recomputed
    monkeypatch.setattr(jobs, "optimization_attack", lambda *a, **k: pytest.fail("recomputed"))
    assert jobs.barrier_model_run(MODEL, cfg, root, progress=False) == summary
    # partial (a chunk and the summary lost): resumes, recomputing only that chunk
    chunk = run.load_npz("adv/b0001.npz")
    run.path("adv/b0001.npz").unlink()
    run.path("result.json").unlink()
    monkeypatch.undo()
    calls = []
    real_attack = jobs.optimization_attack
    monkeypatch.setattr(jobs, "optimization_attack",
                        lambda *a, **k: calls.append(1) or real_attack(*a, **k))
    assert jobs.barrier_model_run(MODEL, cfg, root, progress=False) == summary
    assert len(calls) == 1
    for k, v in run.load_npz("adv/b0001.npz").items():
        np.testing.assert_array_equal(v, chunk[k])
    # a different config: another directory
    other = jobs.barrier_model_run(MODEL, dataclasses.replace(cfg, points=11), root,
                                   progress=False)
    assert other["run_dir"] != summary["run_dir"]
    # a directory holding another request is refused
    manifest = json.loads(run.path("manifest.json").read_text())
    manifest["config"]["config"]["points"] = 99
    run.write_json("manifest.json", manifest)
    with pytest.raises(ValueError, match="holds a run with a different config"):
        jobs.barrier_model_run(MODEL, cfg, root, progress=False)


def test_bypass_and_synthetic_modes_end_to_end(tmp_path):
    out = tmp_path / "bypass"
    assert main(["connectivity", "bypass", "--quick", "--quiet", "--out", str(out)]) == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["real-real"]["linear_gap"] > 1.0             # class 1: a real barrier
    assert s["real-real"]["bypass_points"] >= 1
    assert s["real-real"]["final_max_gap"] < s["real-real"]["linear_gap"]
    for f in ("profiles.png", "paths.png", "difference_real-real.png"):
        assert (out / "figures" / f).exists()
    out = tmp_path / "synthetic"
    assert main(["connectivity", "synthetic", "--quick", "--quiet", "--arch", "digits_resnet",
                 "--out", str(out)]) == 0
    s = json.loads((out / "summary.json").read_text())
    (pair,) = s["pairs"]
    assert pair["class"] == 1 and len(pair["round_max"]) == 3
    assert (out / "rounds.md").exists() and (out / "figures" / "rounds_c1_s0.png").exists()


def test_bad_job_arguments():
    with pytest.raises(ValueError, match="attacks must be a non-empty subset"):
        jobs.DetectRunConfig(attacks=("fgsm",))
    with pytest.raises(ValueError, match="space must be one of"):
        jobs.BarrierRunConfig(space="lab")
    with pytest.raises(ValueError, match="drop_per_class must be an integer >= 0"):
        jobs.BarrierRunConfig(drop_per_class=-1)
    assert main(["connectivity", "barrier", "--models", "nope", "--quick"]) == 2
