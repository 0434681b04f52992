"""lst_jax.parallel in the test process (one device): helpers, validation, 1-device meshes.

The 8-device and two-process behaviour is tested in subprocesses
(test_parallel_devices.py, test_parallel_multiprocess.py).
"""

import argparse

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lst_jax import parallel as par
from lst_jax.parallel import distributed as dist
from lst_jax.parallel import sharded as sh_mod
from lst_jax.traversal import LSTConfig, level_set_traversal
from subproc import fast_tiny_cnn as tiny_cnn
from tolerances import assert_close_to_float64


@pytest.mark.parametrize("n,p", [(10, 3), (3, 5), (0, 2), (16, 4), (7, 1)])
def test_process_share_is_a_contiguous_balanced_partition(n, p):
    shares = [par.process_share(n, i, p) for i in range(p)]
    assert [i for s in shares for i in s] == list(range(n))
    sizes = [len(s) for s in shares]
    assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)
    assert par.process_share(n) == range(n)          # this (single) process: everything


def test_process_share_rejects_bad_arguments():
    with pytest.raises(ValueError, match="n_items"):
        par.process_share(-1)
    with pytest.raises(ValueError, match="process_index"):
        par.process_share(4, 2, 2)


def test_pad_and_unpad_round_trip_with_copies_of_the_last_entry():
    tree = {"x": np.arange(10.0).reshape(5, 2), "y": np.arange(5)}
    padded, n = par.pad_to_multiple(tree, 4)
    assert n == 5 and padded["x"].shape == (8, 2) and padded["y"].tolist() == [0, 1, 2, 3, 4,
                                                                              4, 4, 4]
    back = par.unpad(padded, n)
    np.testing.assert_array_equal(back["x"], tree["x"])
    rec = np.arange(15).reshape(3, 5)                 # (T, B): batch on axis 1
    p1, n1 = par.pad_to_multiple(rec, 8, axis=1)
    assert p1.shape == (3, 8) and (p1[:, 5:] == rec[:, 4:5]).all()
    np.testing.assert_array_equal(par.unpad(p1, n1, axis=1), rec)
    same, _ = par.pad_to_multiple(tree, 5)
    assert same["x"] is tree["x"] or np.array_equal(same["x"], tree["x"])


def test_batch_checks_name_the_problem():
    with pytest.raises(ValueError, match="leading"):
        par.pad_to_multiple({"a": np.zeros(3), "b": np.zeros(4)}, 2)
    with pytest.raises(ValueError, match="scalar"):
        par.pad_to_multiple({"a": np.float32(1.0)}, 2)
    mesh = par.data_mesh()
    assert par.num_shards(mesh) == jax.device_count()
    if jax.device_count() > 1:
        with pytest.raises(ValueError, match="multiple"):
            par.put_batch(np.zeros((jax.device_count() + 1, 2)), mesh)
    with pytest.raises(ValueError, match="devices"):
        par.data_mesh([])


@pytest.mark.parametrize("value,expected", [(4096, 4096), ("512MiB", 512 * 2**20),
                                            ("2GB", 2 * 10**9), ("1.5 GiB", 3 * 2**29),
                                            ("100", 100)])
def test_parse_bytes(value, expected):
    assert par.parse_bytes(value) == expected


@pytest.mark.parametrize("value", ["lots", "12 parsecs", -5, 0, True, 1.5])
def test_parse_bytes_rejects(value):
    with pytest.raises(ValueError, match="memory_budget"):
        par.parse_bytes(value)


def _logits_fn():
    model_fn, params = tiny_cnn(0, (8, 8, 3))
    return model_fn, params, np.random.default_rng(0).uniform(size=(37, 8, 8, 3)).astype(
        np.float32)


def test_sharded_apply_on_one_device_with_pytrees():
    model_fn, params, x = _logits_fn()
    mesh = par.data_mesh(jax.devices()[:1])

    def fn(p, batch):
        logits = model_fn(p, batch["img"] * batch["scale"][:, None, None, None])
        return {"logits": logits, "top": jnp.argmax(logits, -1)}

    batch = {"img": x, "scale": np.linspace(0.5, 1.0, len(x), dtype=np.float32)}
    before = sh_mod._apply._cache_size()
    out = par.sharded_apply(fn, params, batch, mesh, chunk_size=10)      # 4 chunks, last padded
    assert sh_mod._apply._cache_size() == before + 1
    xs = x * batch["scale"][:, None, None, None]
    ref = model_fn(params, xs)
    with jax.enable_x64(True):   # chunks of 10 vs one batch: another float32 summation order
        ref64 = model_fn(jax.tree.map(lambda v: np.asarray(v, np.float64), params),
                         jnp.asarray(xs, jnp.float64))
    assert_close_to_float64(np.asarray(ref), np.asarray(ref64), out["logits"],
                            what="sharded logits")
    assert out["top"].dtype == np.int32 and out["top"].shape == (37,)


