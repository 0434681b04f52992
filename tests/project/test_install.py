"""A non-editable `pip install .` into a fresh virtual environment carries the shipped
checkpoints: `lst-jax models` lists the digits models as available from the installed
package and `lst-jax examples` runs from outside the source tree.

The environment reuses the test interpreter's installed dependencies (a .pth line to its
site-packages) and installs only lst_jax itself (without build isolation where this
interpreter has a recent setuptools): seconds."""

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _copy_source(dst: Path) -> Path:
    """The files a wheel is built from, copied (links kept) so the build writes nothing into
    the checkout."""
    dst.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, dst / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "lst_jax", dst / "lst_jax", symlinks=True, ignore=ignore)
    shutil.copytree(ROOT / "checkpoints", dst / "checkpoints", ignore=ignore)
    return dst


def _isolation_flags() -> list[str]:
    """`--no-build-isolation` where this interpreter can build the wheel itself (setuptools
    >= 68 as pyproject.toml asks, with bdist_wheel: built in from 70.1, else the `wheel`
    package); otherwise pip builds in an isolated environment (setuptools from the index)."""
    import importlib.util

    try:
        import setuptools
    except ImportError:
        return []
    version = tuple(int(p) for p in setuptools.__version__.split(".")[:2] if p.isdigit())
    if version >= (70, 1) or (version >= (68, 0) and importlib.util.find_spec("wheel")):
        return ["--no-build-isolation"]
    return []


@pytest.mark.slow
def test_pip_install_ships_the_checkpoints_and_examples_runs(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig."
                                "get_paths()['purelib'])"], check=True, capture_output=True,
                               text=True).stdout.strip())
    # the dependencies of this interpreter (plain path lines: its own .pth files, e.g. an
    # editable lst_jax, stay inactive)
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    src = _copy_source(tmp_path / "src")
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "LST_JAX_CHECKPOINTS")}
    env.update(JAX_PLATFORMS="cpu", PIP_DISABLE_PIP_VERSION_CHECK="1")
    pip = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install",
                          "-q", "--no-deps", *_isolation_flags(), str(src)],
                         env=env, capture_output=True, text=True, cwd=tmp_path)
    assert pip.returncode == 0, pip.stderr[-3000:]
    installed = site / "lst_jax"
    assert (installed / "checkpoints" / "digits_resnet-normal" / "metadata.json").is_file()
    size = sum(p.stat().st_size for p in (installed / "checkpoints").rglob("*") if p.is_file())
    assert size < 8e6, f"the shipped checkpoints take {size / 1e6:.1f} MB"

    work = tmp_path / "work"   # outside the checkout: only the installed package is found
    work.mkdir()
    lst_jax = venv / "bin" / "lst-jax"
    run = subprocess.run([str(lst_jax), "models"], env=env, cwd=work, capture_output=True,
                         text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    rows = {line.split()[0]: line.split() for line in run.stdout.splitlines()[1:] if line}
    for name in ("digits_resnet-normal", "digits_resnet-linf", "digits_vit-normal"):
        assert rows[name][4] == "yes", run.stdout
        assert rows[name][-1].startswith(str(installed.resolve())), rows[name]
    run = subprocess.run([str(lst_jax), "examples", "--k", "2", "--iters", "5", "--quiet",
                          "--out", str(work / "ex")], env=env, cwd=work, capture_output=True,
                         text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    assert (work / "ex" / "summary.json").is_file()
