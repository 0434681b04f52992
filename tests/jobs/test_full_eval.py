"""Full evaluation: derangements, pairing by global pool index (ragged last batch), dropped
sources, resumability (injected failure, SIGKILL of the CLI), config mismatch, tables."""

import hashlib
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lst_jax import cli
from lst_jax.data.pool import TargetPool
from lst_jax.jobs.lst.full_eval import (
    FullEvalConfig,
    basic_distance_fn,
    batch_bounds,
    collect_results,
    derangement,
    full_evaluation,
    plan_pairs,
    round_derangements,
)
from lst_jax.jobs.lst.tables import model_label, table1_stats, table2_stats
from lst_jax.traversal import LSTConfig
from subproc import kill_cli_when

SHAPE = (16, 16, 3)
CFG = LSTConfig(step_size=0.1, iters=6, log_step=6, pthresh=0.2, adv_pert=True,
                adv_step_size=2e-3)


def test_derangements_have_no_fixed_points_and_are_seeded():
    for n in (2, 3, 5, 10, 97):
        for seed in range(20):
            p = derangement(n, np.random.default_rng(seed))
            assert sorted(p) == list(range(n)) and not np.any(p == np.arange(n))
    # Uniform over derangements: n = 3 has exactly two, both must occur.
    seen = {tuple(derangement(3, np.random.default_rng(s))) for s in range(40)}
    assert seen == {(1, 2, 0), (2, 0, 1)}
    a, b = round_derangements(10, 5, seed=0), round_derangements(10, 5, seed=0)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, round_derangements(10, 5, seed=1))
    assert len({tuple(r) for r in a}) == 5          # rounds differ
    with pytest.raises(ValueError, match="at least 2"):
        derangement(1, np.random.default_rng(0))


def test_plan_pairs_by_global_index_and_dropped_sources():
    kept = np.array([True, False, True, True, True, True, True])
    plan = plan_pairs(kept, num_samples=5, rounds=3, seed=0)
    np.testing.assert_array_equal(plan.source_index, [0, 2, 3, 4, 5])   # first 5 kept
    for r in range(3):
        np.testing.assert_array_equal(plan.target_index[r], plan.perms[r][plan.source_index])
        assert not np.any(plan.target_index[r] == plan.source_index)
    # A dropped source can still be a target; targets are never filtered.
    assert np.any(plan.perms[:, plan.perms[0] >= 0] == 1)
    assert batch_bounds(10, 4) == [(0, 4), (4, 8), (8, 10)]
    with pytest.raises(ValueError, match="no pool image"):
        plan_pairs(np.zeros(4, bool), 3, 2, 0)


def linear_model(params, x):
    """A centred linear classifier: random images get diverse, confident predictions."""
    return (x - 0.5).reshape(x.shape[0], -1) @ params["w"]


@pytest.fixture(scope="module")
def tiny_pool():
    """7 images labelled with the model's own predictions, except one (a dropped source)."""
    model_fn = linear_model
    params = {"w": 0.3 * jax.random.normal(jax.random.key(0), (int(np.prod(SHAPE)), 10))}
    x = jax.random.uniform(jax.random.key(3), (40,) + SHAPE)
    pred = np.asarray(jnp.argmax(model_fn(params, x), -1))
    first = {}
    for i, c in enumerate(pred):
        first.setdefault(int(c), i)
    classes = sorted(first)[:7]
    assert len(classes) == 7, "the tiny model should predict at least 7 classes"
    idx = [first[c] for c in classes]
    labels = np.array(classes)
    wrong = [c for c in range(10) if c not in classes][0]
    labels[2] = wrong                                            # misclassified -> dropped
    pool = TargetPool(np.asarray(x)[idx], labels, idx, {"dataset": "tiny"})
    pool.meta["dropped"] = int(np.flatnonzero(pool.labels == wrong)[0])   # after sorting
    return model_fn, params, pool


