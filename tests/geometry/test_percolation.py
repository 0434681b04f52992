"""experiments/percolation.py: cluster sizes against a brute-force union-find, known answers
(full lattice, checkerboard, the 1-D chain and ring in expectation), the high-dimension
effect, and the resumable run directory end to end (small lattices, a few seconds)."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from experiments import percolation as perc


def _brute_sizes(occupied, periodic):
    """Cluster sizes by an explicit union-find over every nearest-neighbour pair."""
    shape = occupied.shape
    parent = {s: s for s in itertools.product(*map(range, shape)) if occupied[s]}

    def find(a):
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for site in parent:
        for ax in range(len(shape)):
            nb = list(site)
            nb[ax] += 1
            if nb[ax] == shape[ax]:
                if not periodic:
                    continue
                nb[ax] = 0
            if tuple(nb) in parent:
                parent[find(site)] = find(tuple(nb))
    roots = [find(s) for s in parent]
    return sorted(np.unique(roots, axis=0, return_counts=True)[1].tolist()) if roots else []


@pytest.mark.parametrize("shape", [(17,), (6, 5), (4, 3, 5), (3, 4, 3, 3), (3, 3, 3, 3, 3)])
@pytest.mark.parametrize("periodic", [True, False])
def test_cluster_sizes_equal_brute_force(shape, periodic):
    for p in (0.25, 0.5, 0.7):
        occ = np.random.default_rng([len(shape), int(p * 100)]).random(shape) < p
        assert sorted(perc.cluster_sizes(occ, periodic).tolist()) == _brute_sizes(occ, periodic)


def test_wrap_merges_clusters_across_faces():
    occ = np.zeros((5, 5), bool)
    occ[2, 0] = occ[2, 4] = True                  # neighbours only through the boundary
    assert sorted(perc.cluster_sizes(occ, periodic=True)) == [2]
    assert sorted(perc.cluster_sizes(occ, periodic=False)) == [1, 1]


def test_known_answers_full_empty_checkerboard():
    for d, side in ((1, 50), (2, 12), (4, 5)):
        conn, largest, n = perc.simulate(d, side, 1.0, seed=0)
        assert (conn, largest, n) == (1.0, 1.0, side ** d)
    conn, largest, n = perc.simulate(3, 6, 0.0, seed=0)
    assert n == 0 and np.isnan(conn) and np.isnan(largest)
    board = np.indices((8, 8)).sum(0) % 2 == 0     # every site isolated, also on the torus
    assert perc.pair_statistics(perc.cluster_sizes(board)) == (0.0, 1 / 32)


@pytest.mark.parametrize("periodic", [False, True])
def test_one_dimensional_pair_count_matches_the_exact_expectation(periodic):
    """E sum_c s_c (s_c - 1) over ordered pairs of sites i != j in one cluster: on a chain
    sum_{i != j} p^(|i-j|+1); on a ring either arc between i and j must be occupied."""
    n, p, reps = 60, 0.8, 400
    k = np.arange(1, n)
    if periodic:
        want = n * np.sum(p ** 2 * (p ** (k - 1) + p ** (n - k - 1) - p ** (n - 2)))
    else:
        want = 2 * np.sum((n - k) * p ** (k + 1))
    rng = np.random.default_rng(0)
    got = []
    for _ in range(reps):
        s = perc.cluster_sizes(rng.random(n) < p, periodic).astype(np.float64)
        got.append(np.sum(s * (s - 1)))
    sem = np.std(got, ddof=1) / np.sqrt(reps)
    assert abs(np.mean(got) - want) < 4 * sem, (np.mean(got), want, sem)


def test_a_fixed_p_connects_in_high_dimension_only():
    """p = 0.3 is above p_c in 6-D (0.109) and below it in 2-D (0.593)."""
    high, _, _ = perc.simulate(6, 7, 0.3, seed=0)
    low, _, _ = perc.simulate(2, 343, 0.3, seed=0)         # same number of sites, 7^6
    assert high > 0.9 and low < 0.01


def test_thresholds_fall_with_dimension():
    pcs = [perc.THRESHOLDS[d] for d in sorted(perc.THRESHOLDS)]
    assert all(a > b for a, b in zip(pcs, pcs[1:]))
    for d in range(3, 9):   # between the Bethe-lattice value 1/(2d-1) and twice it
        assert 1 / (2 * d - 1) < perc.THRESHOLDS[d] < 2 / (2 * d - 1)
    assert [perc.lattice_side(d, 10 ** 6) for d in (1, 2, 3, 6, 8, 20)] == [
        10 ** 6, 1000, 100, 10, 6, 3]


def test_run_resumes_and_refuses_another_config(tmp_path, capsys):
    args = ["--out", str(tmp_path / "run"), "--dims", "1", "2", "3", "--sites", "3000",
            "--seeds", "2", "--points", "5", "--no-progress",
            "--figure", str(tmp_path / "fig.png")]
    assert perc.main(args) == 0
    out = tmp_path / "run"
    first = json.loads((out / "results.json").read_text())
    assert {"manifest.json", "d1.npz", "d2.npz", "d3.npz", "results.csv", "summary.md",
            "percolation.png"} <= {f.name for f in out.iterdir()}
    assert (tmp_path / "fig.png").stat().st_size > 10_000
    r = first["dims"]["3"]
    assert r["side"] == 14 and r["connected_mean"][-1] == 1.0       # p = 1
    assert len((out / "results.csv").read_text().splitlines()) == 1 + 3 * len(
        first["config"]["probs"])
    (out / "d2.npz").unlink()                       # a killed run: d = 2 missing
    assert perc.main(args) == 0
    assert json.loads((out / "results.json").read_text()) == first
    with pytest.raises(ValueError, match="different config.*seeds"):
        perc.main(args[:9] + ["3"] + args[10:])
    capsys.readouterr()
