"""Repository hygiene: the README's commands are what CI runs; no pickles are tracked."""

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _readme_commands():
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```(?:bash|sh)?\n(.*?)```", text, flags=re.S)
    return [line.strip() for line in blocks[0].splitlines() if line.strip()
            and not line.strip().startswith("#")]


def test_readme_starts_with_the_two_commands():
    run_cmd, test_cmd = _readme_commands()[:2]
    assert "lst-jax examples" in run_cmd and "pip install" in run_cmd
    assert "pytest" in test_cmd


def test_ci_runs_exactly_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()
    assert ci[-1].strip() == _readme_commands()[1]


def test_no_pickle_files_are_tracked():
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True)
    if files.returncode != 0:  # not a git checkout (e.g. an sdist): nothing to check
        return
    assert not [f for f in files.stdout.splitlines() if f.endswith((".pkl", ".pickle"))]


def _pins(lines):
    """{name: version} of the `name==version` / `name>=version` requirement strings in `lines`."""
    out = {}
    for line in lines:
        m = re.fullmatch(r'\s*"?([A-Za-z0-9_.-]+)(==|>=)([0-9][^",;\s]*)"?,?\s*', line)
        if m:
            out[m.group(1).lower()] = (m.group(2), m.group(3))
    return out


def test_ci_installs_the_lower_bounds_of_the_dependency_ranges():
    """pyproject.toml gives jax/jaxlib/flax as ranges (>=, installable over a GPU build of JAX);
    .ci/constraints.txt, which .ci/run applies, pins exactly their lower bounds."""
    deps = _pins((ROOT / "pyproject.toml").read_text().splitlines())
    pins = _pins((ROOT / ".ci" / "constraints.txt").read_text().splitlines())
    assert set(pins) >= {"jax", "jaxlib", "flax"}
    for name, (op, version) in pins.items():
        assert op == "==" and deps[name] == (">=", version), name
    assert "PIP_CONSTRAINT" in (ROOT / ".ci" / "run").read_text()
    assert "==" not in "".join(k for k in (ROOT / "requirements.txt").read_text().splitlines()
                               if k.startswith(("jax", "flax")))