def _run(tmp, pool_fx, batch_size=3, **kw):
    model_fn, params, pool = pool_fx
    cfg = FullEvalConfig(lst=CFG, num_samples=100, rounds=3, batch_size=batch_size,
                         chunk_size=64, grid_n=4)
    return full_evaluation(model_fn, params, pool, cfg, tmp, model_name="tiny-normal",
                           distance_fn=basic_distance_fn, progress=False, **kw)


def test_ragged_last_batch_pairs_by_global_pool_index(tmp_path, tiny_pool):
    model_fn, params, pool = tiny_pool
    res = _run(tmp_path / "a", tiny_pool)
    # 6 kept sources (one pool image is misclassified), batches of 3, 3.
    kept_sorted = [i for i in range(len(pool)) if i != pool.meta["dropped"]]
    np.testing.assert_array_equal(res.source_index, kept_sorted)
    plan = np.load(tmp_path / "a" / "plan.npz")
    assert np.any(plan["target_index"] == pool.meta["dropped"])   # still used as a target
    res_b = _run(tmp_path / "b", tiny_pool, batch_size=4)       # batches 4, 2 (ragged)
    np.testing.assert_array_equal(res.target_index, res_b.target_index)
    for r in range(3):
        for b, (s, e) in enumerate(batch_bounds(6, 4)):
            z = np.load(tmp_path / "b" / "lst" / f"r{r}_b{b:05d}.npz")
            np.testing.assert_array_equal(z["target_index"], plan["perms"][r][z["source_index"]])
            # The distances were measured against the targets actually traversed toward.
            d = basic_distance_fn(z["outputs"], pool.images[z["target_index"]])
            np.testing.assert_allclose(z["dist_rmse"], d["rmse"], rtol=1e-5)
            assert z["outputs"].shape[0] == e - s
    assert res.triangle_stats.shape == (6, 3, 8) and res.per_source.shape == (6, 8)
    assert res.distances["rmse"].shape == (3, 6)
    for f in ("tables.md", "table1.tex", "table2.csv", "results.npz", "summary.json"):
        assert (tmp_path / "a" / f).is_file()


def test_failure_midway_then_resume_is_identical(tmp_path, tiny_pool):
    full = _run(tmp_path / "full", tiny_pool)
    seen = []

    def die_after_three(kind, name):
        seen.append(name)
        if len(seen) == 3:
            raise KeyboardInterrupt("simulated kill")

    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path / "part", tiny_pool, on_batch=die_after_three)
    done = sorted(p.name for p in (tmp_path / "part" / "lst").iterdir())
    assert done == ["r0_b00000.npz", "r0_b00001.npz", "r1_b00000.npz"]
    assert not (tmp_path / "part" / "results.npz").exists()
    with pytest.raises(ValueError, match="unfinished"):
        collect_results(tmp_path / "part")
    mtimes = {p: p.stat().st_mtime_ns for p in (tmp_path / "part" / "lst").iterdir()}
    resumed = []
    _run(tmp_path / "part", tiny_pool, on_batch=lambda k, n: resumed.append(n))
    assert len(resumed) == 3 + 2  # 3 remaining LST batches + 2 hull batches
    assert all(p.stat().st_mtime_ns == t for p, t in mtimes.items())
    _assert_same_run(tmp_path / "full", tmp_path / "part")
    np.testing.assert_array_equal(full.per_source, collect_results(tmp_path / "part").per_source)


def _assert_same_run(a: Path, b: Path):
    files = sorted(p.relative_to(a) for p in a.rglob("*.npz"))
    assert files == sorted(p.relative_to(b) for p in b.rglob("*.npz"))
    assert any(str(f).startswith("lst/") for f in files)
    for f in files:
        za, zb = np.load(a / f), np.load(b / f)
        assert za.files == zb.files
        for k in za.files:
            np.testing.assert_array_equal(za[k], zb[k], err_msg=f"{f}:{k}")


