"""A run directory: manifest.json, arrays as .npz, tables and figures; atomic writes only."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import platform
import sys
from pathlib import Path

import numpy as np

from lst_jax.utils.files import atomic_write_bytes as _atomic_write_bytes
from lst_jax.utils.files import jsonable as jsonable


def cpu_model_name() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else `platform.processor()`."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def package_versions() -> dict:
    import importlib.metadata as md

    out = {"python": sys.version.split()[0], "platform": platform.platform()}
    for pkg in ("lst_jax", "jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy",
                "matplotlib"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = None
    try:
        import jax

        out["backend"] = jax.default_backend()
        out["devices"] = [str(d) for d in jax.devices()]
    except Exception:  # pragma: no cover - jax always importable here
        pass
    return out


LOCK_NAME = ".lock"


class RunDirBusy(ValueError):
    """The run directory is being written by another process."""


# run directory (resolved) -> [open lock file, number of live RunDir objects holding it]
_LOCKS: dict[Path, list] = {}
# every run directory this process has opened for writing, in order (for the interrupt line)
_OPENED: list[Path] = []


def _acquire(root: Path) -> bool:
    """Takes (or re-enters) this process's exclusive lock on `root`; False where the
    directory is read-only (nothing can be written there anyway).

    The lock is `fcntl.flock` on `root/.lock`: the kernel releases it when the process
    exits or dies, so a crashed run never leaves a stale lock.

    Raises:
        RunDirBusy: another process holds it (the message names that process).
    """
    key = root.resolve()
    if key in _LOCKS:
        _LOCKS[key][1] += 1
        return True
    try:
        # never written to: taking the lock changes no byte and no time stamp of the run
        f = open(root / LOCK_NAME, "a")
    except OSError:          # read-only directory: reading a finished run needs no lock
        return False
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = _lock_holder(root / LOCK_NAME)
        f.close()
        raise RunDirBusy(f"run directory {root} is in use by {holder}; wait for it to "
                         "finish (or stop it), or choose another output directory") from None
    _LOCKS[key] = [f, 1]
    if key not in _OPENED:
        _OPENED.append(key)
    return True


def _lock_holder(lock_file: Path) -> str:
    """"process PID (command)" of the holder of the flock on `lock_file`, from Linux's
    /proc/locks; "another process" where that is not available."""
    try:
        inode = os.stat(lock_file).st_ino
        for line in Path("/proc/locks").read_text().splitlines():
            fields = line.split()
            if "FLOCK" in fields and len(fields) > 5 and fields[5].endswith(f":{inode}"):
                pid = int(fields[4])
                args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                args = [a.decode(errors="replace") for a in args if a]
                what = " ".join([Path(args[0]).name] + args[1:3]) if args else "?"
                return f"process {pid} ({what[:80]})"
    except (OSError, ValueError, IndexError):
        pass
    return "another process"


def _release(root: Path) -> None:
    key = root.resolve()
    held = _LOCKS.get(key)
    if held is None:
        return
    held[1] -= 1
    if held[1] <= 0:
        del _LOCKS[key]
        held[0].close()      # closing the file releases the flock


def opened_run_dirs() -> list[Path]:
    """The run directories this process has opened (locked) since `forget_opened_run_dirs`,
    in order: where an interrupted command's finished work is."""
    return list(_OPENED)


def forget_opened_run_dirs() -> None:
    _OPENED.clear()


