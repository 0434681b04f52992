"""Run Python in a fresh interpreter with N fake CPU devices (XLA_FLAGS must be set before jax
is imported, so multi-device tests cannot run in the pytest process)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import flax.linen as nn
import jax.numpy as jnp

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
RESULT_MARK = "@@RESULT@@"


def device_env(devices: int, **extra) -> dict:
    """Environment of a child process with `devices` fake CPU devices and the repo importable."""
    env = dict(os.environ)
    # Other XLA flags of the parent (e.g. --xla_cpu_max_isa=AVX, to run the suite at another
    # vector width) are kept; only the device count is replaced.
    kept = [f for f in env.get("XLA_FLAGS", "").split()
            if not f.startswith("--xla_force_host_platform_device_count")]
    env["XLA_FLAGS"] = " ".join(kept + [f"--xla_force_host_platform_device_count={devices}"])
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(TESTS)] +
                                        ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    # Children share a persistent compilation cache: the same tiny programs are compiled by
    # several processes (multi-process tests), and again on the next run.
    env.setdefault("JAX_COMPILATION_CACHE_DIR", str(Path(tempfile.gettempdir())
                                                    / "lst_jax_test_compilation_cache"))
    env.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    env.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
    env.update({k: str(v) for k, v in extra.items()})
    return env


def run_python(code: str, devices: int = 8, timeout: float = 600):
    """Runs `code` in a child with `devices` CPU devices; returns what it passed to `emit`.

    The snippet calls `emit(obj)` (predefined) once with a JSON-serialisable result.
    """
    prelude = textwrap.dedent(f"""
        import json as _json
        def emit(obj):
            print({RESULT_MARK!r} + _json.dumps(obj), flush=True)
    """)
    proc = subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)],
                          env=device_env(devices), capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)
    if proc.returncode != 0:
        raise AssertionError(f"child failed with code {proc.returncode}:\n{proc.stderr[-4000:]}")
    lines = [l for l in proc.stdout.splitlines() if l.startswith(RESULT_MARK)]
    if not lines:
        raise AssertionError(f"child emitted no result; stdout:\n{proc.stdout[-2000:]}")
    return json.loads(lines[-1][len(RESULT_MARK):])


def wait_all(procs, timeout: float = 300) -> list:
    """(returncode, stdout, stderr) of every process; kills them all if one hangs."""
    results = []
    for p in procs:
        try:
            out, err = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise AssertionError(f"a child process hung (> {timeout} s): {p.args}")
        results.append((p.returncode, out, err))
    return results


def kill_cli_when(args, ready, timeout: float = 300) -> None:
    """Runs `python -m lst_jax.cli *args` and SIGKILLs it as soon as `ready()` is true
    (polled every 20 ms); fails if the command ends first or `ready` never holds."""
    import signal
    import time

    env = dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu")
    proc = subprocess.Popen([sys.executable, "-m", "lst_jax.cli", *map(str, args)], cwd=ROOT,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + timeout
    try:
        while time.time() < deadline and proc.poll() is None and not ready():
            time.sleep(0.02)
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        assert ready(), f"not ready after {timeout} s"
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stderr.close()


# Runs the `lst-jax` program (`lst_jax.cli.run`) with every `RunDir.save_npz` followed by a
# pause of LST_JAX_TEST_SAVE_PAUSE seconds: a signal sent once a chunk file exists then lands
# while the command still has work to do, whatever the machine's speed.
_PAUSED_CLI = """
import os, sys, time
from lst_jax.jobs import rundir
_save = rundir.RunDir.save_npz
def _paused(self, *a, **k):
    out = _save(self, *a, **k)
    time.sleep(float(os.environ["LST_JAX_TEST_SAVE_PAUSE"]))
    return out
rundir.RunDir.save_npz = _paused
from lst_jax.cli import run
run()
"""


def start_cli(args, *, pause: float = 0.0) -> subprocess.Popen:
    """Starts `lst-jax *args` in a child process (stdout, stderr piped, text); with `pause`,
    every finished chunk file (`RunDir.save_npz`) is followed by that many seconds of
    sleep, so that a test can signal it mid-run deterministically."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu",
               LST_JAX_TEST_SAVE_PAUSE=str(pause))
    return subprocess.Popen([sys.executable, "-c", _PAUSED_CLI, *map(str, args)], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def signal_cli_when(args, ready, sig, *, pause: float = 2.0, timeout: float = 300):
    """Runs `lst-jax *args` (`start_cli` with `pause`), sends `sig` as soon as `ready()`
    holds (polled every 20 ms) and returns (exit status, stderr); fails if the command
    ends first or `ready` never holds."""
    import time

    proc = start_cli(args, pause=pause)
    deadline = time.time() + timeout
    try:
        while time.time() < deadline and proc.poll() is None and not ready():
            time.sleep(0.02)
        if proc.poll() is not None:
            raise AssertionError(f"the command ended (status {proc.returncode}) before it "
                                 f"was signalled:\n{proc.stderr.read()[-3000:]}")
        assert ready(), f"not ready after {timeout} s"
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=120)
        return proc.returncode, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TinyCNN(nn.Module):
    """Conv-ReLU-pool-conv-ReLU-GAP-Dense; the test twin of `TorchTinyCNN` (defined here, not in
    conftest, because conftest imports torch: seconds in every child process)."""

    num_classes: int = 10

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.relu(nn.Conv(8, (3, 3), padding=1, name="conv1")(x))
        x = nn.avg_pool(x, (2, 2), (2, 2))
        x = nn.relu(nn.Conv(16, (3, 3), padding=1, name="conv2")(x))
        x = jnp.mean(x, axis=(1, 2))
        return nn.Dense(self.num_classes, name="fc")(x), {"pre_logits": x}


def fast_tiny_cnn(seed: int = 0, image_shape=(16, 16, 3), num_classes: int = 10,
                  logit_scale: float = 1.0):
    """A TinyCNN (as in conftest) whose parameters are drawn with numpy (LeCun-normal kernels, zero
    biases) on the structure from `jax.eval_shape`: no compilation, which matters in fresh
    child processes (XLA:CPU compiles of even tiny init programs cost seconds on busy cores)."""
    import jax
    import numpy as np

    from lst_jax.models.wrapper import Classifier

    model_fn = Classifier(TinyCNN(num_classes))
    shapes = jax.eval_shape(lambda: model_fn.init(jax.random.key(0), tuple(image_shape)))
    rng = np.random.default_rng(seed)

    def draw(path, s):
        if jax.tree_util.keystr(path).endswith("['bias']"):
            return np.zeros(s.shape, np.float32)
        fan_in = int(np.prod(s.shape[:-1]))
        return (rng.standard_normal(s.shape) / np.sqrt(fan_in)).astype(np.float32)

    params = jax.tree_util.tree_map_with_path(draw, shapes)
    params["params"]["fc"]["kernel"] = params["params"]["fc"]["kernel"] * np.float32(logit_scale)
    return model_fn, params