def test_config_mismatch_is_refused(tmp_path, tiny_pool):
    model_fn, params, pool = tiny_pool
    _run(tmp_path / "r", tiny_pool)
    cfg = FullEvalConfig(lst=CFG.replace(iters=7), num_samples=100, rounds=3, batch_size=3,
                         chunk_size=64, grid_n=4)
    with pytest.raises(ValueError, match="different config.*lst"):
        full_evaluation(model_fn, params, pool, cfg, tmp_path / "r", model_name="tiny-normal",
                        distance_fn=basic_distance_fn, progress=False)
    with pytest.raises(ValueError, match="rounds must be an integer >= 2"):
        FullEvalConfig(rounds=1)
    with pytest.raises(ValueError, match="grid must be one of"):
        FullEvalConfig(grid="dense")
    with pytest.raises(ValueError, match="at least 2 images"):
        full_evaluation(model_fn, params, TargetPool(pool.images[:1], pool.labels[:1], [0]),
                        FullEvalConfig(lst=CFG), tmp_path / "x", progress=False)


def test_table_statistics_and_rendering(tmp_path):
    d = {"lpips": np.array([[0.1, 0.2], [0.3, 0.4]]), "rmse": np.array([[1.0, 2.0], [3.0, 4.0]]),
         "extra": np.array([1.0, 1.0, 1.0, 1.0])}
    t1 = table1_stats(d)
    assert list(t1) == ["rmse", "lpips", "extra"]                  # paper order, then others
    assert t1["rmse"][0] == 2.5 and t1["rmse"][1] == pytest.approx(np.std([1, 2, 3, 4], ddof=1))
    per = np.array([[0.9, 0.5, 0.1, 0.2, 0.3, 0.4, 0.8, -0.1], [0.7, 0.3, 0.3, 0.4, 0.5, 0.6,
                                                                  0.6, -0.3]])
    names = ("p_src", "mean", "frac_0", "frac_0.1", "frac_0.2", "frac_0.3", "edge_mean",
             "edge_min")
    t2 = table2_stats(per, names)
    assert t2["p_src"][:2] == pytest.approx((0.8, 0.1))            # ddof = 0
    from lst_jax.jobs.lst.tables import write_tables
    from lst_jax.jobs.rundir import RunDir

    write_tables(RunDir(tmp_path), [("A (Normal)", t1)], [("A (Normal)", t2)])
    md = (tmp_path / "tables.md").read_text()
    assert "2.500 ± 1.291" in md and "0.80 ± 0.10" in md
    assert "edge_min" not in (tmp_path / "table2.md").read_text()
    assert "min drop" not in (tmp_path / "table2.md").read_text()
    assert "edge_min_mean" in (tmp_path / "table2.csv").read_text()
    tex = (tmp_path / "table1.tex").read_text()
    assert "$2.500 \\pm 1.291$" in tex and "\\begin{tabular}" in tex
    assert model_label("resnet50-linf") == "ResNet-50 (AT)"
    assert model_label("digits_resnet-normal") == "digits_resnet (Normal)"
    with pytest.raises(ValueError, match="shape"):
        table2_stats(per[:, :3], names)


def _tree_hashes(root: Path) -> dict:
    """relative path -> sha256 of every file under `root` (directories included as None)."""
    return {str(p.relative_to(root)): (hashlib.sha256(p.read_bytes()).hexdigest()
                                       if p.is_file() else None) for p in root.rglob("*")}


