"""8 fake CPU devices (in a subprocess): sharded evaluation and traversal equal one device.

One child process computes everything (one jax start-up, shared compilations); the tests
below check its parts. Sizes are deliberately not multiples of 8.
"""

import pytest

from subproc import run_python

TOL = dict(rtol=1e-6, atol=1e-6)

CHILD = r"""
import jax, jax.numpy as jnp, numpy as np
from subproc import fast_tiny_cnn
from lst_jax import parallel as par
from lst_jax.parallel import sharded as sh_mod
from lst_jax.traversal import LSTConfig, level_set_traversal, level_set_traversal_unchecked

out = {"devices": jax.device_count()}
model_fn, params = fast_tiny_cnn(0, (16, 16, 3), logit_scale=30.0)
rng = np.random.default_rng(0)
corners = rng.uniform(size=(3, 16, 16, 3)).astype(np.float32)

# A hull-grid evaluator: source-class confidence on convex combinations of three images.
def hull_conf(p, w):
    imgs = jnp.einsum("nk,khwc->nhwc", w, p["corners"])
    return {"conf": jax.nn.softmax(model_fn(p["model"], imgs), axis=-1)[:, 3],
            "logits": model_fn(p["model"], imgs)}

r = 24   # barycentric grid i + j + k = r: 325 points (325 % 8 == 5)
w = np.array([(i, j, r - i - j) for i in range(r + 1) for j in range(r + 1 - i)],
             np.float32) / r
hp = {"model": params, "corners": corners}
ref = jax.tree.map(np.asarray, jax.jit(hull_conf)(hp, w))          # one device, one batch
mesh = par.data_mesh()
out["mesh"] = {"shape": dict(mesh.shape), "axis_types": [str(t) for t in mesh.axis_types]}
out["n_points"] = len(w)

def diff(a, b):
    return {k: [float(np.max(np.abs(a[k] - b[k]))), float(np.max(np.abs(b[k])))] for k in a}

c0 = sh_mod._apply._cache_size()
y = par.sharded_apply(hull_conf, hp, w, mesh, chunk_size=64)        # 6 chunks, last padded
c1 = sh_mod._apply._cache_size()
y_again = par.sharded_apply(hull_conf, hp, w[::-1].copy(), mesh, chunk_size=64)
out["apply"] = {"diff": diff(y, ref), "shape": list(y["conf"].shape),
                "compiles": c1 - c0, "compiles_second_call": sh_mod._apply._cache_size() - c1,
                # rows in other chunks and positions: equal up to round-off, not bitwise (an
                # XLA:CPU kernel may sum a row differently at another position, e.g. with
                # --xla_cpu_max_isa=AVX)
                "reversed": diff({"conf": y_again["conf"][::-1]}, {"conf": y["conf"]})}
y1 = par.sharded_apply(hull_conf, hp, w, par.data_mesh(jax.devices()[:1]), chunk_size=64)
out["apply_1dev"] = {"diff": diff(y1, ref)}
from jax.sharding import AxisType
ye = par.sharded_apply(hull_conf, hp, w, par.data_mesh(axis_type=AxisType.Explicit),
                       chunk_size=64)
out["apply_explicit"] = {"diff": diff(ye, ref)}

# Memory budget: room for 2 examples per device, a grid ~100x larger than that.
est = par.estimate_memory(hull_conf, hp, w, mesh)
budget = est.bytes_for(2)
c2 = sh_mod._apply._cache_size()
chunk = par.plan_chunk_size(hull_conf, hp, w, mesh, memory_budget=budget)
yb = par.sharded_apply(hull_conf, hp, w, mesh, memory_budget=budget)
out["budget"] = {"source": est.source, "per_example": est.per_example, "budget": budget,
                 "grid_bytes": est.per_example * len(w), "chunk": chunk,
                 "n_chunks": -(-len(w) // chunk), "compiles": sh_mod._apply._cache_size() - c2,
                 "diff": diff(yb, ref)}
try:
    par.plan_chunk_size(hull_conf, hp, w, mesh, memory_budget=est.fixed)
    out["budget"]["too_small"] = None
except ValueError as e:
    out["budget"]["too_small"] = str(e)

# Traversal: 13 pairs (padded to 16), logged images, adversarial term.
B, shape = 13, (16, 16, 3)
xs = rng.uniform(size=(B,) + shape).astype(np.float32)
xt = rng.uniform(size=(B,) + shape).astype(np.float32)
labels = np.argmax(np.asarray(jax.jit(model_fn)(params, xs)), -1).astype(np.int32)
cfg = LSTConfig(step_size=0.05, iters=12, pthresh=0.0, adv_pert=True, adv_step_size=2e-3,
                log_images=True, log_step=5)
key = jax.random.key(1)
r1 = jax.tree.map(np.asarray, level_set_traversal_unchecked(model_fn, params, xs, xt, labels,
                                                            key=key, config=cfg))
r8 = level_set_traversal(model_fn, params, xs, xt, labels, key=key, config=cfg, mesh=mesh)
out["result_leaves_jax"] = all(isinstance(a, jax.Array) for a in jax.tree.leaves(r8))
r8 = jax.tree.map(np.asarray, r8)
flat1, flat8 = jax.tree.leaves_with_path(r1), jax.tree.leaves(r8)
out["traverse"] = {
    "fields": {jax.tree_util.keystr(p): [list(a.shape), list(b.shape),
                                         float(np.max(np.abs(a.astype(np.float32)
                                                             - b.astype(np.float32)))),
                                         float(np.max(np.abs(a.astype(np.float32))))]
               for (p, a), b in zip(flat1, flat8)},
    "accepted_equal": bool(np.array_equal(r1.record.accepted, r8.record.accepted)),
    "accept_rate": float(np.mean(r1.record.accepted)),
}
# The shardings jit propagates through the scan (inputs placed by hand).
pairs, n = par.pad_to_multiple({"s": xs, "t": xt, "y": labels}, 8)
pairs = par.put_batch(pairs, mesh)
raw = level_set_traversal_unchecked(model_fn, par.put_replicated(params, mesh), pairs["s"],
                                    pairs["t"], pairs["y"], key=key, config=cfg)
spec = lambda a: [None if e is None else str(e) for e in a.sharding.spec]
out["shardings"] = {"images": spec(raw.images), "conf_source": spec(raw.record.conf_source),
                    "logged_images": spec(raw.logged_images), "valid": spec(raw.valid)}
emit(out)
"""


