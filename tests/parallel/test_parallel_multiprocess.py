"""Two processes on one machine (jax.distributed on 127.0.0.1, gloo CPU collectives).

- a small resumable job gives the same files as one process with the same 4 devices;
- when one process dies mid-run the other stops with a clear error within seconds, the
  finished batches stay on disk, and a re-launch computes only the missing ones.
"""

import json
import subprocess
import sys
import time

import numpy as np
import pytest

from subproc import ROOT, TESTS, device_env, free_port, wait_all

JOB = str(TESTS / "parallel_job.py")
HEARTBEAT = 10   # seconds (detection here is faster: the gloo connection resets)


def _launch(out, n_proc, devices_per_proc, extra=()):
    """Starts the job as `n_proc` processes; returns the Popen objects."""
    port = free_port()
    procs = []
    for i in range(n_proc):
        cmd = [sys.executable, JOB, "--out", str(out), *extra]
        if n_proc > 1:
            cmd += ["--coordinator", f"127.0.0.1:{port}", "--num-processes", str(n_proc),
                    "--process-id", str(i), "--heartbeat-timeout", str(HEARTBEAT)]
        procs.append(subprocess.Popen(cmd, env=device_env(devices_per_proc), cwd=ROOT,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True))
    return procs


def _wait(procs, timeout=300):
    return wait_all(procs, timeout)


def _ok(results):
    computed = []
    for code, out, err in results:
        assert code == 0, err[-3000:]
        computed.append(json.loads(out.strip().splitlines()[-1])["computed"])
    return computed


def _files(root):
    files = {}
    for f in sorted(root.rglob("*.npz")):
        with np.load(f, allow_pickle=False) as z:
            files[str(f.relative_to(root))] = {k: z[k] for k in z.files}
    return files


def _target_logits_tolerance():
    """Tolerance of the target logits between layouts, from a float64 run of the same model.

    One process with 4 devices and two with 2 devices each put a row at another position of its
    device's batch (row 5 is the second of its device's pair in one layout, the first in the
    other); XLA:CPU with AVX-512 (CI) then sums the convolutions in another order, a few ulps
    apart (measured there: 2.4e-7 on logits of magnitude 2). The traversal batches run one
    global program in both layouts and stay bitwise equal."""
    import jax
    import jax.numpy as jnp

    from subproc import fast_tiny_cnn
    from tolerances import float64_atol

    model_fn, params = fast_tiny_cnn(0, (16, 16, 3), logit_scale=30.0)
    rng = np.random.default_rng(0)                     # the job's draws: sources, then targets
    rng.uniform(size=(10, 16, 16, 3))
    xt = rng.uniform(size=(10, 16, 16, 3)).astype(np.float32)
    l32 = np.asarray(model_fn(params, xt))
    with jax.enable_x64(True):
        l64 = np.asarray(model_fn(jax.tree.map(lambda v: np.asarray(v, np.float64), params),
                                  jnp.asarray(xt, jnp.float64)))
    return float64_atol(l32, l64)


def _assert_same_files(a, b):
    fa, fb = _files(a), _files(b)
    assert sorted(fa) == sorted(fb)
    for name in fa:
        assert sorted(fa[name]) == sorted(fb[name]), name
        for k in fa[name]:
            if name == "target_logits.npz":
                np.testing.assert_allclose(fa[name][k], fb[name][k], rtol=0,
                                           atol=_target_logits_tolerance(),
                                           err_msg=f"{name}:{k}")
            else:
                np.testing.assert_array_equal(fa[name][k], fb[name][k], err_msg=f"{name}:{k}")


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """One process with 4 devices: the layout two processes x 2 devices reproduce."""
    out = tmp_path_factory.mktemp("single")
    assert _ok(_wait(_launch(out, 1, 4))) == [[0, 1, 2]]
    return out


def test_two_processes_write_the_single_process_files(reference, tmp_path):
    computed = _ok(_wait(_launch(tmp_path, 2, 2)))
    assert computed == [[0, 1, 2], [0, 1, 2]]
    assert sorted(_files(tmp_path)) == ["batches/000.npz", "batches/001.npz", "batches/002.npz",
                                        "target_logits.npz"]
    _assert_same_files(reference, tmp_path)


def test_dead_process_stops_the_other_and_relaunch_resumes(reference, tmp_path):
    procs = _launch(tmp_path, 2, 2, ["--die-at", "1"])
    start = time.monotonic()
    (code0, _, err0), (code1, _, err1) = _wait(procs, timeout=120)
    elapsed = time.monotonic() - start
    assert code1 == 7 and "exits at batch 1" in err1
    assert code0 != 0
    assert ("another process has probably died" in err0
            or "Terminating process because the JAX distributed service" in err0), err0[-3000:]
    assert elapsed < 120
    # Batch 0 was finished and written before the failure; nothing else was.
    assert sorted(_files(tmp_path)) == ["batches/000.npz"]
    # The re-launch computes only the missing batches and ends with the reference files.
    computed = _ok(_wait(_launch(tmp_path, 2, 2)))
    assert computed == [[1, 2], [1, 2]]
    _assert_same_files(reference, tmp_path)
