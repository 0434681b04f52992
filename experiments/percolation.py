"""Site percolation on d-dimensional hypercubic lattices: the probability that two random
occupied sites are connected, against the occupation probability p and the dimension d.

    python experiments/percolation.py --figure docs/figures/percolation.png   # ~5 min
    python experiments/percolation.py --quick --out runs/percolation_quick    # seconds

**Our illustration, not an experiment of the paper.** Vrabel et al. (*Input Space Mode
Connectivity in Deep Neural Networks*, arXiv 2409.05800, §5.2) explain input-space
connectivity in high dimension with a percolation argument: discretise the input space into a
grid whose cells independently carry a label with probability p; the site-percolation
threshold p_c(d) falls toward 0 as d grows (~1/(2d)), so any fixed p exceeds it in high
dimension, a giant cluster exists and two random same-label points are connected with high
probability. The paper has no simulation; this script shows the argument on lattices.

Model: every site of an L^d torus (periodic boundaries, 2d nearest neighbours; L chosen so
that L^d is about `--sites`, at least 3) is occupied independently with probability p;
clusters are nearest-neighbour connected occupied sites (`scipy.ndimage.label`, the boundary
wrap merged with a sparse connected-components pass). Measured per lattice:

    connected = sum_c s_c (s_c - 1) / (N (N - 1))    # two distinct random occupied sites
    largest   = max_c s_c / N                        # share of the largest cluster

(N occupied sites, s_c cluster sizes; exact for the lattice, no pair sampling), mean and
standard error over `--seeds` lattices. On an infinite lattice `connected` is 0 below p_c and
(P_inf(p) / p)^2 above it. Writes RUN/manifest.json, RUN/d<d>.npz (one per dimension, atomic:
a killed run resumes), RUN/results.json, RUN/results.csv, RUN/summary.md, RUN/percolation.png.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from lst_jax.jobs.rundir import RunDir, markdown_table  # noqa: E402
from lst_jax.utils.progress import Progress  # noqa: E402

# Site-percolation thresholds of the simple hypercubic lattice Z^d.
THRESHOLDS = {1: 1.0, 2: 0.592746, 3: 0.3116, 4: 0.196889, 5: 0.140797, 6: 0.109017,
              7: 0.0889511, 8: 0.0752101}
THRESHOLD_SOURCES = {
    1: "exact (a gap disconnects a chain)",
    2: "Newman & Ziff, PRL 85, 4104 (2000): 0.59274621(13)",
    3: "Lorenz & Ziff, J. Phys. A 31, 8147 (1998): 0.3116081(13)",
    **{d: "Grassberger, PRE 67, 036101 (2003)" for d in (4, 5, 6, 7, 8)},
}
FIXED_P = (0.05, 0.1, 0.2, 0.3)           # panel (b): connectivity against d at these p


def lattice_side(d: int, sites: int) -> int:
    """Side L of the lattice with L^d closest to `sites` (at least 3: a torus of side 3 or
    more has 2d distinct neighbours per site)."""
    return max(3, round(sites ** (1.0 / d)))


def p_grid(n: int = 36, p_min: float = 0.02) -> np.ndarray:
    """Log-spaced occupation probabilities from p_min to 1, plus `FIXED_P` and 0.5."""
    return np.unique(np.round(np.concatenate([np.geomspace(p_min, 1.0, n),
                                              FIXED_P, [0.5]]), 4))


def cluster_sizes(occupied: np.ndarray, periodic: bool = True) -> np.ndarray:
    """Sizes of the nearest-neighbour clusters of occupied sites.

    Shape:
        occupied: (L_1, ..., L_d) bool -> (n_clusters,) int64 (any order).
    """
    occupied = np.asarray(occupied, bool)
    structure = ndimage.generate_binary_structure(occupied.ndim, 1)
    labels, n = ndimage.label(occupied, structure)
    sizes = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    if not periodic or n < 2:
        return sizes.astype(np.int64)
    # the torus: sites on opposite faces are neighbours; merge their labels
    first = [np.take(labels, 0, axis=a).ravel() for a in range(labels.ndim)]
    last = [np.take(labels, -1, axis=a).ravel() for a in range(labels.ndim)]
    a, b = np.concatenate(first), np.concatenate(last)
    both = (a > 0) & (b > 0)
    a, b = a[both] - 1, b[both] - 1
    graph = coo_matrix((np.ones(a.size, np.int8), (a, b)), shape=(n, n))
    _, component = connected_components(graph, directed=False)
    return np.bincount(component, weights=sizes).astype(np.int64)


def pair_statistics(sizes: np.ndarray) -> tuple[float, float]:
    """(probability that two distinct random occupied sites share a cluster, share of the
    occupied sites in the largest cluster); NaN with fewer than 2 occupied sites."""
    sizes = np.asarray(sizes, np.float64)
    n = sizes.sum()
    if n < 2:
        return float("nan"), float("nan")
    return float(np.sum(sizes * (sizes - 1)) / (n * (n - 1))), float(sizes.max() / n)


def simulate(d: int, side: int, p: float, seed: int, periodic: bool = True):
    """One random lattice: (connected, largest, number of occupied sites). The lattice is
    drawn from `default_rng([seed, d, side, round(p * 1e9)])`, so every (d, L, p, seed) has
    its own stream, independent of the grid and of the order of the work."""
    rng = np.random.default_rng([seed, d, side, int(round(p * 1e9))])
    occupied = rng.random((side,) * d, dtype=np.float32) < np.float32(p)
    conn, largest = pair_statistics(cluster_sizes(occupied, periodic))
    return conn, largest, int(occupied.sum())


def run(out, dims, sites, probs, seeds, periodic=True, progress=True) -> dict:
    """Runs (or resumes) the sweep in `out`; returns the results dict (also results.json).

    Shape:
        per dimension: connected, largest: (len(probs), seeds) float64; occupied: int64.
    """
    rd = RunDir(out)
    probs = [float(p) for p in probs]
    config = {"dims": list(dims), "sites": int(sites), "probs": probs, "seeds": int(seeds),
              "periodic": bool(periodic)}
    rd.ensure_manifest(config, script="experiments/percolation.py",
                       thresholds={str(d): THRESHOLDS.get(d) for d in dims})
    for d in [d for d in dims if not rd.exists(f"d{d}.npz")]:
        side = lattice_side(d, sites)
        arr = np.zeros((3, len(probs), seeds))
        # one bar per dimension: lattice costs differ ~100x between d = 2 and d = 8
        with Progress(len(probs) * seeds, f"percolation d={d}, {side}^{d} sites", "lattices",
                      enabled=progress) as bar:
            for i, p in enumerate(probs):
                for s in range(seeds):
                    arr[:, i, s] = simulate(d, side, p, s, periodic)
                    bar.update()
        rd.save_npz(f"d{d}.npz", side=side, connected=arr[0], largest=arr[1],
                    occupied=arr[2].astype(np.int64))
    results = {"config": config, "dims": {}}
    for d in dims:
        z = rd.load_npz(f"d{d}.npz")
        side = int(z["side"])
        results["dims"][str(d)] = {
            "side": side, "sites": side ** d, "p_c": THRESHOLDS.get(d),
            "p_c_source": THRESHOLD_SOURCES.get(d),
            "connected_mean": _nanmean(z["connected"]).tolist(),
            "connected_sem": _sem(z["connected"]).tolist(),
            "largest_mean": _nanmean(z["largest"]).tolist(),
            "largest_sem": _sem(z["largest"]).tolist()}
    rd.write_json("results.json", results)
    rd.write_text("results.csv", _csv(results))
    rd.write_text("summary.md", _summary(results))
    return results


def _nanmean(a):
    n = np.sum(np.isfinite(a), axis=-1)
    return np.where(n > 0, np.nansum(a, axis=-1) / np.maximum(n, 1), np.nan)


def _sem(a):
    n = np.sum(np.isfinite(a), axis=-1)
    dev = np.where(np.isfinite(a), a - _nanmean(a)[..., None], 0.0)
    var = np.sum(dev ** 2, axis=-1) / np.maximum(n - 1, 1)
    return np.where(n > 1, np.sqrt(var / np.maximum(n, 1)), np.nan)


def _csv(results) -> str:
    probs = results["config"]["probs"]
    lines = ["d,side,sites,p_c,p,connected_mean,connected_sem,largest_mean,largest_sem"]
    for d, r in results["dims"].items():
        for i, p in enumerate(probs):
            lines.append(",".join(str(v) for v in (
                d, r["side"], r["sites"], r["p_c"], p, r["connected_mean"][i],
                r["connected_sem"][i], r["largest_mean"][i], r["largest_sem"][i])))
    return "\n".join(lines) + "\n"


def _summary(results) -> str:
    probs = results["config"]["probs"]
    fixed = [p for p in FIXED_P if p in probs]
    header = ["d", "lattice", "p_c(d)"] + [f"P(connected) at p = {p}" for p in fixed]
    rows = []
    for d, r in results["dims"].items():
        cells = [f"{r['connected_mean'][probs.index(p)]:.3f} ± "
                 f"{r['connected_sem'][probs.index(p)]:.3f}" for p in fixed]
        rows.append([d, f"{r['side']}^{d} = {r['sites']:,}", r["p_c"], *cells])
    c = results["config"]
    return (f"# Site percolation: two random occupied sites connected\n\n"
            f"{'Periodic' if c['periodic'] else 'Open'} boundaries, {c['seeds']} lattices per "
            f"point (mean ± standard error). Our illustration of the percolation argument of "
            f"Vrabel et al. (arXiv 2409.05800, §5.2).\n\n" + markdown_table(header, rows))


def plot(results, path):
    """Two panels: (a) P(connected) against p per d, p_c(d) marked; (b) against d at fixed p."""
    from lst_jax.plots.common import new_figure, save_png

    probs = np.asarray(results["config"]["probs"])
    dims = [int(d) for d in results["dims"]]
    fig = new_figure(12, 4.6)
    ax, bx = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.6, 1]})
    colors = [f"C{i}" for i in range(len(dims))]
    for d, c in zip(dims, colors):
        r = results["dims"][str(d)]
        ax.errorbar(probs, r["connected_mean"], yerr=r["connected_sem"], color=c, marker=".",
                    ms=4, lw=1.2, capsize=2, label=f"d = {d} ({r['side']}^{d} sites)")
        if r["p_c"] is not None and r["p_c"] < 1:
            ax.axvline(r["p_c"], color=c, ls="--", lw=0.8)
    ax.set_xscale("log")
    ticks = [t for t in (0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0) if probs[0] <= t <= probs[-1]]
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.minorticks_off()
    ax.set_xlabel("occupation probability p (dashed: threshold p_c(d))")
    ax.set_ylabel("P(two random occupied sites connected)")
    ax.set_title("(a) site percolation on L^d tori")
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize=7, loc="upper left")
    for p in [p for p in FIXED_P if p in probs]:
        i = int(np.flatnonzero(probs == p)[0])
        mean = [results["dims"][str(d)]["connected_mean"][i] for d in dims]
        sem = [results["dims"][str(d)]["connected_sem"][i] for d in dims]
        bx.errorbar(dims, mean, yerr=sem, marker="o", ms=4, capsize=2, label=f"p = {p}")
    bx.set_xticks(dims, [f"{d}\n{THRESHOLDS[d]:.3g}" if d in THRESHOLDS else str(d)
                         for d in dims], fontsize=8)
    bx.set_xlabel("dimension d  (below it: p_c(d))")
    bx.set_ylabel("P(connected)")
    bx.set_title("(b) a fixed p percolates once d is large")
    bx.set_ylim(-0.02, 1.02)
    bx.legend(fontsize=8, loc="upper left")
    fig.suptitle("Our illustration of the percolation argument of Vrabel et al. (2024, §5.2); "
                 "not an experiment of the paper", fontsize=9)
    fig.tight_layout()
    return save_png(fig, path, dpi=110)


def main(argv=None):
    from lst_jax.utils.cliargs import (
        LstParser,
        add_preset_option,
        set_preset_selector,
        show_defaults,
    )

    p = LstParser(description=__doc__.split("\n\n")[0],
                  formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/percolation", help="run directory")
    p.add_argument("--dims", type=int, nargs="+", default=list(range(1, 9)))
    add_preset_option(p, "--sites", type=int, default=1_000_000, presets={"quick": 20_000},
                      help="about L^d sites per lattice")
    add_preset_option(p, "--seeds", type=int, default=5, presets={"quick": 3},
                      help="lattices per (d, p)")
    add_preset_option(p, "--points", type=int, default=36, presets={"quick": 12},
                      help="log-spaced p values in [0.02, 1]")
    p.add_argument("--open", action="store_true", help="open instead of periodic boundaries")
    p.add_argument("--quick", action="store_true",
                   help="small lattices, few seeds and p values (the options marked "
                        "'--quick' that are not given)")
    set_preset_selector(p, lambda a: "quick" if a.quick else None)
    p.add_argument("--figure", help="also write the figure here (e.g. docs/figures/...)")
    p.add_argument("--no-progress", action="store_true")
    show_defaults(p)
    args = p.parse_args(argv)
    for name in ("sites", "seeds", "points"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    if any(d < 1 for d in args.dims):
        p.error(f"--dims must be >= 1, got {args.dims}")
    results = run(args.out, args.dims, args.sites, p_grid(args.points), args.seeds,
                  periodic=not args.open, progress=not args.no_progress)
    png = plot(results, Path(args.out) / "percolation.png")
    if args.figure:
        plot(results, args.figure)
    print((Path(args.out) / "summary.md").read_text())
    print(f"wrote {args.out}/results.json, results.csv, summary.md, {png.name}"
          + (f" and {args.figure}" if args.figure else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