def test_tables_command_side_by_side_and_errors(tmp_path, tiny_pool, capsys):
    _run(tmp_path / "r1", tiny_pool)
    _run(tmp_path / "r2", tiny_pool, batch_size=4)
    (tmp_path / "r1" / "tables.md").write_text("stale: must survive lst-jax tables\n")
    before = {r: _tree_hashes(tmp_path / r) for r in ("r1", "r2")}
    assert cli.main(["tables", str(tmp_path / "r1"), str(tmp_path / "r2"), "--out",
                     str(tmp_path / "t"), "--labels", "first", "second"]) == 0
    # The runs it compares are byte-identical afterwards (file list and contents).
    assert {r: _tree_hashes(tmp_path / r) for r in ("r1", "r2")} == before
    md = (tmp_path / "t" / "tables.md").read_text()
    assert "| first |" in md and "| second |" in md
    assert json.loads((tmp_path / "t" / "tables.json").read_text())["runs"][1].endswith("r2")
    assert cli.main(["tables", str(tmp_path / "nope"), "--out", str(tmp_path / "t2")]) == 2
    assert "not a full-evaluation run directory" in capsys.readouterr().err
    for out in (tmp_path / "r1", tmp_path / "r2" / "tables"):
        assert cli.main(["tables", str(tmp_path / "r1"), str(tmp_path / "r2"), "--out",
                         str(out)]) == 2
        assert "tables never write into the runs" in capsys.readouterr().err
    assert {r: _tree_hashes(tmp_path / r) for r in ("r1", "r2")} == before


def test_cli_full_eval_killed_then_resumed_matches_uninterrupted(tmp_path):
    """SIGKILL the CLI after its first persisted batch, resume, compare with a clean run."""
    args = ["full-eval", "--model", "digits_resnet-normal", "--num-samples", "6",
            "--rounds", "2", "--batch-size", "2", "--iters", "8", "--log-step", "8",
            "--metrics", "basic", "--grid-n", "4", "--chunk-size", "64", "--quiet"]
    killed = tmp_path / "killed"
    kill_cli_when([*args, "--out", killed],
                  lambda: (killed / "lst").is_dir() and any((killed / "lst").glob("*.npz")),
                  timeout=240)
    n_done = len(list((killed / "lst").glob("*.npz")))
    assert 1 <= n_done < 6 and not (killed / "results.npz").exists()
    assert cli.main([*args, "--out", str(killed)]) == 0                      # resume
    assert cli.main([*args, "--out", str(tmp_path / "clean")]) == 0          # uninterrupted
    _assert_same_run(tmp_path / "clean", killed)
    a = json.loads((killed / "summary.json").read_text())
    b = json.loads((tmp_path / "clean" / "summary.json").read_text())
    assert a["table1"] == b["table1"] and a["table2"] == b["table2"]


def _count_restores(monkeypatch) -> list:
    from lst_jax.models import registry

    calls = []

    def counting(path, *a, **kw):
        calls.append(Path(path).name)
        return load_checkpoint(path, *a, **kw)

    load_checkpoint = registry.load_checkpoint
    monkeypatch.setattr(registry, "load_checkpoint", counting)
    return calls


def test_full_eval_restores_the_checkpoint_once(tmp_path, monkeypatch):
    """The pool built inside full-eval reuses the evaluated model's restored parameters."""
    restores = _count_restores(monkeypatch)
    args = ["full-eval", "--model", "digits_resnet-normal", "--num-samples", "4",
            "--rounds", "2", "--batch-size", "2", "--iters", "2", "--log-step", "2",
            "--metrics", "basic", "--grid-n", "4", "--chunk-size", "64", "--quiet",
            "--out", str(tmp_path / "run")]
    assert cli.main(args) == 0
    assert (tmp_path / "run" / "pool" / "manifest.json").is_file()   # built, not given
    assert restores == ["digits_resnet-normal"]


def test_full_eval_pool_uses_float32_and_the_restored_params(tmp_path, monkeypatch):
    from lst_jax.jobs.lst import job as jobs

    restores, seen = _count_restores(monkeypatch), []

    def stop(models, *a, **kw):
        seen.extend(models)
        raise KeyboardInterrupt("stop after the pool models are known")

    monkeypatch.setattr(jobs, "build_target_pool", stop)
    with pytest.raises(KeyboardInterrupt):
        jobs.full_eval_job("digits_resnet-normal", out=tmp_path / "run", progress=False,
                           compute_dtype="bfloat16")
    assert restores == ["digits_resnet-normal"]
    (model_fn, params), = seen
    assert model_fn.compute_dtype is None   # the pool is selected in float32
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(params))
