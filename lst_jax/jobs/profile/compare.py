"""Comparing models across a profile: derived metrics (mCE), rank correlations and the
plain-words summary of which signatures track which robustness."""

from __future__ import annotations

import itertools
import math
import warnings

import numpy as np

# Metric name -> (label for tables/figures, higher is more robust?) for the report; metrics
# not listed are shown with their own name.
METRIC_INFO = {
    "clean_accuracy": ("clean accuracy", None),
    "robust_accuracy": ("PGD robust accuracy", True),
    "mean_corruption_accuracy": ("mean corruption accuracy", True),
    "mce": ("mCE (vs baseline)", False),
    "lst_rmse": ("LST RMSE to target (Table 1)", None),
    "lst_linf": ("LST L-inf to target (Table 1)", None),
    "lst_ssim": ("LST SSIM to target (Table 1)", None),
    "lst_lpips": ("LST LPIPS to target (Table 1)", None),
    "hull_mean_conf": ("hull mean confidence (Table 2)", None),
    "hull_frac_above_delta": ("hull fraction > p_src - delta (Table 2)", None),
    "star_min_conf": ("star-path minimum confidence", None),
    "iaside_score": ("I-ASIDE spectral robustness score", None),
    "iaside_signed_score": ("I-ASIDE signed score", None),
    "iaside_low_band_importance": ("I-ASIDE importance of the lowest quarter of bands", None),
    "barrier_real_max_median": ("barrier max, real-real (median)", None),
    "barrier_real_gap_median": ("barrier gap, real-real (median)", None),
    "barrier_adv_max_median": ("barrier max, real-adversarial (median)", None),
    "barrier_adv_gap_median": ("barrier gap, real-adversarial (median)", None),
    "detect_auroc_optimization": ("detector AUROC, the paper's attack", None),
    "detect_auroc_pgd": ("detector AUROC, PGD", None),
}
# Metrics that lie in [0, 1] by definition (figures draw them on [0, 1]).
UNIT_INTERVAL_METRICS = ("clean_accuracy", "robust_accuracy", "mean_corruption_accuracy",
                         "lst_rmse", "lst_linf", "lst_ssim", "hull_mean_conf",
                         "hull_frac_above_delta", "star_min_conf", "iaside_score",
                         "iaside_low_band_importance", "detect_auroc_optimization",
                         "detect_auroc_pgd")
# Metrics that measure robustness itself (the x axes), not input-space geometry.
ROBUSTNESS_METRICS = ("clean_accuracy", "robust_accuracy", "mean_corruption_accuracy", "mce")


def metric_label(name: str, pgd_radius: int | None = None) -> str:
    """The metric's label in tables and figures; the PGD robust accuracy names its radius
    (`pgd_radius`, in 1/255) where given."""
    label = METRIC_INFO.get(name, (name, None))[0]
    if name == "robust_accuracy" and pgd_radius is not None:
        label = f"{label} at {pgd_radius:g}/255"
    return label


def add_corruption_errors(metrics: dict, robustness: dict, baseline: dict) -> list[str]:
    """Adds `mce` (ImageNet-C convention: corruption errors relative to the baseline's, the
    baseline itself scores 1) to `metrics` from the robustness results of a model and of the
    baseline. Corruptions on which the baseline makes no error at any severity have no
    corruption error and are left out; their names are returned."""
    from lst_jax.robustness import corruption_errors

    err = 1 - np.asarray(robustness["corruption_accuracy"])
    base = 1 - np.asarray(baseline["corruption_accuracy"])
    ce = corruption_errors(err, base, skip_undefined=True)
    if np.all(np.isnan(ce)):
        raise ValueError("the mCE baseline makes no error on any corruption: choose another "
                         "baseline or harder severities")
    metrics["mce"] = float(np.nanmean(ce))
    return [c for c, v in zip(robustness["corruptions"], ce) if np.isnan(v)]


def _ranks(a: np.ndarray) -> np.ndarray:
    """Average ranks (ties share the mean rank), as Spearman's correlation uses."""
    order = np.argsort(a, kind="stable")
    ranks = np.empty(len(a))
    ranks[order] = np.arange(1, len(a) + 1)
    for v in np.unique(a):
        tie = a == v
        ranks[tie] = ranks[tie].mean()
    return ranks