@pytest.fixture(scope="module")
def child():
    return run_python(CHILD, devices=8)


def _close(d):
    for name, (err, scale) in d.items():
        assert err <= TOL["atol"] + TOL["rtol"] * scale, (name, err, scale)


def test_mesh_spans_all_devices_with_auto_axes(child):
    assert child["devices"] == 8
    assert child["mesh"]["shape"] == {"data": 8}
    assert child["mesh"]["axis_types"] == ["AxisType.Auto"]


def test_sharded_apply_equals_one_device_and_compiles_once(child):
    a = child["apply"]
    assert child["n_points"] % 8 != 0
    assert a["shape"] == [child["n_points"]]
    _close(a["diff"])
    _close(child["apply_1dev"]["diff"])
    _close(child["apply_explicit"]["diff"])     # opt-in Explicit axes work too
    assert a["compiles"] == 1                 # one program for all 6 chunks
    assert a["compiles_second_call"] == 0     # new data, same shapes: no recompilation
    _close(a["reversed"])


def test_memory_budget_chunks_a_grid_far_larger_than_the_budget(child):
    b = child["budget"]
    assert b["source"] == "xla"
    assert b["grid_bytes"] > 50 * b["budget"]
    assert b["chunk"] == 16 and b["n_chunks"] == 21
    assert b["compiles"] == 1
    _close(b["diff"])
    assert "memory_budget" in b["too_small"] and "too small" in b["too_small"]


def test_sharded_traversal_equals_one_device(child):
    t = child["traverse"]
    assert child["result_leaves_jax"]     # jax arrays with a mesh, as without
    assert t["accepted_equal"] and 0 < t["accept_rate"] < 1
    assert len(t["fields"]) == 13   # every LSTResult leaf, logged images included
    for name, (shape1, shape8, err, scale) in t["fields"].items():
        assert shape1 == shape8, name
        assert shape1[0] == 13 or shape1[1] == 13, name
        assert err <= TOL["atol"] + TOL["rtol"] * scale, (name, err)


def test_traversal_keeps_pairs_sharded(child):
    s = child["shardings"]
    assert s["images"][0] == "data" and set(s["images"][1:]) <= {None}
    assert s["valid"] == ["data"]
    assert s["conf_source"] == [None, "data"]
    assert s["logged_images"][:2] == [None, "data"] and set(s["logged_images"][2:]) <= {None}