def test_chunk_planning_and_its_errors():
    model_fn, params, x = _logits_fn()
    mesh = par.data_mesh(jax.devices()[:1])
    plan = lambda **kw: par.plan_chunk_size(model_fn, params, x, mesh, **kw)
    assert plan() == 37                                    # default capped by the batch
    assert plan(chunk_size=8) == 8
    est = par.estimate_memory(model_fn, params, x, mesh)
    assert est.source == "xla" and est.per_example > 0
    assert plan(memory_budget=est.bytes_for(5)) == 5
    assert plan(memory_budget=est.bytes_for(5), chunk_size=3) == 3
    with pytest.raises(ValueError, match="too small"):
        plan(memory_budget=max(est.fixed, 1))
    with pytest.raises(ValueError, match="chunk_size"):
        plan(chunk_size=0)
    with pytest.raises(ValueError, match="leading axis"):
        par.sharded_apply(lambda p, b: jnp.sum(model_fn(p, b)), params, x, mesh)
    with pytest.raises(ValueError, match="empty"):
        par.sharded_apply(model_fn, params, x[:0], mesh)


def test_sharded_traversal_validates_and_progress_matches(capsys):
    model_fn, params = tiny_cnn(0, (8, 8, 3), logit_scale=30.0)
    rng = np.random.default_rng(1)
    xs, xt = (rng.uniform(size=(3, 8, 8, 3)).astype(np.float32) for _ in range(2))
    labels = np.argmax(np.asarray(model_fn(params, xs)), -1).astype(np.int32)
    mesh = par.data_mesh(jax.devices()[:1])
    with pytest.raises(ValueError, match="labels"):
        level_set_traversal(model_fn, params, xs, xt, labels[:2], key=jax.random.key(0),
                            mesh=mesh)
    with pytest.raises(ValueError, match="mesh must be a jax.sharding.Mesh"):
        level_set_traversal(model_fn, params, xs, xt, labels, key=jax.random.key(0), mesh="auto")
    with pytest.raises(ValueError, match="'data' axis"):
        level_set_traversal(model_fn, params, xs, xt, labels, key=jax.random.key(0),
                            mesh=jax.make_mesh((1,), ("batch",), devices=jax.devices()[:1]))
    cfg = LSTConfig(iters=4, log_step=2, adv_pert=True, pthresh=0.0)
    a = level_set_traversal(model_fn, params, xs, xt, labels, key=jax.random.key(0), config=cfg,
                            mesh=mesh)
    b = level_set_traversal(model_fn, params, xs, xt, labels, key=jax.random.key(0), config=cfg,
                            mesh=mesh, progress=True)
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        assert isinstance(u, jax.Array)        # jax arrays with a mesh too
        np.testing.assert_array_equal(u, v)
    assert "4/4" in capsys.readouterr().err


def test_single_process_helpers_are_local():
    tree = {"a": np.arange(6).reshape(3, 2)}
    np.testing.assert_array_equal(par.gather_shares(tree, 3)["a"], tree["a"])
    with pytest.raises(ValueError, match="share"):
        par.gather_shares(tree, 4)
    np.testing.assert_array_equal(par.broadcast_from_main(tree)["a"], tree["a"])
    par.barrier("nothing to wait for")
    assert par.pending_items(5, lambda i: i in (1, 3)) == [0, 2, 4]
    assert par.is_main_process()
    local = par.put_process_local({"a": tree["a"][:2]}, par.data_mesh(jax.devices()[:1]))
    assert local["a"].shape == (2, 2) and local["a"].sharding.spec == jax.sharding.PartitionSpec(
        "data")
    full = par.to_host({"x": jnp.arange(3), "y": np.ones(2)})
    assert all(isinstance(v, np.ndarray) for v in full.values())


def test_initialize_distributed_without_a_cluster_is_a_no_op(monkeypatch):
    for var in (dist.ENV_COORDINATOR, dist.ENV_NUM_PROCESSES, dist.ENV_PROCESS_ID):
        monkeypatch.delenv(var, raising=False)
    assert par.initialize_distributed() is False
    assert par.initialize_distributed(num_processes=1) is False
    assert par.initialize_distributed("10.0.0.1:1234", 1, 0) is False
    with pytest.raises(ValueError, match="missing"):
        par.initialize_distributed("10.0.0.1:1234", 2)
    monkeypatch.setenv(dist.ENV_NUM_PROCESSES, "4")
    with pytest.raises(ValueError, match="process_id"):
        par.initialize_distributed("10.0.0.1:1234")
    with pytest.raises(ValueError, match="process_id < num_processes"):
        par.initialize_distributed("10.0.0.1:1234", process_id=4)
    with pytest.raises(ValueError, match="host:port"):
        par.initialize_distributed("10.0.0.1", process_id=1)
    monkeypatch.setenv(dist.ENV_NUM_PROCESSES, "four")
    with pytest.raises(ValueError, match=dist.ENV_NUM_PROCESSES):
        par.initialize_distributed()
    with pytest.raises(ValueError, match="heartbeat_timeout"):
        par.initialize_distributed(num_processes=2, process_id=0, coordinator_address="h:1",
                                   heartbeat_timeout=0)


def test_distributed_flags():
    parser = par.add_distributed_args(argparse.ArgumentParser())
    args = parser.parse_args(["--coordinator", "10.0.0.1:1234", "--num-processes", "1",
                              "--process-id", "0", "--heartbeat-timeout", "30"])
    assert (args.coordinator, args.num_processes, args.process_id, args.heartbeat_timeout) == \
        ("10.0.0.1:1234", 1, 0, 30)
    assert par.initialize_from_args(args) is False      # one process: nothing to start


def test_no_pmap_anywhere():
    """jit with shardings (and jax.shard_map) only: pmap is legacy."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    files = list((root / "lst_jax").rglob("*.py")) + list((root / "experiments").rglob("*.py"))
    hits = [str(f) for f in files if "pmap(" in f.read_text() or ".pmap" in f.read_text()]
    assert not hits
