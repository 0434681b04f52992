"""The geometry evaluators (hull grids, linear paths, path widths) through `ShardedEvaluator`.

8 fake CPU devices in one child process: every evaluator gives the one-device numbers (1e-6)
on probe counts that are not multiples of 8, compiles once, and a grid far larger than the
memory budget is evaluated in budget-sized chunks; a 1-device mesh works too. The
in-process tests cover validation.
"""

import jax
import numpy as np
import pytest

from lst_jax import parallel as par
from lst_jax.jobs.lst.full_eval import resolve_mesh
from subproc import run_python

TOL = 1e-6

CHILD = r"""
import jax, numpy as np
from subproc import fast_tiny_cnn
from lst_jax import parallel as par
from lst_jax.parallel import sharded as sh_mod
from lst_jax.geometry import (hull_confidences, linear_path_confidences,
                              multi_hull_confidences, path_widths, round_pairs, triangle_grid,
                              triangle_statistics, width_directions, WidthConfig)
from lst_jax.geometry.hull import pair_weights
from lst_jax.geometry.probes import Combinations, combination_probes

model_fn, params = fast_tiny_cnn(0, (16, 16, 3), logit_scale=30.0)
rng = np.random.default_rng(0)
B, R, shape = 3, 3, (16, 16, 3)
src = rng.uniform(size=(B,) + shape).astype(np.float32)
outs = rng.uniform(size=(R, B) + shape).astype(np.float32)
labels = np.argmax(np.asarray(jax.jit(model_fn)(params, src)), -1).astype(np.int32)
mesh = par.data_mesh()
ev = par.ShardedEvaluator(mesh, per_device_chunk=4)          # 32 probes per sharded call
grid = triangle_grid(kind="reference", n=6)
out = {"devices": jax.device_count()}

def diff(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    same_nan = bool(np.array_equal(np.isnan(a), np.isnan(b)))
    ok = ~np.isnan(a)
    return [float(np.max(np.abs(a[ok] - b[ok]))) if ok.any() else 0.0, same_nan]

# Hull grids: all round-pair triangles of every source (Table 2) and a clipped single hull.
ref = multi_hull_confidences(model_fn, params, src, outs, labels, grid=grid)
c0 = sh_mod._apply._cache_size()
got = multi_hull_confidences(model_fn, params, src, outs, labels, grid=grid, evaluate_fn=ev)
c1 = sh_mod._apply._cache_size()
got2 = multi_hull_confidences(model_fn, params, src[::-1].copy(), outs, labels[::-1].copy(),
                              grid=grid, evaluate_fn=ev)
out["hull"] = {"total": B * len(round_pairs(R)) * grid.num_points, "diff": diff(ref, got),
               "stats": diff(triangle_statistics(ref, grid=grid),
                             triangle_statistics(got, grid=grid)),
               "compiles": c1 - c0, "compiles_second": sh_mod._apply._cache_size() - c1,
               "second_diff": diff(multi_hull_confidences(model_fn, params, src[::-1].copy(),
                                                          outs, labels[::-1].copy(),
                                                          grid=grid),
                                   got2)}
ref = hull_confidences(model_fn, params, src, outs[0], outs[1], labels, grid=grid, clip=True)
got = hull_confidences(model_fn, params, src, outs[0], outs[1], labels, grid=grid, clip=True,
                       evaluate_fn=ev)
out["hull_clipped"] = {"total": B * grid.num_points, "diff": diff(ref, got)}

# Linear paths (star paths source -> output).
ref = linear_path_confidences(model_fn, params, src, outs[0], labels, num_points=11)
got = linear_path_confidences(model_fn, params, src, outs[0], labels, num_points=11,
                              evaluate_fn=ev)
ev1 = par.ShardedEvaluator(par.data_mesh(jax.devices()[:1]), chunk_size=5)
got1 = linear_path_confidences(model_fn, params, src, outs[0], labels, num_points=11,
                               evaluate_fn=ev1)
ref_lp = linear_path_confidences(model_fn, params, src, outs[0], labels, num_points=11,
                                 score="log_prob")
got_lp = linear_path_confidences(model_fn, params, src, outs[0], labels, num_points=11,
                                 evaluate_fn=ev, score="log_prob")
out["paths"] = {"total": B * 11, "diff": diff(ref, got), "one_device": diff(ref, got1),
                "log_prob": diff(ref_lp, got_lp)}

# Path widths (typed PRNG keys in the probe data); one point gated out (NaN row).
d = width_directions(model_fn, params, src, outs[0], labels)
cfg = WidthConfig(radii=(0.5, 1.0, 2.0), num_dirs=7)
p0 = np.asarray(jax.nn.softmax(jax.jit(model_fn)(params, src)))[np.arange(B), labels]
gate = float(np.sort(p0)[0] + 1e-6)
kw = dict(key=jax.random.key(3), config=cfg.replace(gate=gate))
ref = path_widths(model_fn, params, src, d, labels, **kw)
got = path_widths(model_fn, params, src, d, labels, evaluate_fn=ev, **kw)
out["widths"] = {"total": B * 7 * 3, "diff": diff(ref.widths, got.widths),
                 "conf": diff(ref.conf, got.conf),
                 "mask": [np.asarray(ref.mask).tolist(), np.asarray(got.mask).tolist()]}

# Memory budget: room for one probe per device; the grid needs ~40x that.
vertices = np.concatenate([src[None], outs])
data = Combinations(vertices, pair_weights(grid, round_pairs(R), R), labels)
total = out["hull"]["total"]
est = par.ShardedEvaluator(mesh).estimate(model_fn, params, combination_probes, data, total)
budget = est.bytes_for(1)
evb = par.ShardedEvaluator(mesh, memory_budget=budget)
ref = multi_hull_confidences(model_fn, params, src, outs, labels, grid=grid)
out["budget"] = {"source": est.source, "budget": budget,
                 "grid_bytes": est.fixed + est.per_example * total,
                 "chunk": evb.plan(model_fn, params, combination_probes, data, total),
                 "diff": diff(ref, multi_hull_confidences(model_fn, params, src, outs, labels,
                                                          grid=grid, evaluate_fn=evb))}
emit(out)
"""