def spearman(x, y) -> dict:
    """Spearman's rank correlation with an exact permutation p-value (two-sided, for n <= 8
    all n! orderings; beyond, scipy's t approximation).

    Returns:
        {"rho", "p", "n", "note"}; rho/p are None when undefined (n < 3, a constant series,
        non-finite values), with the reason in `note`.
    """
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    n = len(x)
    if n != len(y):
        raise ValueError(f"x and y differ in length ({n} and {len(y)})")
    if n < 3:
        return {"rho": None, "p": None, "n": n, "note": "needs at least 3 models"}
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        return {"rho": None, "p": None, "n": n, "note": "non-finite values"}
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return {"rho": None, "p": None, "n": n, "note": "constant across models"}
    rx, ry = _ranks(x), _ranks(y)

    def rho_of(ry_perm):
        return float(np.corrcoef(rx, ry_perm)[0, 1])

    rho = rho_of(ry)
    if n <= 8:
        perms = itertools.permutations(ry)
        hits = sum(abs(rho_of(np.asarray(p))) >= abs(rho) - 1e-12 for p in perms)
        p = hits / math.factorial(n)
    else:
        from scipy import stats

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            p = float(stats.spearmanr(x, y).pvalue)
    return {"rho": rho, "p": p, "n": n, "note": ""}


def significance_threshold(n: int, alpha: float = 0.05) -> float | None:
    """The smallest |rho| whose exact two-sided permutation p-value is below `alpha` for n
    models without ties (None: no ordering of n models reaches it, or n > 8)."""
    if n < 3 or n > 8:
        return None
    ref = np.arange(n, dtype=np.float64)
    rhos = np.array([abs(np.corrcoef(ref, np.asarray(p))[0, 1])
                     for p in itertools.permutations(ref)])
    for r in np.unique(np.round(rhos, 12)):
        if np.mean(rhos >= r - 1e-12) < alpha:
            return float(r)
    return None


def correlations(table: dict, models, against=("robust_accuracy", "mce")) -> dict:
    """Spearman correlation of every non-robustness metric with each metric of `against`.

    Args:
        table: model -> {metric: float}.

    Returns:
        {metric: {against_metric: spearman dict}}.
    """
    names = sorted({k for m in models for k in table[m]} - set(ROBUSTNESS_METRICS))
    out = {}
    for metric in names:
        values = [table[m].get(metric) for m in models]
        if all(v is None for v in values) or not all(v is None or np.isscalar(v)
                                                     for v in values):
            continue
        if any(v is None for v in values):
            missing = [m for m, v in zip(models, values) if v is None]
            out[metric] = {a: {"rho": None, "p": None, "n": len(models),
                               "note": f"not available for {', '.join(missing)}"}
                           for a in against}
            continue
        ys = [table[m][metric] for m in models]
        out[metric] = {a: spearman([table[m][a] for m in models], ys) for a in against
                       if all(a in table[m] for m in models)}
    return out


def describe(corr: dict, n: int, table: dict | None = None, models=None) -> list[str]:
    """Plain words, one line per robustness measure, never stronger than n models support:
    a metric "tracks" it when the exact permutation p < 0.05, "leans" when |rho| >= 0.7
    without significance, otherwise shows "no monotone relation". With `table` and `models`
    a last line says how the robustness measures rank the models against each other."""
    if n < 3:
        return [f"Rank correlations need at least 3 models; this profile has {n}."]
    seen = {a for by in corr.values() for a in by}
    against = [a for a in ROBUSTNESS_METRICS if a in seen] + sorted(seen - set(ROBUSTNESS_METRICS))
    lines = []
    for a in against:
        groups = {"tracks it (p < 0.05)": [], "leans (|rho| >= 0.7, not significant)": [],
                  "no monotone relation": [], "undefined": []}
        for metric, by in corr.items():
            s = by.get(a)
            if s is None:
                continue
            if s["rho"] is None:
                groups["undefined"].append(f"{metric_label(metric)} ({s['note']})")
                continue
            item = f"{metric_label(metric)} ({s['rho']:+.2f}, p = {s['p']:.3f})"
            key = ("tracks it (p < 0.05)" if s["p"] < 0.05 else
                   "leans (|rho| >= 0.7, not significant)" if abs(s["rho"]) >= 0.7 else
                   "no monotone relation")
            groups[key].append(item)
        parts = [f"{k}: {'; '.join(v)}" for k, v in groups.items() if v]
        lines.append(f"**vs {metric_label(a)}** (Spearman rho, exact p, n = {n}) - "
                     + ". ".join(parts) + ".")
    if table is not None and models is not None and len(against) == 2 \
            and all(a in table[m] for a in against for m in models):
        s = spearman([table[m][against[0]] for m in models],
                     [table[m][against[1]] for m in models])
        if s["rho"] is not None:
            same = (" They rank these models identically, so no correlation here can tell "
                    "the two kinds of robustness apart." if abs(s["rho"]) > 1 - 1e-9 else "")
            lines.append(f"{metric_label(against[0])} and {metric_label(against[1])} "
                         f"themselves: rho = {s['rho']:+.2f} (p = {s['p']:.3f}).{same}")
    return lines


__all__ = ["spearman", "significance_threshold", "correlations", "describe",
           "add_corruption_errors", "metric_label",
           "METRIC_INFO", "ROBUSTNESS_METRICS"]
