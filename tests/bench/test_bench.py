"""`lst-jax bench` (lst_jax/bench/): the quick suite end to end on the CPU (tiny model, both
files, every workload agreeing with its PyTorch side), the agreement gate (a perturbed PyTorch
loop: non-zero exit, no speed), `--dry-run` of the device suite, a tiny `--budget` (valid
partial files), and the bench path with tensorflow-datasets unimportable. The speeds are not
asserted (timings on a shared machine are noise); their presence and finiteness are."""

import json
import math
import subprocess
import sys

import pytest

from conftest import HAVE_TORCH
from lst_jax.cli import main
from subproc import ROOT, device_env

pytestmark = pytest.mark.skipif(not HAVE_TORCH, reason="needs the optional torch extra")

KINDS = ("lst", "iaside", "connectivity", "hull")


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench_quick")
    rc = main(["bench", "--suite", "quick", "--torch-threads", "1", "--out", str(out)])
    return rc, json.loads((out / "bench.json").read_text()), (out / "bench.md").read_text()


def test_quick_suite_writes_both_files(quick):
    rc, report, md = quick
    assert rc == 0, [(r["name"], r["status"], r.get("error")) for r in report["results"]]
    assert report["status"] == "done" and report["suite"] == "quick"
    m = report["machine"]
    for k in ("jax", "jaxlib", "flax", "torch", "python"):
        assert m["versions"][k], k
    assert m["jax_backend"] == "cpu" and m["torch_device"] == "cpu"
    assert report["precision"]["jax_default_matmul_precision"] == "highest"
    assert report["precision"]["torch_cudnn_allow_tf32"] is False
    results = {r["name"]: r for r in report["results"]}
    assert [p["name"] for p in report["plan"]] == list(results)
    assert {r["kind"] for r in results.values()} == set(KINDS)
    for name, r in results.items():
        assert r["status"] == "ok" and r["speed_reported"], name
        assert r["compile_s"] and all(v >= 0 for v in r["compile_s"].values()), name
    lst = results["lst tiny_resnet float32"]
    assert lst["torch_agreement"]["ok"] and lst["torch_agreement"]["accept_agreement"] == 1.0
    assert lst["memory"]["peak"] > 0           # XLA's buffer assignment of the program
    for k in ("jax_pair_it_per_s", "torch_pair_it_per_s", "jax_over_torch", "efficiency"):
        assert math.isfinite(lst[k]) and lst[k] > 0, k
    assert results["iaside tiny_resnet float32"]["agreement"]["max_value_diff"] < 1e-4
    conn = results["connectivity tiny_resnet float32"]
    assert conn["agreement"]["steps_max_diff"] <= 1 and conn["torch_over_jax"] > 0
    assert results["hull tiny_resnet float32"]["agreement"]["jax_vs_torch"] < 1e-4
    bf = results["lst tiny_resnet bfloat16"]
    assert bf["speedup_over_float32"] > 0 and bf["change_vs_float32"]["final_conf_diff_max"] < 1
    for title in ("## LST traversal", "## I-ASIDE coalitions", "## Connectivity statistics",
                  "## Table-2 hull grid", "## Compilation"):
        assert title in md
    assert "| tiny_resnet | 32x32x3 | float32 | 4 | 3 | ok |" in md


def test_perturbed_twin_fails(tmp_path, monkeypatch):
    # The PyTorch loop's final images off by 5e-3 (more than one grey level): no speed,
    # status DISAGREE, exit status 1.
    from lst_jax.bench import torch_procedures as tp

    loop = tp.torch_traversal
    monkeypatch.setattr(tp, "torch_traversal", lambda *a, **k: (lambda x, acc: (x + 5e-3, acc))(
        *loop(*a, **k)))
    rc = main(["bench", "--suite", "quick", "--only", "lst tiny_resnet float32",
               "--torch-threads", "1",
               "--out", str(tmp_path)])
    assert rc == 1
    (r,) = json.loads((tmp_path / "bench.json").read_text())["results"]
    assert r["status"] == "DISAGREE" and not r["speed_reported"]
    assert not r["torch_agreement"]["ok"] and "jax_pair_it_per_s" not in r
    assert "DISAGREE" in (tmp_path / "bench.md").read_text()


def test_dry_run_prints_the_device_plan(tmp_path, capsys):
    assert main(["bench", "--suite", "device", "--dry-run", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    lines = [ln for ln in out.splitlines() if ln.strip()[:3].strip(" .").isdigit()]
    assert "lst resnet50 float32" in lines[0] and "torch.compile" in lines[0]
    assert "iaside resnet50 float32" in lines[1] and "connectivity" in lines[2]
    assert "hull" in lines[3] and "bfloat16" in lines[4]
    assert all("batch" in ln and "reps" in ln for ln in lines)
    assert "budget 360 s" in out
    assert not (tmp_path / "bench.json").exists()       # nothing ran


def test_tiny_budget_stops_early_with_valid_files(tmp_path):
    assert main(["bench", "--suite", "quick", "--budget", "0.001", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "bench.json").read_text())
    assert report["status"] == "done" and len(report["results"]) == 5
    assert all(r["status"] == "skipped" and "budget" in r["skipped"]
               for r in report["results"])
    assert "Errors and skipped workloads" in (tmp_path / "bench.md").read_text()


def test_bad_arguments(tmp_path, capsys):
    assert main(["bench", "--only", "nothing-like-this", "--dry-run"]) == 2
    assert main(["bench", "--budget", "-3", "--dry-run"]) == 2
    assert "--budget must be positive" in capsys.readouterr().err


def test_bench_without_tensorflow_datasets(tmp_path):
    code = ("import sys; sys.modules['tensorflow_datasets'] = None\n"
            "from lst_jax.cli import main\n"
            "rc = main(['bench', '--suite', 'quick', '--only', 'hull', '--torch-threads', '1', "
            f"'--out', {str(tmp_path)!r}])\n"
            "assert 'tensorflow_datasets' not in {m for m, v in sys.modules.items() if v}\n"
            "sys.exit(rc)\n")
    p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=device_env(1),
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert p.stdout.startswith("bench: jax ")          # the environment line comes first
    (r,) = json.loads((tmp_path / "bench.json").read_text())["results"]
    assert r["status"] == "ok"
