"""Orbax checkpoints with a metadata JSON, written atomically.

Layout of a checkpoint directory:
    <dir>/metadata.json   architecture, normalisation, accuracy, training command, seed, ...
    <dir>/state/          orbax StandardCheckpointer tree of the Flax variables
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import jax
import numpy as np

from lst_jax.utils.trees import param_count


def _checkpointer(process_local: bool = False):
    import orbax.checkpoint as ocp

    if not process_local or jax.process_count() == 1:
        return ocp.StandardCheckpointer()
    # Restoring is local to each process of a multi-process run (each reads its own copy,
    # possibly only process 0 does): no cross-process barriers.
    i = jax.process_index()
    return ocp.StandardCheckpointer(multiprocessing_options=ocp.options.MultiprocessingOptions(
        primary_host=i, active_processes={i}, barrier_sync_key_prefix=f"lst_jax_restore_{i}"))


def save_checkpoint(path, variables, metadata: dict) -> Path:
    """Saves `variables` (a pytree of arrays) and `metadata` to `path`, atomically.

    Everything is first written to a temporary sibling directory, then renamed, so `path`
    never holds a half-written checkpoint. An existing `path` is replaced.
    """
    path = Path(path).absolute()
    path.parent.mkdir(parents=True, exist_ok=True)
    variables = jax.tree.map(np.asarray, variables)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        ck = _checkpointer()
        ck.save(tmp / "state", variables)
        ck.wait_until_finished()
        meta = dict(metadata)
        meta["param_count"] = param_count(variables)
        meta["digest"] = tree_digest(variables)
        (tmp / "metadata.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


class CheckpointError(ValueError):
    """A checkpoint that cannot be trusted: unreadable files, or restored parameters whose
    digest differs from the one recorded when it was saved."""


def _read_json_file(file: Path, what: str):
    try:
        obj = json.loads(file.read_text())
    except (ValueError, UnicodeDecodeError) as e:   # JSONDecodeError is a ValueError
        raise CheckpointError(f"{what} {file} is unreadable (truncated or corrupt?): "
                              f"{e}") from e
    if not isinstance(obj, dict):
        raise CheckpointError(f"{what} {file} does not hold a JSON object")
    return obj


def read_metadata(path) -> dict:
    """The metadata.json of the checkpoint at `path`.

    Raises:
        FileNotFoundError: no metadata.json; CheckpointError: it is not a JSON object
        (the message names the file).
    """
    path = Path(path)
    meta_file = path / "metadata.json"
    if not meta_file.is_file():
        raise FileNotFoundError(f"no checkpoint at {path} (missing {meta_file.name}); point "
                                "--checkpoint at a checkpoint directory, or set "
                                "LST_JAX_CHECKPOINTS to the root holding it")
    return _read_json_file(meta_file, "checkpoint metadata")


# fingerprint of a checkpoint's files -> the verified digest of its restored parameters
_VERIFIED: dict[tuple, str] = {}


def _fingerprint(path: Path) -> tuple:
    """(path, size and mtime of every file): changes whenever a file of the checkpoint does."""
    files = sorted(p for p in path.rglob("*") if p.is_file())
    return (str(path), tuple((str(p.relative_to(path)), p.stat().st_size, p.stat().st_mtime_ns)
                             for p in files))


def load_checkpoint(path, abstract_variables=None, *, verify: bool = True):
    """Restores the variables of a checkpoint written by `save_checkpoint`.

    The digest of the restored variables (`tree_digest`) is compared with the one recorded in
    metadata.json at save time, so a corrupted or edited weight file is refused instead of
    giving silently different numbers. The returned metadata's `digest` is always the digest
    of the variables actually restored (what caches and run manifests key on).

    Args:
        abstract_variables: optional pytree of `jax.ShapeDtypeStruct` (e.g. from
            `jax.eval_shape(module.init, ...)`); when given, the stored tree must match it
            exactly and a mismatch raises a ValueError listing the differing keys.
        verify: False skips the comparison with the recorded digest (for checkpoints edited
            by hand on purpose; re-save them with `save_checkpoint` to record the new digest).

    Returns:
        (variables as nested dicts of numpy-backed jax arrays, metadata dict)

    Raises:
        FileNotFoundError: no metadata.json or state/; CheckpointError: an unreadable file
        (named), or a digest mismatch (the message names the checkpoint and both digests).
    """
    path = Path(path).absolute()
    meta = read_metadata(path)
    state = path / "state"
    if not state.is_dir():
        raise FileNotFoundError(f"checkpoint {path} has no state/ directory")
    for name in ("_METADATA", "_CHECKPOINT_METADATA"):   # orbax's own JSON files
        if (state / name).is_file():
            _read_json_file(state / name, "orbax metadata file")
    fingerprint = _fingerprint(path)
    ck = _checkpointer(process_local=True)
    try:
        restored = ck.restore(state)
    except (ValueError, OSError) as e:
        raise CheckpointError(f"checkpoint {path} cannot be restored (corrupt or truncated "
                              f"file?): {e}") from e
    if abstract_variables is not None:
        check_tree_matches(restored, abstract_variables, what=f"checkpoint {path}")
    restored = jax.tree.map(np.asarray, restored)
    digest = tree_digest(restored)
    recorded = meta.get("digest")
    if verify and recorded and recorded != digest:
        raise CheckpointError(
            f"checkpoint {path} is corrupt or was modified: its parameters have digest "
            f"{digest}, but {path / 'metadata.json'} records {recorded} (restore the "
            "checkpoint from its source; if you changed the weights on purpose, re-save them "
            "with lst_jax.models.checkpoint.save_checkpoint to record the new digest)")
    if verify or not recorded or recorded == digest:
        _VERIFIED[fingerprint] = digest
    return restored, {**meta, "digest": digest}


def verified_digest(path) -> str:
    """The digest of the parameters of the checkpoint at `path`, restored and verified
    against its metadata (`load_checkpoint`); remembered per process while no file of the
    checkpoint changes, so asking again costs a directory listing.

    Raises:
        as `load_checkpoint`.
    """
    path = Path(path).absolute()
    if not (path / "metadata.json").is_file():
        read_metadata(path)   # raises the FileNotFoundError
    hit = _VERIFIED.get(_fingerprint(path))
    if hit is not None:
        return hit
    return load_checkpoint(path)[1]["digest"]


def _flat(tree) -> dict[str, tuple]:
    flat = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {jax.tree_util.keystr(k, simple=True, separator="/"): (tuple(np.shape(v)),
                                                                  str(np.dtype(v.dtype)))
            for k, v in flat}


def check_tree_matches(tree, reference, *, what: str = "tree"):
    """Raises one ValueError listing missing, unexpected and mis-shaped keys, if any."""
    got, want = _flat(tree), _flat(reference)
    missing = sorted(set(want) - set(got))
    unexpected = sorted(set(got) - set(want))
    shapes = sorted(f"{k}: got {got[k][0]}, expected {want[k][0]}"
                    for k in set(got) & set(want) if got[k][0] != want[k][0])
    if missing or unexpected or shapes:
        parts = [f"{what} does not match the model's parameter tree:"]
        if missing:
            parts.append(f"  missing keys ({len(missing)}): {missing}")
        if unexpected:
            parts.append(f"  unexpected keys ({len(unexpected)}): {unexpected}")
        if shapes:
            parts.append(f"  mis-shaped ({len(shapes)}): {shapes}")
        raise ValueError("\n".join(parts))


def tree_digest(tree) -> str:
    """sha256 over the keys, shapes, dtypes and bytes of a pytree (order-independent)."""
    h = hashlib.sha256()
    flat = jax.tree_util.tree_flatten_with_path(tree)[0]
    for k, v in sorted(flat, key=lambda kv: jax.tree_util.keystr(kv[0])):
        a = np.ascontiguousarray(np.asarray(v))
        h.update(jax.tree_util.keystr(k).encode())
        h.update(str(a.shape).encode() + str(a.dtype).encode())
        h.update(a.tobytes())
    return h.hexdigest()
