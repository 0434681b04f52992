"""Checkpoints are verified on load: one flipped byte in a copy's weight file makes every
command refuse it (naming the checkpoint and both digests); unreadable metadata files are
named; every cache is keyed by the digest of the weights actually restored, so a cache made
with one checkpoint is never served for another."""

import json
import shutil
from pathlib import Path

import jax
import numpy as np
import pytest

from lst_jax import cli
from lst_jax.models.checkpoint import (
    CheckpointError,
    load_checkpoint,
    save_checkpoint,
    tree_digest,
    verified_digest,
)
from lst_jax.models.registry import checkpoint_digest, checkpoint_root, load_model

MODEL = "digits_resnet-normal"


def _weight_file(ck: Path) -> Path:
    """The largest file of the orbax state: the parameter bytes."""
    return max((p for p in (ck / "state").rglob("*") if p.is_file()),
               key=lambda p: p.stat().st_size)


@pytest.fixture(scope="module")
def copies(tmp_path_factory):
    """A good copy, a copy with one flipped byte in its weight file and a copy whose weights
    were changed and re-saved (a valid checkpoint of other weights), each as `<root>/MODEL`."""
    base = tmp_path_factory.mktemp("checkpoints")
    good = base / "good" / MODEL
    shutil.copytree(checkpoint_root() / MODEL, good)
    corrupt = base / "corrupt" / MODEL
    shutil.copytree(good, corrupt)
    f = _weight_file(corrupt)
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0x01
    f.write_bytes(bytes(data))
    variables, meta = load_checkpoint(good)
    edited = base / "edited" / MODEL
    leaves, treedef = jax.tree.flatten(variables["params"])
    leaves = [np.asarray(v) * 1.1 for v in leaves]          # other, still valid, weights
    variables["params"] = jax.tree.unflatten(treedef, leaves)
    save_checkpoint(edited, variables, {k: v for k, v in meta.items() if k != "digest"})
    return {"good": good, "corrupt": corrupt, "edited": edited}


def test_a_flipped_byte_is_refused_naming_the_checkpoint_and_both_digests(copies):
    good_digest = json.loads((copies["good"] / "metadata.json").read_text())["digest"]
    with pytest.raises(CheckpointError) as e:
        load_model(MODEL, copies["corrupt"])
    msg = str(e.value)
    assert str(copies["corrupt"]) in msg and good_digest in msg
    restored, _ = load_checkpoint(copies["corrupt"], verify=False)   # the explicit opt-out
    assert tree_digest(restored) in msg and tree_digest(restored) != good_digest
    with pytest.raises(CheckpointError):
        checkpoint_digest(MODEL, copies["corrupt"].parent)           # what caches key on
    assert verified_digest(copies["good"]) == good_digest
    assert checkpoint_digest(MODEL, copies["edited"]) != good_digest


COMMANDS = [
    ["examples", "--model", MODEL, "--k", "2", "--iters", "2", "--quiet"],
    ["pool", "--models", MODEL, "--quiet"],
    ["full-eval", "--model", MODEL, "--num-samples", "2", "--rounds", "2", "--iters", "2",
     "--metrics", "none", "--quiet"],
    ["iaside", "--models", MODEL, "--k", "4", "--bands", "2", "--quiet"],
    ["connectivity", "barrier", "--models", MODEL, "--quick", "--quiet"],
    ["connectivity", "detect", "--models", MODEL, "--quick", "--quiet"],
    ["connectivity", "bypass", "--model", MODEL, "--quick", "--quiet"],
]


@pytest.mark.parametrize("argv", COMMANDS, ids=lambda a: " ".join(a[:2]))
def test_every_command_refuses_a_corrupt_checkpoint(argv, copies, tmp_path, capsys):
    out = ["--root" if argv[0] == "connectivity" and argv[1] != "bypass" else "--out",
           str(tmp_path / "out")]
    assert cli.main([*argv, "--checkpoint", str(copies["corrupt"]), *out]) == 2
    err = capsys.readouterr().err
    assert f"checkpoint {copies['corrupt']} is corrupt or was modified" in err, err


def test_profile_refuses_a_corrupt_checkpoint_under_lst_jax_checkpoints(copies, tmp_path,
                                                                         monkeypatch, capsys):
    monkeypatch.setenv("LST_JAX_CHECKPOINTS", str(copies["corrupt"].parent))
    assert cli.main(["profile", "--models", MODEL, "--preset", "quick", "--analyses",
                     "iaside", "--quiet", "--out", str(tmp_path / "p")]) == 2
    assert "is corrupt or was modified" in capsys.readouterr().err


def test_caches_are_never_crossed_between_checkpoints(copies, tmp_path, capsys):
    def iaside(which):
        out = tmp_path / "shared"
        status = cli.main(["iaside", "--models", MODEL, "--k", "6", "--bands", "3", "--quiet",
                           "--checkpoint", str(copies[which]), "--out", str(out)])
        if status:
            return status, None
        runs = {p.name: json.loads((p / "result.json").read_text())
                for p in (out / "models").iterdir() if (p / "result.json").is_file()}
        return status, runs

    status, runs = iaside("edited")          # a cache from other (valid) weights first
    assert status == 0 and len(runs) == 1
    edited_run, = runs.values()
    status, runs = iaside("good")            # not served from it: its own run
    assert status == 0 and len(runs) == 2
    good_run, = (r for r in runs.values() if r != edited_run)
    assert good_run["checkpoint_digest"] == checkpoint_digest(MODEL, copies["good"])
    assert edited_run["checkpoint_digest"] == checkpoint_digest(MODEL, copies["edited"])
    assert good_run["distribution"] != edited_run["distribution"]
    capsys.readouterr()
    assert iaside("corrupt")[0] == 2         # the good run's cache is not served either
    assert "is corrupt or was modified" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["metadata.json", "state/_METADATA"])
def test_truncated_metadata_files_are_named(copies, tmp_path, name, capsys):
    ck = tmp_path / MODEL
    shutil.copytree(copies["good"], ck)
    f = ck / name
    f.write_bytes(f.read_bytes()[:20])
    assert cli.main(["iaside", "--models", MODEL, "--k", "4", "--bands", "2", "--quiet",
                     "--checkpoint", str(ck), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert str(f) in err and "unreadable" in err, err


@pytest.mark.parametrize("name", [MODEL, "resnet50-normal"])
def test_missing_checkpoint_messages_name_both_ways_to_point_at_one(name, tmp_path, capsys):
    with pytest.raises(FileNotFoundError) as e:
        load_model(name, tmp_path)
    assert "LST_JAX_CHECKPOINTS" in str(e.value) and "--checkpoint" in str(e.value)
    assert cli.main(["models", "--checkpoints", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "LST_JAX_CHECKPOINTS" in out and "--checkpoint" in out
