"""The full evaluation on several devices and several processes, through the real CLI.

A small `lst-jax full-eval` on the shipped digits ResNet (6 sources, 2 rounds, batches of 2,
8 iterations, 15-point hull grid, 2 hull probes per device per call):
- one process with 4 fake CPU devices: the default (`--mesh auto`) run agrees with a
  one-device run (`--mesh off`) to float round-off, also with a `--memory-budget` that cuts
  each hull batch into 8 chunks;
- two processes x 2 devices (jax.distributed on 127.0.0.1, gloo): process 0 writes exactly
  the files of the one-process 4-device run (every array bit for bit, the same tables), and a
  config that process 0 refuses stops both processes with the same error;
- killing one of the two processes mid-run stops the other at once with a clear error; the
  finished batches stay on disk, and a re-launch computes only the rest and ends with the same
  files.
"""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from subproc import ROOT, device_env, free_port, run_python, wait_all

ARGS = ["full-eval", "--model", "digits_resnet-normal", "--num-samples", "6", "--rounds", "2",
        "--batch-size", "2", "--iters", "8", "--log-step", "8", "--metrics", "basic",
        "--grid-n", "4", "--chunk-size", "2", "--quiet"]
HEARTBEAT = 10   # seconds

REFERENCE = r"""
import numpy as np
from lst_jax import cli
from lst_jax.geometry import round_pairs, triangle_grid
from lst_jax.geometry.hull import pair_weights
from lst_jax.geometry.probes import Combinations, combination_probes
from lst_jax.models import load_model
from lst_jax.parallel import ShardedEvaluator, data_mesh

ARGS, OUT = {args!r}, {out!r}
assert cli.main([*ARGS, "--out", OUT + "/off", "--mesh", "off"]) == 0
assert cli.main([*ARGS, "--out", OUT + "/auto"]) == 0
# A budget with room for one hull probe per device: 30 probes per hull batch -> 8 chunks.
m = load_model("digits_resnet-normal")
grid = triangle_grid(kind="reference", n=4)
data = Combinations(np.zeros((3, 2, 32, 32, 3), np.float32),
                    pair_weights(grid, round_pairs(2), 2), np.zeros(2, np.int32))
total = 2 * grid.num_points
est = ShardedEvaluator(data_mesh()).estimate(m.model_fn, m.params, combination_probes, data,
                                             total)
budget = est.bytes_for(1)
chunk = ShardedEvaluator(data_mesh(), memory_budget=budget).plan(
    m.model_fn, m.params, combination_probes, data, total)
assert cli.main([*ARGS, "--out", OUT + "/budget", "--memory-budget", str(budget)]) == 0
emit({{"budget": budget, "chunk": chunk, "total": total}})
"""


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("reference")
    info = run_python(REFERENCE.format(args=ARGS, out=str(out)), devices=4)
    return out, info


def _launch(out, extra=()):
    port = free_port()
    return [subprocess.Popen(
        [sys.executable, "-m", "lst_jax.cli", *ARGS, "--out", str(out), *extra,
         "--coordinator", f"127.0.0.1:{port}", "--num-processes", "2", "--process-id", str(i),
         "--heartbeat-timeout", str(HEARTBEAT)],
        env=device_env(2), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True) for i in range(2)]


def _wait(procs, timeout=300):
    return wait_all(procs, timeout)


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")
                  if p.is_file() and not str(p.relative_to(root)).startswith("pool"))


def _summary(root: Path) -> dict:
    s = json.loads((root / "summary.json").read_text())
    s.pop("seconds_this_call")
    return s