class RunDir:
    """Files of one run under `root`; every write goes to a temporary name, then a rename.

    A run directory is written by one process at a time: a RunDir holds an exclusive lock
    on `root/.lock` (`fcntl.flock`, re-entrant within the process) while any RunDir object
    of that directory is alive; another process gets `RunDirBusy`. The kernel drops the lock
    when its process exits or crashes, so a lock is never stale.
    """

    def __init__(self, root, *, lock: bool = True):
        """`lock=False` for a reader that writes nothing (e.g. `lst-jax tables`)."""
        self.root = Path(root)
        self._locked = False
        if self.root.exists() and not self.root.is_dir():
            raise ValueError(f"output path {self.root} exists and is not a directory")
        self.root.mkdir(parents=True, exist_ok=True)
        self._locked = _acquire(self.root) if lock else False

    def __del__(self):
        if getattr(self, "_locked", False):
            self._locked = False
            try:
                _release(self.root)
            except Exception:   # interpreter shutdown: the kernel releases the lock anyway
                pass

    def path(self, name: str) -> Path:
        return self.root / name

    def write_json(self, name: str, obj) -> Path:
        text = json.dumps(jsonable(obj), indent=2, sort_keys=True, allow_nan=True) + "\n"
        return _atomic_write_bytes(self.path(name), lambda f: f.write(text.encode()))

    def read_json(self, name: str):
        return json.loads(self.path(name).read_text())

    def write_text(self, name: str, text: str) -> Path:
        return _atomic_write_bytes(self.path(name), lambda f: f.write(text.encode()))

    def write_bytes(self, name: str, data: bytes) -> Path:
        return _atomic_write_bytes(self.path(name), lambda f: f.write(data))

    def exists(self, name: str) -> bool:
        return self.path(name).is_file()

    def save_npz(self, name: str, **arrays) -> Path:
        arrays = {k: np.asarray(v) for k, v in arrays.items()}
        return _atomic_write_bytes(self.path(name), lambda f: np.savez(f, **arrays))

    def load_npz(self, name: str) -> dict:
        with np.load(self.path(name), allow_pickle=False) as z:
            return {k: z[k] for k in z.files}

    def write_manifest(self, **fields) -> Path:
        return self.write_json("manifest.json", {**fields, "versions": package_versions()})

    def ensure_manifest(self, config: dict, **fields) -> dict:
        """Starts or resumes a run: writes the manifest if absent, otherwise checks that the
        stored `config` equals `config` (JSON-normalised) and returns the stored manifest.

        Raises:
            ValueError: the directory holds a run with a different config (the message lists
            the differing keys), or an unreadable manifest.
        """
        want = json.loads(json.dumps(jsonable(config), sort_keys=True))
        if self.exists("manifest.json"):
            try:
                have = self.read_json("manifest.json")
            except ValueError as e:
                raise ValueError(f"{self.path('manifest.json')} is not valid JSON: {e}") from e
            old = have.get("config")
            if old != want:
                keys = sorted(k for k in set(want) | set(old or {})
                              if (old or {}).get(k, "<missing>") != want.get(k, "<missing>"))
                diff = "; ".join(f"{k}: run has {(old or {}).get(k, '<missing>')!r}, "
                                 f"requested {want.get(k, '<missing>')!r}" for k in keys[:8])
                raise ValueError(f"run directory {self.root} holds a run with a different "
                                 f"config ({diff}); choose another --out or delete it")
            return have
        self.write_manifest(config=want, **fields)
        return self.read_json("manifest.json")


def config_digest(config) -> str:
    """12 hex digits of the sha256 of a config's canonical JSON (sorted keys): equal configs
    give equal digests on every machine."""
    text = json.dumps(jsonable(config), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def unit_dir(root, kind: str, name: str, config) -> Path:
    """The directory of one cached unit of work: `root/kind/<name>-<config digest>`."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in str(name))
    return Path(root) / kind / f"{safe}-{config_digest(config)}"


def cached_unit(root, kind: str, name: str, config: dict, compute, *,
                manifest: dict | None = None) -> dict:
    """Runs `compute(run)` once per (kind, name, config) and keeps its result.

    The unit lives in `unit_dir(root, kind, name, config)` with a manifest of `config` (the
    full config: model, checkpoint digest and every setting that changes the numbers). When
    `result.json` is there the stored result is returned without any computation; otherwise
    `compute(run)` runs (it may write and resume its own chunk files in `run`) and its
    JSON-able result is written atomically; `timing.json` beside it keeps the wall time of the
    session that finished it (`unit_seconds`), so the result itself stays deterministic. A killed
    unit therefore restarts from its own
    finished chunks, and a changed config gets its own directory.

    Several processes (`jax.distributed`): call it on every process. Only process 0 touches
    the directory (it decides whether the result is stored); when it is not, `compute(run)`
    runs on every process with `run` None on the others (they share its work, e.g. through
    `distributed.share_work`) and only process 0's result is written.

    Returns:
        The result dict (as stored: JSON types) plus `run_dir`, the unit's directory where
        it is now (not stored, so a moved directory stays valid); None on processes other
        than 0.
    """
    from lst_jax.parallel import distributed as dist

    def open_unit():
        run = RunDir(unit_dir(root, kind, name, config))
        run.ensure_manifest(config, kind=kind, name=name, **(manifest or {}))
        return run

    main = dist.is_main_process()
    run = dist.on_main(open_unit)
    stored = dist.broadcast_from_main(np.uint8(main and run.exists("result.json")))
    if not stored:
        import time

        t0 = time.perf_counter()
        result = compute(run)
        if main:
            result = dict(result)
            result.pop("run_dir", None)
            run.write_json("timing.json", {"seconds": round(time.perf_counter() - t0, 2)})
            run.write_json("result.json", result)
    if not main:
        return None
    return {**run.read_json("result.json"), "run_dir": str(run.root)}


def unit_seconds(run_dir) -> float | None:
    """The wall time recorded by `cached_unit` for the unit in `run_dir` (None if absent)."""
    path = Path(run_dir) / "timing.json"
    return json.loads(path.read_text())["seconds"] if path.is_file() else None


def markdown_table(header, rows) -> str:
    """A GitHub Markdown table from a header and rows of cells (str() of each cell)."""
    lines = ["| " + " | ".join(map(str, header)) + " |",
             "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(map(str, r)) + " |" for r in rows]
    return "\n".join(lines) + "\n"
