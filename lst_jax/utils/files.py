"""Atomic files and JSON-ready values: what every writer of results uses (the run directories
of the jobs, the target pool of the data layer)."""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from pathlib import Path

import numpy as np


def atomic_write_bytes(path: Path, write) -> Path:
    """Writes `path` through `write(file)` into a temporary file of the same directory, then
    renames it: a reader never sees a half-written file, an interrupt leaves none behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; results are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def jsonable(obj):
    """`obj` with dataclasses, numpy arrays and scalars and paths turned into JSON types."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return jsonable(dataclasses.asdict(obj))
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    return obj


def write_json_atomic(path, obj) -> Path:
    """`obj` (through `jsonable`) as indented, key-sorted JSON at `path`, atomically."""
    text = json.dumps(jsonable(obj), indent=2, sort_keys=True, allow_nan=True) + "\n"
    return atomic_write_bytes(Path(path), lambda f: f.write(text.encode()))