def _compare_runs(a: Path, b: Path, atol: float = 0.0):
    """Same files; npz arrays equal (or within atol); tables and summary identical."""
    files = _files(a)
    assert files == _files(b)
    assert "results.npz" in files and "lst/r1_b00002.npz" in files and "hull/b00002.npz" in files
    for f in files:
        if f.endswith(".npz"):
            za, zb = np.load(a / f), np.load(b / f)
            assert za.files == zb.files, f
            for k in za.files:
                if atol == 0.0 or za[k].dtype.kind not in "f":
                    np.testing.assert_array_equal(za[k], zb[k], err_msg=f"{f}:{k}")
                else:
                    np.testing.assert_allclose(za[k], zb[k], rtol=0, atol=atol,
                                               err_msg=f"{f}:{k}")
        elif f.endswith((".md", ".tex", ".csv")) and atol == 0.0:
            assert (a / f).read_text() == (b / f).read_text(), f
    sa, sb = _summary(a), _summary(b)
    sa.pop("parallel"), sb.pop("parallel")      # the device layout, checked by the tests
    if atol == 0.0:
        assert sa == sb
    else:
        for t in ("table1", "table2"):
            for name, (mean, std, count) in sa[t].items():
                m2, s2, c2 = sb[t][name]
                assert c2 == count and abs(m2 - mean) <= 1e-4 and abs(s2 - std) <= 1e-4, name


def test_mesh_run_matches_one_device_run(reference):
    out, info = reference
    p_off = json.loads((out / "off" / "summary.json").read_text())["parallel"]
    p_auto = json.loads((out / "auto" / "summary.json").read_text())["parallel"]
    assert p_off == {"processes": 1, "devices": 1, "memory_budget": None}
    assert p_auto == {"processes": 1, "devices": 4, "memory_budget": None}
    _compare_runs(out / "off", out / "auto", atol=1e-5)


def test_memory_budget_run_matches(reference):
    out, info = reference
    assert info["chunk"] == 4 and info["total"] == 30      # 1 probe per device, 8 chunks
    p = json.loads((out / "budget" / "summary.json").read_text())["parallel"]
    assert p["memory_budget"] == str(info["budget"]) and p["devices"] == 4
    _compare_runs(out / "auto", out / "budget", atol=1e-6)


def test_two_processes_write_the_single_process_files(reference, tmp_path):
    out, _ = reference
    (c0, o0, e0), (c1, o1, e1) = _wait(_launch(tmp_path))
    assert c0 == 0, e0[-3000:]
    assert c1 == 0, e1[-3000:]
    assert "wrote" in o0 and "wrote" not in o1            # process 0 alone reports and writes
    p = json.loads((tmp_path / "summary.json").read_text())["parallel"]
    assert p == {"processes": 2, "devices": 4, "memory_budget": None}
    _compare_runs(out / "auto", tmp_path)
    # Process 0 refuses a different config in the same directory: every process stops.
    (c0, _, e0), (c1, _, e1) = _wait(_launch(tmp_path, ["--iters", "9"]), timeout=120)
    assert c0 == 2 and "different config" in e0, e0[-2000:]
    assert c1 == 2 and "process 0: run directory" in e1, e1[-2000:]


def test_dead_process_stops_the_other_and_relaunch_resumes(reference, tmp_path):
    out, _ = reference
    procs = _launch(tmp_path)
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline and procs[0].poll() is None:
            if any((tmp_path / "lst").glob("*.npz")):
                break
            time.sleep(0.02)
        assert procs[0].poll() is None and procs[1].poll() is None
        procs[1].send_signal(signal.SIGKILL)
        killed = time.monotonic()
        (code0, _, err0), (code1, _, _) = _wait(procs, timeout=120)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert code1 == -signal.SIGKILL
    assert code0 != 0 and time.monotonic() - killed < 60
    assert ("another process has probably died" in err0
            or "Terminating process because the JAX distributed service" in err0), err0[-3000:]
    done = sorted(p.name for p in (tmp_path / "lst").glob("*.npz"))
    assert 1 <= len(done) < 6 and not (tmp_path / "results.npz").exists()
    mtimes = {p: p.stat().st_mtime_ns for p in (tmp_path / "lst").glob("*.npz")}
    (c0, _, e0), (c1, _, e1) = _wait(_launch(tmp_path))
    assert c0 == 0 and c1 == 0, (e0[-2000:], e1[-2000:])
    assert all(p.stat().st_mtime_ns == t for p, t in mtimes.items())   # not recomputed
    _compare_runs(out / "auto", tmp_path)
