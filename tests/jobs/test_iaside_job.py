"""The I-ASIDE job on the shipped digits models: per-model run directories keyed by model,
checkpoint and config (reuse without recomputation, resume after an interruption with the
same numbers, refusal of changed data), and `lst-jax iaside` end to end (tables, figure)."""

import csv
import json

import numpy as np
import pytest

from lst_jax.cli import main
from lst_jax.jobs.iaside import job
from lst_jax.jobs.iaside.job import IasideConfig, iaside_model_run
from lst_jax.jobs.rundir import RunDir

MODEL = "digits_resnet-normal"
CFG = IasideConfig(num_bands=3, k=20)


def test_model_run_resumes_reuses_and_keys(tmp_path, monkeypatch):
    ref = iaside_model_run(MODEL, CFG, tmp_path / "a", block_size=2, progress=False)
    assert ref["distribution"].shape == (3,) and ref["values"].shape == (8,)
    assert ref["K"] == 20 and ref["M"] == 3 and ref["fill"] == "random"
    assert abs(ref["distribution"].sum() - 1) < 1e-12 and ref["seconds"] > 0
    assert ref["score"] == pytest.approx(abs(ref["signed_score"]))

    # Interrupted after two of the four blocks, then resumed: the same numbers.
    save, saved = job._BlockFiles.save, []

    def failing_save(self, *a):
        if len(saved) == 2:
            raise KeyboardInterrupt
        saved.append(a[0])
        save(self, *a)

    monkeypatch.setattr(job._BlockFiles, "save", failing_save)
    with pytest.raises(KeyboardInterrupt):
        iaside_model_run(MODEL, CFG, tmp_path / "b", block_size=2, progress=False)
    monkeypatch.setattr(job._BlockFiles, "save", save)
    run_dir = next((tmp_path / "b").iterdir())
    assert sorted(p.name for p in (run_dir / "blocks").iterdir()) == ["b00000.npz",
                                                                      "b00001.npz"]
    resumed = iaside_model_run(MODEL, CFG, tmp_path / "b", block_size=2, progress=False)
    np.testing.assert_array_equal(resumed["values"], ref["values"])
    np.testing.assert_array_equal(resumed["distribution"], ref["distribution"])
    assert resumed["score"] == ref["score"]

    # The same request again: the stored result, nothing computed, the model not loaded.
    def boom(*a, **k):
        raise AssertionError("recomputed")

    monkeypatch.setattr(job, "spectral_importance", boom)
    monkeypatch.setattr("lst_jax.models.registry.load_model", boom)
    again = iaside_model_run(MODEL, CFG, tmp_path / "a", block_size=2, progress=False)
    assert again["run_dir"] == ref["run_dir"]
    np.testing.assert_array_equal(again["values"], ref["values"])
    monkeypatch.undo()

    # A different config is another directory; changed data in the same one is refused.
    other = iaside_model_run(MODEL, CFG.replace(fill="zero"), tmp_path / "a", progress=False)
    assert other["run_dir"] != ref["run_dir"] and other["fill"] == "zero"
    run = RunDir(ref["run_dir"])
    (run.root / "result.json").unlink()
    manifest = run.read_json("manifest.json")
    manifest["config"]["data_digest"] = "0" * 64
    run.write_json("manifest.json", manifest)
    with pytest.raises(ValueError, match="data_digest"):
        iaside_model_run(MODEL, CFG, tmp_path / "a", block_size=2, progress=False)


def test_cli_two_models(tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(["iaside", "--models", MODEL, "digits_vit-normal", "--k", "20", "--bands", "3",
               "--out", str(out), "--quiet"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "| model | score | signed score | band 0 | band 1 | band 2 | K | M | fill |" in printed
    assert " ± " in printed
    rows = list(csv.DictReader((out / "iaside.csv").open()))
    assert [r["model"] for r in rows] == [MODEL, "digits_vit-normal"]
    for r in rows:
        dist = [float(r[f"band_{i}"]) for i in range(3)]
        assert abs(sum(dist) - 1) < 1e-5 and min(dist) == 0.0
        assert (r["K"], r["M"], r["fill"]) == ("20", "3", "random")
    png = out / "figures" / "iaside_distributions.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = json.loads((out / "summary.json").read_text())
    assert len(summary["results"]) == 2 and len(list((out / "models").iterdir())) == 2
    assert json.loads((out / "manifest.json").read_text())["config"]["models"] == \
        [MODEL, "digits_vit-normal"]


@pytest.mark.parametrize("argv,message", [
    (["--bands", "0"], "num_bands"), (["--k", "500"], "k=500 exceeds the 297 images"),
    (["--fill", "zero", "--group-size", "0"], "group_size"),
    (["--models", "digits_resnet-nromal"], "unknown model")])
def test_cli_errors(tmp_path, capsys, argv, message):
    args = ["iaside", "--models", MODEL, "--out", str(tmp_path / "r"), "--quiet"]
    assert main(args + argv) == 2
    assert message in capsys.readouterr().err
