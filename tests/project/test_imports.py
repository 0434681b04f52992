"""The package runs without its optional heavy packages: tensorflow-datasets (the `[tfds]` extra),
scikit-image and matplotlib are imported only where used (issue 20, "runs on the JAX a GPU user
has"). Each check runs in a fresh interpreter in which those modules cannot be imported."""

from __future__ import annotations

import subprocess
import sys

from subproc import ROOT, device_env, run_python

# `sys.modules[name] = None` makes `import name` raise ImportError in that interpreter.
BLOCK = """
import sys
for _name in ("tensorflow_datasets", "tensorflow", "skimage", "matplotlib"):
    sys.modules[_name] = None
"""


def test_shipped_digits_model_runs_without_tensorflow_datasets():
    out = run_python(BLOCK + """
        import jax, numpy as np
        import lst_jax, lst_jax.cli
        from lst_jax.models import load_model
        from lst_jax.data.digits import load_digits32
        from lst_jax.traversal import level_set_traversal, preset

        m = load_model("digits_resnet-normal")
        x, y = load_digits32("test")
        logits = np.asarray(m.model_fn(m.params, x[:8]))
        res = level_set_traversal(m.model_fn, m.params, x[:2], x[2:4], y[:2],
                                  key=jax.random.key(0), config=preset("paper", iters=3))
        emit({"accuracy": float(np.mean(logits.argmax(-1) == y[:8])),
              "shape": list(np.asarray(res.images).shape),
              "conf": np.asarray(res.record.conf_source).shape[0],
              "loaded": sorted(k for k in ("tensorflow_datasets", "skimage", "matplotlib")
                               if sys.modules.get(k) is not None)})
    """.replace("\n        ", "\n"), devices=1)
    assert out["accuracy"] >= 0.75          # the shipped model classifies test digits
    assert out["shape"] == [2, 32, 32, 3] and out["conf"] == 3
    assert out["loaded"] == []


def test_cli_help_without_tensorflow_datasets():
    code = BLOCK + ("sys.argv = ['lst-jax', '--help']\n"
                    "from lst_jax.cli import main\nmain()\n")
    proc = subprocess.run([sys.executable, "-c", code], env=device_env(1), cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "examples" in proc.stdout and "full-eval" in proc.stdout


def test_tfds_data_without_the_extra_names_the_extra():
    out = run_python(BLOCK + """
        from lst_jax.data.sources import open_source
        try:
            open_source("cifar10")
        except ImportError as e:
            emit(str(e))
    """.replace("\n        ", "\n"), devices=1)
    assert "lst_jax[tfds]" in out
