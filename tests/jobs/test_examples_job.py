"""The main job end to end on a reduced setting, the CLI, the registry and data sources."""

import json

import numpy as np
import pytest

from lst_jax import cli
from lst_jax.data.digits import load_digits32
from lst_jax.data.photos import load_photos
from lst_jax.jobs.lst.job import examples_job
from lst_jax.models import load_model
from lst_jax.traversal import preset


def _png_size(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_examples_job_end_to_end(tmp_path):
    out = examples_job(k=3, config=preset("paper", iters=30, log_step=10), out=tmp_path / "run",
                       progress=False)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["aggregate"]["pairs"] == 6
    for row in summary["pairs"]:
        assert row["source"] != row["target"]
        # The paper preset holds the level set to within delta = 0.2 of the clean confidence.
        assert row["clean_conf"] - row["final_conf"] < 0.2
        assert row["rmse_to_target_final"] < row["rmse_to_target_start"]
    w, h = _png_size(out / "figures" / "examples_grid.png")
    assert w > 300 and h > 300
    assert _png_size(out / "figures" / "curves.png")[0] > 300
    z = np.load(out / "examples.npz", allow_pickle=False)
    assert z["outputs"].shape == (3, 3, 32, 32, 3)
    x, _ = load_digits32("test")
    for j in range(3):  # the diagonal holds the clean images themselves
        assert any(np.array_equal(z["outputs"][j, j], img) for img in x)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["iters"] == 30 and "jax" in manifest["versions"]
    assert "| source | target |" in (out / "summary.md").read_text()


def test_cli_examples_and_models(tmp_path, capsys):
    assert cli.main(["examples", "--k", "2", "--iters", "5", "--log-step", "5", "--quiet",
                     "--out", str(tmp_path / "cli")]) == 0
    assert (tmp_path / "cli" / "figures" / "examples_grid.png").stat().st_size > 1000
    assert cli.main(["models"]) == 0
    out = capsys.readouterr().out
    assert "digits_resnet-normal" in out and "yes" in out


def test_cli_reports_bad_input_clearly(capsys):
    assert cli.main(["examples", "--model", "resnet9000-normal"]) == 2
    assert "unknown model 'resnet9000-normal'" in capsys.readouterr().err
    assert cli.main(["examples", "--iters", "0", "--quiet"]) == 2
    assert "iters must be a positive integer" in capsys.readouterr().err


def test_missing_checkpoint_names_the_file_and_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="train_digits.py --name digits_vit-normal"):
        load_model("digits_vit-normal", tmp_path)


def test_digits_split_is_fixed_and_in_range():
    xtr, ytr = load_digits32("train")
    xte, yte = load_digits32("test")
    assert xtr.shape == (1500, 32, 32, 3) and xte.shape == (297, 32, 32, 3)
    assert xte.min() >= 0 and xte.max() <= 1 and xte.dtype == np.float32
    assert set(np.unique(yte)) == set(range(10))
    np.testing.assert_array_equal(load_digits32("test")[1], yte)
    with pytest.raises(ValueError, match="unknown digits split"):
        load_digits32("validation")


def test_sample_photos():
    x, names = load_photos(("chelsea", "coffee"), size=64, resize=73)
    assert x.shape == (2, 64, 64, 3) and names == ["chelsea", "coffee"]
    assert 0 <= x.min() and x.max() <= 1 and x.std() > 0.05
    with pytest.raises(ValueError, match="unknown sample photo"):
        load_photos(("lena",))


def test_cli_examples_on_a_mesh_matches_one_device(tmp_path):
    """`lst-jax examples --mesh on` on 3 fake devices (6 pairs, probes not a multiple of 3:
    padded) writes the same examples and geometry as `--mesh off`."""
    from subproc import run_python

    out = run_python("""
import numpy as np
from lst_jax import cli
res = {}
for mode in ("on", "off"):
    d = ROOT_DIR + "/" + mode
    assert cli.main(["examples", "--k", "3", "--iters", "6", "--log-step", "3", "--quiet",
                     "--plane-grid", "2", "--path-points", "3", "--mesh", mode,
                     "--out", d]) == 0
    res[mode] = {**np.load(d + "/examples.npz"), **np.load(d + "/geometry.npz")}
a, b = ({k: v.astype(float) for k, v in r.items() if v.dtype.kind in "fb"}
        for r in (res["on"], res["off"]))
# unmeasured geometry entries are NaN on both paths
diff = {k: float(np.max(np.abs(np.nan_to_num(a[k] - b[k]))))
        if np.array_equal(np.isnan(a[k]), np.isnan(b[k])) else float("inf") for k in b}
# The traversed images' own float32 error: the same traversal (same pairs, key and config as
# the job) in float64. The two float32 runs differ in their per-device batch sizes, so each
# carries its own round-off, amplified along the trajectory; their difference is bounded by
# about twice that error.
import jax
from lst_jax.jobs.lst.examples import off_diagonal_pairs
from lst_jax.models import load_model
from lst_jax.traversal import level_set_traversal, preset
m = load_model("digits_resnet-normal")
k = res["off"]["outputs"].shape[0]
imgs = np.stack([res["off"]["outputs"][j, j] for j in range(k)])   # the diagonal: clean j
import json
man = json.load(open(ROOT_DIR + "/off/manifest.json"))
labels = np.asarray(man["labels"])
pairs = off_diagonal_pairs(k)
ti, sj = pairs[:, 0], pairs[:, 1]
cfg = preset("paper").replace(iters=6, log_step=3)
key = jax.random.split(jax.random.key(0))[0]
runs = {p: np.asarray(level_set_traversal(m.model_fn, m.params, imgs[sj], imgs[ti], labels[sj],
                                          key=key, config=cfg, target_labels=labels[ti],
                                          precision=p).images,
                      np.float64) for p in ("float32", "float64")}
got = res["off"]["outputs"][ti, sj].astype(np.float64)
emit({"diff": diff, "keys": sorted(res["off"]),
      "job_vs_direct": float(np.abs(got - runs["float32"]).max()),
      "f32_error": float(np.abs(runs["float32"] - runs["float64"]).max())})
""".replace("ROOT_DIR", repr(str(tmp_path))), devices=3)
    assert out["keys"]
    # the job's traversal is the direct one (same program, same process: bitwise)
    assert out["job_vs_direct"] == 0.0
    # images: within 4x the float32 error of one run (float64 reference), and at least 1e-5
    tol_images = max(1e-5, 4 * out["f32_error"])
    for k, v in out["diff"].items():
        assert v <= (tol_images if k == "outputs" else 1e-5), (k, v, out["f32_error"])
