"""I-ASIDE, connectivity barrier / detect and the profile across processes, through the CLI.

One child with 1 process x 4 fake CPU devices runs each job; then 2 processes x 2 devices
(jax.distributed on 127.0.0.1, gloo) run the same jobs with --coordinator/--num-processes/
--process-id. Process 0 must write the same files: the same names, integer and boolean arrays
and every JSON field equal, float arrays equal within the tolerance below.

Tolerance. The split is by whole items (I-ASIDE coalition blocks, connectivity pair chunks),
so every number is computed by the same per-example arithmetic in both runs; but XLA:CPU
compiles the programs separately in a 2-device and a 4-device process (I-ASIDE: a 2-device
SPMD program instead of a 4-device one; fusion and Eigen's thread-pool split of the
contractions can differ) and may re-associate float32 sums. A re-associated sum of n terms
moves by at most about n * u * sum|terms| (u = 2^-24), i.e. ~1e-5 relative for the few
hundred terms of a digits ResNet dot product, typically sqrt(n) * u ~ 1e-6; measured: at most
1 ulp (1.2e-7 on I-ASIDE log-probabilities ~ -1, 1e-6 on logits ~ 10). Floats are compared
with rtol = atol = 1e-5; values derived from them (Shapley values: weighted differences of
means; AUROC, medians) inherit the same bound. Wall times and absolute paths are left out.

The profile (tiny: robustness and I-ASIDE of one model) runs each analysis on all processes
together: robustness data parallel over the global 4-device mesh in both runs, I-ASIDE by
blocks. Its LST analysis is `full_evaluation` (tests/jobs/test_full_eval_multiprocess.py), its
connectivity analysis the barrier / detect units tested here through the CLI.

Resume: process 0 then deletes the I-ASIDE result and one block file (a crash before they
were written); the same command on both processes recomputes only that block (the other
block files are not rewritten) and ends with the same files.
"""

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from subproc import RESULT_MARK, ROOT, device_env, free_port, run_python, wait_all

RTOL = ATOL = 1e-5
MODEL = "digits_resnet-normal"
JOBS = {
    # 6 bands: 64 coalitions = 4 blocks of 16 (2 per process); K = 10 images.
    "iaside": ["iaside", "--models", MODEL, "--k", "10", "--bands", "6", "--quiet", "--out"],
    # 2 real-adversarial pairs in chunks of 1: items real + 2 chunks.
    "barrier": ["connectivity", "barrier", "--models", MODEL, "--quick", "--classes", "0", "1",
                "--batch-size", "1", "--quiet", "--root"],
    # 8 inputs in chunks of 4: items clean + 2 attack chunks.
    "detect": ["connectivity", "detect", "--models", MODEL, "--attacks", "optimization",
               "--num-samples", "8", "--points", "21", "--attack-steps", "20",
               "--batch-size", "4", "--folds", "2", "--quiet", "--root"],
}

CHILD = r"""
import json, os, sys
from pathlib import Path
from lst_jax import cli

JOBS, OUT, EXTRA = {jobs!r}, Path({out!r}), {extra!r}
for name, args in JOBS.items():
    assert cli.main([*args, str(OUT / name), *EXTRA]) == 0, name

from lst_jax.jobs.iaside.job import IasideConfig
from lst_jax.jobs.profile import profile_job
from lst_jax.jobs.profile.config import ProfileConfig
from lst_jax.robustness.evaluate import RobustnessConfig
cfg = ProfileConfig(
    robustness=RobustnessConfig(num_images=32, pgd_radii=(16,), pgd_steps=2,
                                corruptions=("gaussian_noise",), severities=(5,)),
    iaside=IasideConfig(num_bands=4, k=10),
    baseline={model!r}, analyses=("robustness", "iaside"))
profile_job([{model!r}], cfg, OUT / "profile", progress=False)

info = {{}}
if EXTRA:   # the multi-process run: a crash before the end of I-ASIDE, then a re-launch
    import jax
    from lst_jax.parallel import distributed as dist
    if dist.is_main_process():
        run = next((OUT / "iaside" / "models").iterdir())
        for f in ("result.json", "values.npz", "blocks/b00002.npz"):
            (run / f).unlink()
        (OUT / "iaside" / "summary.json").unlink()
        info["kept"] = {{p.name: p.stat().st_mtime_ns for p in (run / "blocks").iterdir()}}
    dist.barrier("deleted")
    assert cli.main([*JOBS["iaside"], str(OUT / "iaside"), *EXTRA]) == 0
    if dist.is_main_process():
        now = {{p.name: p.stat().st_mtime_ns for p in (run / "blocks").iterdir()}}
        info["rewritten"] = sorted(n for n in now if now[n] != info["kept"].get(n))
        info["kept"] = sorted(info["kept"])
emit(info)
"""