@pytest.fixture(scope="module")
def child():
    return run_python(CHILD, devices=8)


def _close(d):
    err, same_nan = d
    assert same_nan and err <= TOL, d


@pytest.mark.parametrize("part", ["hull", "hull_clipped", "paths", "widths"])
def test_sharded_geometry_equals_one_device(child, part):
    assert child["devices"] == 8
    r = child[part]
    assert r["total"] % 8 != 0            # padding to the device count is exercised
    _close(r["diff"])


def test_one_device_mesh(child):
    _close(child["paths"]["one_device"])


def test_sharded_log_prob_score(child):
    _close(child["paths"]["log_prob"])


def test_hull_statistics_and_single_compilation(child):
    h = child["hull"]
    _close(h["stats"])
    _close(h["second_diff"])
    assert h["compiles"] == 1 and h["compiles_second"] == 0


def test_widths_keep_mask_and_confidence(child):
    w = child["widths"]
    _close(w["conf"])
    assert w["mask"][0] == w["mask"][1] and w["mask"][0].count(False) == 1


def test_memory_budget_chunks_a_large_grid(child):
    b = child["budget"]
    assert b["source"] == "xla"
    assert b["grid_bytes"] > 20 * b["budget"]
    assert b["chunk"] == 8                 # one probe per device per call
    _close(b["diff"])


# ---------------------------------------------------------------------------------------------
# In the test process (one device)


@pytest.mark.parametrize("kw,match", [(dict(chunk_size=0), "chunk_size"),
                                      (dict(per_device_chunk=True), "per_device_chunk"),
                                      (dict(chunk_size=4, per_device_chunk=2), "not both"),
                                      (dict(memory_budget="lots"), "memory_budget")])
def test_sharded_evaluator_rejects_bad_settings(kw, match):
    with pytest.raises(ValueError, match=match):
        par.ShardedEvaluator(**kw)


def test_resolve_mesh_modes():
    assert resolve_mesh("off") is None and resolve_mesh(None) is None
    auto = resolve_mesh("auto")
    assert (auto is None) == (jax.device_count() == 1)
    assert par.num_shards(resolve_mesh("on")) == jax.device_count()
    assert resolve_mesh("auto", memory_budget="1GiB") is not None
    mesh = par.data_mesh(jax.devices()[:1])
    assert resolve_mesh(mesh) is mesh
    with pytest.raises(ValueError, match="mesh must be one of"):
        resolve_mesh("everywhere")


def test_single_process_main_helpers():
    a = {"x": np.arange(3.0)}
    np.testing.assert_array_equal(par.broadcast_arrays_from_main(a)["x"], a["x"])
    par.raise_if_main_failed(None)
    with pytest.raises(ValueError, match="refused"):
        par.raise_if_main_failed("refused")
    err = FileNotFoundError("no pool")
    with pytest.raises(FileNotFoundError, match="no pool"):
        par.raise_if_main_failed(err)
