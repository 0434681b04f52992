"""Several processes (hosts) in one run: start-up, shares of work, gathering, agreement.

A multi-host lst_jax run is JAX's multi-controller model: the same program on every process,
`jax.distributed.initialize` first, then one global mesh (`data_mesh()`) over all devices.
Sharded evaluators (`sharded_apply`, `level_set_traversal(..., mesh=)`) take the same global
host data on every process and return the full result everywhere; process 0 writes the files.

Work that is not one global array program (a Python loop per item, different data per
process) uses `process_share` to split item indices and `gather_shares` to assemble the
results. `pending_items` makes every process agree on what is left to do (process 0 looks
at the run directory and broadcasts), which is how an interrupted run resumes.

Work made of independent items (I-ASIDE coalition blocks, connectivity pair chunks) uses
`share_work`: each process computes whole items alone on its own devices (`process_local`),
process 0 receives every finished item after each round and writes it (one atomic file per
item), so only process 0 needs the run directory and a re-launch after a crash recomputes
only the items whose files are missing.

Failure: the JAX distributed service watches heartbeats. When a process dies, a collective on
the others fails at once (`ProcessFailure`, raised by the helpers here), and a process that is
computing is stopped by the service within `heartbeat_timeout` seconds ("Terminating process
because the JAX distributed service detected fatal errors"); nobody hangs.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import zlib
from typing import Callable

import jax
import numpy as np

from lst_jax.utils.checks import check_positive_int

ENV_COORDINATOR = "JAX_COORDINATOR_ADDRESS"   # also read by jax itself
ENV_NUM_PROCESSES = "JAX_NUM_PROCESSES"       # read by lst_jax
ENV_PROCESS_ID = "JAX_PROCESS_ID"             # read by lst_jax


class ProcessFailure(RuntimeError):
    """A collective across processes failed: another process has probably died."""


@contextlib.contextmanager
def collective(what: str):
    """Turns a failed cross-process collective into a `ProcessFailure` with a clear message."""
    try:
        yield
    except jax.errors.JaxRuntimeError as e:
        if jax.process_count() == 1:
            raise
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ProcessFailure(
            f"{what} across {jax.process_count()} processes failed on process "
            f"{jax.process_index()}: another process has probably died ({first}). Work "
            "finished so far is on disk; re-launch the same command on every process to "
            "resume.") from e


def _env_int(name: str):
    v = os.environ.get(name)
    if v is None or v == "":
        return None
    try:
        return int(v)
    except ValueError:
        raise ValueError(f"environment variable {name} must be an integer, got {v!r}") from None


def initialize_distributed(coordinator_address: str | None = None,
                           num_processes: int | None = None, process_id: int | None = None, *,
                           auto: bool = False, local_device_ids=None,
                           heartbeat_timeout: int | None = None,
                           initialization_timeout: int | None = None,
                           shutdown_timeout: int | None = None) -> bool:
    """Starts JAX's distributed runtime when the run has several processes.

    Must run before anything touches a JAX device. Sources, first match wins:
      1. explicit arguments / environment (`JAX_COORDINATOR_ADDRESS=host:port`,
         `JAX_NUM_PROCESSES`, `JAX_PROCESS_ID`): all three needed; `num_processes=1` is a
         single-process run (no-op);
      2. `auto=True`: `jax.distributed.initialize()` detects the cluster itself (Cloud TPU pod
         slices, SLURM, Open MPI, Kubernetes);
      3. otherwise: a single-process run, nothing to do.
    CPU processes talk through gloo (the jax 0.10 default `jax_cpu_collectives_implementation`).

    Args:
        heartbeat_timeout: seconds without heartbeats after which a process counts as dead
            and the others stop (jax default 100).
        initialization_timeout: seconds to wait for all processes to connect (jax default 300).
        shutdown_timeout: seconds a finishing process waits for the others (jax default 300).

    Returns:
        True when the distributed runtime is running (started here or before).

    Raises:
        ValueError: only some of the three settings given, or invalid values.
    """
    if jax.distributed.is_initialized():
        return True
    coordinator_address = coordinator_address or os.environ.get(ENV_COORDINATOR) or None
    num_processes = num_processes if num_processes is not None else _env_int(ENV_NUM_PROCESSES)
    process_id = process_id if process_id is not None else _env_int(ENV_PROCESS_ID)
    timeouts = {k: v for k, v in (("heartbeat_timeout_seconds", heartbeat_timeout),
                                  ("initialization_timeout", initialization_timeout),
                                  ("shutdown_timeout_seconds", shutdown_timeout))
                if v is not None}
    for k, v in timeouts.items():
        check_positive_int(k.replace("_seconds", ""), v)
    given = {"coordinator_address": coordinator_address, "num_processes": num_processes,
             "process_id": process_id}
    if num_processes == 1:
        if process_id not in (None, 0):
            raise ValueError(f"process_id must be 0 in a single-process run, got {process_id}")
        return False
    if any(v is not None for v in given.values()):
        missing = [k for k, v in given.items() if v is None]
        if missing:
            raise ValueError(
                f"a multi-process run needs coordinator_address, num_processes and process_id; "
                f"missing {missing} (flags --coordinator/--num-processes/--process-id or env "
                f"{ENV_COORDINATOR}/{ENV_NUM_PROCESSES}/{ENV_PROCESS_ID})")
        if num_processes < 1 or not 0 <= process_id < num_processes:
            raise ValueError(f"need num_processes >= 1 and 0 <= process_id < num_processes, got "
                             f"num_processes={num_processes}, process_id={process_id}")
        if ":" not in coordinator_address:
            raise ValueError(f"coordinator_address must be host:port, got {coordinator_address!r}")
        jax.distributed.initialize(coordinator_address, num_processes, process_id,
                                   local_device_ids=local_device_ids, **timeouts)
        return True
    if auto:
        jax.distributed.initialize(local_device_ids=local_device_ids, **timeouts)
        return True
    return False


def add_distributed_args(parser: argparse.ArgumentParser):
    """Adds `--coordinator --num-processes --process-id --distributed-auto --heartbeat-timeout`."""
    g = parser.add_argument_group("multi-process run (one process per host; see docs/scaling.md)")
    g.add_argument("--coordinator", help=f"host:port of process 0 (env {ENV_COORDINATOR})")
    g.add_argument("--num-processes", type=int,
                   help=f"number of processes (env {ENV_NUM_PROCESSES})")
    g.add_argument("--process-id", type=int, help=f"this process, 0..N-1 (env {ENV_PROCESS_ID})")
    g.add_argument("--distributed-auto", action="store_true",
                   help="let JAX detect the cluster (TPU pod slice, SLURM, Open MPI)")
    g.add_argument("--heartbeat-timeout", type=int,
                   help="seconds after which a silent process counts as dead (default 100)")
    return parser


def initialize_from_args(args) -> bool:
    """`initialize_distributed` from the flags of `add_distributed_args`."""
    return initialize_distributed(args.coordinator, args.num_processes, args.process_id,
                                  auto=args.distributed_auto,
                                  heartbeat_timeout=args.heartbeat_timeout)


def is_main_process() -> bool:
    """True on process 0, the one that writes the run directory."""
    return jax.process_index() == 0


def process_share(n_items: int, process_index: int | None = None,
                  process_count: int | None = None) -> range:
    """This process's contiguous block of `range(n_items)`.

    Blocks are in process order and differ in size by at most one (the first
    `n_items % process_count` processes get one more), like `np.array_split`.

    Shape:
        -> range of length n_items // P or n_items // P + 1.
    """
    if isinstance(n_items, bool) or not isinstance(n_items, (int, np.integer)) or n_items < 0:
        raise ValueError(f"n_items must be a non-negative integer, got {n_items!r}")
    p = jax.process_count() if process_count is None else int(process_count)
    i = jax.process_index() if process_index is None else int(process_index)
    if p < 1 or not 0 <= i < p:
        raise ValueError(f"need process_count >= 1 and 0 <= process_index < process_count, got "
                         f"{i} of {p}")
    base, extra = divmod(int(n_items), p)
    start = i * base + min(i, extra)
    return range(start, start + base + (1 if i < extra else 0))


def gather_shares(local_tree, n_items: int):
    """Concatenates every process's share (see `process_share`) into the full arrays.

    Each process passes the results of its own share of items; all processes receive the
    full arrays (a collective: call it on every process).

    Shape:
        local leaves (len(process_share(n_items)), ...) -> (n_items, ...) on every process.
    """
    p = jax.process_count()
    mine = len(process_share(n_items))
    for leaf in jax.tree.leaves(local_tree):
        if np.ndim(leaf) == 0 or np.shape(leaf)[0] != mine:
            raise ValueError(f"local results must have leading size {mine} (this process's "
                             f"share of {n_items}), got shape {np.shape(leaf)}")
    if p == 1:
        return jax.tree.map(np.asarray, local_tree)
    from lst_jax.parallel.mesh import allgather_host

    width = len(process_share(n_items, 0, p))

    def pad(a):
        a = np.asarray(a)
        return np.concatenate([a, np.zeros((width - a.shape[0],) + a.shape[1:], a.dtype)])

    stacked = allgather_host(jax.tree.map(pad, local_tree))
    sizes = [len(process_share(n_items, i, p)) for i in range(p)]
    return jax.tree.map(
        lambda s: np.concatenate([np.asarray(s)[i, :sizes[i]] for i in range(p)]), stacked)


def broadcast_from_main(tree):
    """Process 0's values of `tree` on every process (same shapes and dtypes everywhere;
    meant for small data such as a mask of finished batches)."""
    if jax.process_count() == 1:
        return jax.tree.map(np.asarray, tree)
    from lst_jax.parallel.mesh import allgather_host

    return jax.tree.map(lambda a: a[0], allgather_host(tree))


def broadcast_arrays_from_main(tree):
    """Process 0's arrays on every process, for large data (e.g. images a process read from
    its disk): one sum-reduction across processes (`multihost_utils.broadcast_one_to_all`),
    so the traffic does not grow with the process count as `broadcast_from_main`'s does.

    Every process passes arrays of the same shapes and dtypes (the values of processes other
    than 0 are ignored). A collective: call it on every process.
    """
    if jax.process_count() == 1:
        return jax.tree.map(np.asarray, tree)
    from jax.experimental import multihost_utils

    with collective("broadcasting from process 0"):
        return jax.tree.map(np.asarray, multihost_utils.broadcast_one_to_all(tree))


def raise_if_main_failed(error: BaseException | str | None, max_bytes: int = 4096):
    """Makes every process fail when process 0 failed (e.g. it refused the run directory).

    Process 0 passes its exception (or None); the others pass anything. Process 0 re-raises
    its exception; the others raise `ValueError("process 0: <message>")`. Without this,
    processes other than 0 would run on and stop only at their next collective. A
    collective: call it on every process.
    """
    if error is None or isinstance(error, str):
        msg = error or ""
    elif isinstance(error, (ValueError, FileNotFoundError)):
        msg = str(error)
    else:
        msg = f"{type(error).__name__}: {error}"
    if jax.process_count() > 1:
        buf = np.zeros(max_bytes, np.uint8)
        if is_main_process() and msg:
            b = msg.encode()[:max_bytes]
            buf[:len(b)] = np.frombuffer(b, np.uint8)
        msg = bytes(broadcast_from_main(buf)).rstrip(b"\0").decode(errors="replace")
    if not msg:
        return
    if is_main_process():
        if isinstance(error, BaseException):
            raise error
        raise ValueError(msg)
    raise ValueError(f"process 0: {msg}")


def barrier(name: str):
    """Waits until every process reaches the barrier `name` (names must match)."""
    if jax.process_count() == 1:
        return
    from lst_jax.parallel.mesh import allgather_host

    names = allgather_host(np.uint32(zlib.crc32(name.encode())))
    if len(set(names.tolist())) != 1:
        raise RuntimeError(f"processes reached different barriers (this one: {name!r}); the "
                           "processes run different code paths")


def pending_items(n_items: int, is_done: Callable[[int], bool]) -> list[int]:
    """Items still to do, decided by process 0 (`is_done(i)`, e.g. "batch file exists") and
    broadcast, so every process runs the same list even without a shared file system.

    Shape:
        -> sorted list of item indices in [0, n_items).
    """
    done = np.zeros(int(n_items), np.uint8)
    if is_main_process():
        done[:] = [bool(is_done(i)) for i in range(n_items)]
    done = broadcast_from_main(done)
    return [int(i) for i in np.flatnonzero(np.asarray(done) == 0)]


_LOCAL_DEPTH = [0]


@contextlib.contextmanager
def process_local():
    """Within: work one process does alone (its `share_work` items). `data_mesh()` (and so
    every default mesh of the library) covers this process's devices only, so no program
    waits for the other processes."""
    _LOCAL_DEPTH[0] += 1
    try:
        yield
    finally:
        _LOCAL_DEPTH[0] -= 1


def default_devices() -> list:
    """The devices of a default mesh: every device of every process, or this process's own
    inside `process_local()`."""
    return list(jax.local_devices() if _LOCAL_DEPTH[0] else jax.devices())


def _bucket(n: int) -> int:
    """Power-of-two buffer sizes (at least 1 KiB), so gathers of varying sizes reuse a few
    compiled all-gathers."""
    return max(1024, 1 << max(0, int(n) - 1).bit_length())


def gather_bytes(data: bytes) -> list[bytes]:
    """Every process's `data` (any lengths), in process order, on every process. A collective.
    """
    if jax.process_count() == 1:
        return [bytes(data)]
    from lst_jax.parallel.mesh import allgather_host

    with collective("gathering results"):
        sizes = np.asarray(allgather_host(np.int64(len(data)))).reshape(-1)
        buf = np.zeros(_bucket(int(sizes.max())), np.uint8)
        buf[:len(data)] = np.frombuffer(data, np.uint8)
        rows = np.asarray(allgather_host(buf))
    return [rows[i, :int(n)].tobytes() for i, n in enumerate(sizes)]


def arrays_to_bytes(arrays: dict) -> bytes:
    """A dict of arrays as .npz bytes (no pickle)."""
    buf = io.BytesIO()
    np.savez(buf, **{k: np.asarray(v) for k, v in arrays.items()})
    return buf.getvalue()


def arrays_from_bytes(data: bytes) -> dict:
    """Inverse of `arrays_to_bytes`."""
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def share_work(todo, compute: Callable[[int], dict], save: Callable[[int, dict], None]):
    """Computes `compute(item) -> {name: array}` for every item of `todo`, spread over the
    processes, and has process 0 `save(item, arrays)` each result (in `todo` order).

    Round r: process i computes `todo[r * P + i]` alone on its own devices (inside
    `process_local()`, so its programs never wait for the others); then every result of the
    round goes to process 0 (`gather_bytes`), which saves it. Items must not depend on each
    other's results. One process: compute and save item by item. An exception in `compute`
    on any process stops every process after the round (ValueError "process i: ..." on the
    others; the failing process re-raises its own); saved items stay saved.

    A collective: call it on every process with the same `todo` (e.g. from `pending_items`).
    """
    todo = [int(i) for i in todo]
    p = jax.process_count()
    if p == 1:
        for item in todo:
            save(item, compute(item))
        return
    me = jax.process_index()
    for r in range(0, len(todo), p):
        batch = todo[r:r + p]
        payload, error = b"", None
        if me < len(batch):
            try:
                with process_local():
                    payload = b"\x00" + arrays_to_bytes(compute(batch[me]))
            except Exception as e:  # noqa: BLE001 - every process must stop, not only this one
                error = e
                payload = b"\x01" + (str(e) if isinstance(e, (ValueError, FileNotFoundError))
                                      else f"{type(e).__name__}: {e}").encode()[:4096]
        got = gather_bytes(payload)
        failed = [(i, g[1:].decode(errors="replace")) for i, g in enumerate(got)
                  if g[:1] == b"\x01"]
        if failed:
            if error is not None:
                raise error
            i, msg = failed[0]
            raise ValueError(f"process {i}: {msg}")
        if is_main_process():
            for item, g in zip(batch, got):
                save(item, arrays_from_bytes(g[1:]))


def on_main(fn: Callable[[], object]):
    """`fn()` on process 0 only (e.g. opening the run directory); when it raises, every
    process stops (`raise_if_main_failed`). A collective.

    Returns:
        fn()'s value on process 0, None on the others.
    """
    value, error = None, None
    if is_main_process():
        try:
            value = fn()
        except Exception as e:  # noqa: BLE001 - every process must stop, not only process 0
            error = e
    raise_if_main_failed(error)
    return value


def broadcast_arrays_of_main(produce: Callable[[], dict]) -> dict:
    """`produce()` (a dict of arrays, any shapes) run on process 0 only, its result on every
    process (e.g. what only process 0 can read from the run directory). A collective."""
    if jax.process_count() == 1:
        return produce()
    payload = on_main(lambda: arrays_to_bytes(produce())) or b""
    return arrays_from_bytes(gather_bytes(payload)[0])


__all__ = ["initialize_distributed", "add_distributed_args", "initialize_from_args",
           "is_main_process", "process_share", "gather_shares", "broadcast_from_main",
           "barrier", "pending_items", "collective", "ProcessFailure",
           "broadcast_arrays_from_main", "raise_if_main_failed", "on_main", "process_local",
           "default_devices", "gather_bytes", "share_work", "broadcast_arrays_of_main",
           "arrays_to_bytes", "arrays_from_bytes"]