TIMES = {"seconds", "seconds_this_call", "timing_seconds", "run_dir", "versions", "unit_seconds"}


def _child(out, extra=()):
    return textwrap.dedent(CHILD.format(jobs=JOBS, out=str(out), extra=list(extra),
                                        model=MODEL))


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("one_process")
    run_python(_child(out), devices=4)
    return out


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    out = tmp_path_factory.mktemp("two_processes")
    port = free_port()
    prelude = (f"import json as _json\ndef emit(obj):\n"
               f"    print({RESULT_MARK!r} + _json.dumps(obj), flush=True)\n")
    procs = [subprocess.Popen(
        [sys.executable, "-c", prelude + _child(
            out, ["--coordinator", f"127.0.0.1:{port}", "--num-processes", "2",
                  "--process-id", str(i), "--heartbeat-timeout", "30"])],
        env=device_env(2), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True) for i in range(2)]
    results = wait_all(procs, timeout=900)
    for code, _, err in results:
        assert code == 0, err[-4000:]
    line = [l for l in results[0][1].splitlines() if l.startswith(RESULT_MARK)][-1]
    return out, json.loads(line[len(RESULT_MARK):]), results


def _files(root: Path) -> list[str]:
    """Result files under `root` (the run directories' `.lock` files are not results)."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")
                  if p.is_file() and p.name != ".lock")


def _same_json(a, b, where):
    if isinstance(a, dict):
        assert isinstance(b, dict) and set(a) - TIMES == set(b) - TIMES, where
        for k in set(a) - TIMES:
            _same_json(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _same_json(x, y, f"{where}[{i}]")
    elif isinstance(a, float) and isinstance(b, (int, float)):
        assert np.isclose(a, b, rtol=RTOL, atol=ATOL, equal_nan=True), (where, a, b)
    else:
        assert a == b, (where, a, b)


_NUMBER = re.compile(r"[-+]?\d+\.\d+(?:e[-+]?\d+)?")


def _same_table(a: str, b: str, where):
    """Markdown / CSV tables: the same text, printed floats within the display precision."""
    assert _NUMBER.sub("#", a) == _NUMBER.sub("#", b), where
    for x, y in zip(_NUMBER.findall(a), _NUMBER.findall(b)):
        digits = len(x.split(".")[1].split("e")[0])
        assert abs(float(x) - float(y)) <= 10.0 ** -digits + RTOL * abs(float(x)), (where, x, y)


def compare_runs(a: Path, b: Path, timed=()):
    """Same files; arrays and JSON equal (floats within RTOL/ATOL); tables too, except the
    files in `timed` (they print wall times; their JSON twins are compared)."""
    files = _files(a)
    assert files == _files(b)
    for f in files:
        if f.endswith(".npz"):
            za, zb = np.load(a / f), np.load(b / f)
            assert za.files == zb.files, f
            for k in set(za.files) - TIMES:
                if za[k].dtype.kind == "f":
                    np.testing.assert_allclose(za[k], zb[k], rtol=RTOL, atol=ATOL,
                                               err_msg=f"{f}:{k}")
                else:
                    np.testing.assert_array_equal(za[k], zb[k], err_msg=f"{f}:{k}")
        elif f.endswith(".json") and Path(f).name != "timing.json":
            _same_json(json.loads((a / f).read_text()), json.loads((b / f).read_text()), f)
        elif f.endswith((".md", ".csv")) and Path(f).name not in timed:
            _same_table((a / f).read_text(), (b / f).read_text(), f)


def test_iaside_two_processes_write_the_one_process_files(reference, two_processes):
    out, info, results = two_processes
    assert "wrote" in results[0][1] and "wrote" not in results[1][1]
    assert len(_files(reference / "iaside" / "models")) == 4 + 3      # 4 blocks + 3 files
    compare_runs(reference / "iaside", out / "iaside", timed=("iaside.md", "iaside.csv"))


def test_iaside_relaunch_after_a_crash_recomputes_only_the_missing_block(two_processes):
    _, info, _ = two_processes
    assert info["kept"] == ["b00000.npz", "b00001.npz", "b00003.npz"]
    assert info["rewritten"] == ["b00002.npz"]


@pytest.mark.parametrize("job", ["barrier", "detect"])
def test_connectivity_two_processes_write_the_one_process_files(reference, two_processes,
                                                                job):
    out, _, _ = two_processes
    assert any(f.endswith(f"{job}.md") for f in _files(reference / job))
    compare_runs(reference / job, out / job)


def test_profile_two_processes_write_the_one_process_files(reference, two_processes):
    out, _, _ = two_processes
    assert (reference / "profile" / "report.md").is_file()
    compare_runs(reference / "profile", out / "profile",
                 timed=("report.md", "profile.csv", "report.html"))
