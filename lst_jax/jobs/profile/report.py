"""Writing a profile: profile.json, profile.csv, report.md (renders on GitHub) and a
self-contained report.html (figures embedded as data URIs), plus the figures as PNG."""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import re
from pathlib import Path

import numpy as np

from lst_jax.jobs.profile import compare
from lst_jax.jobs.profile.compare import (
    METRIC_INFO,
    ROBUSTNESS_METRICS,
    describe,
    metric_label,
    significance_threshold,
)
from lst_jax.jobs.rundir import RunDir, markdown_table
from lst_jax.utils.rounding import format_estimate


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if not np.isfinite(v):
            return "nan"
        return f"{v:.3f}" if abs(v) < 100 else f"{v:.1f}"
    return str(v)


def scalar_metrics(table: dict, models) -> list[str]:
    """Metric names with a scalar value (or None: not available) for every model and a value
    for at least one, robustness first."""
    names = [k for k in dict.fromkeys(k for m in models for k in table[m])
             if all(table[m].get(k) is None or np.isscalar(table[m][k]) for m in models)
             and any(table[m].get(k) is not None for m in models)]
    order = {k: i for i, k in enumerate(METRIC_INFO)}    # the same order after a JSON round trip
    rest = sorted((k for k in names if k not in ROBUSTNESS_METRICS),
                  key=lambda k: (order.get(k, len(order)), k))
    return [k for k in ROBUSTNESS_METRICS if k in names] + rest


def _binomial_se(p, n):
    return float(np.sqrt(p * (1 - p) / n)) if p is not None and n else None


def _mean_se(entry):
    """SE of a [mean, std, n] table entry (LST Tables 1-2)."""
    if entry is None or len(entry) < 3 or not entry[2] or entry[2] < 2:
        return None
    return float(entry[1] / np.sqrt(entry[2]))


def _auroc_se(a, n_pos, n_neg):
    """Hanley & McNeil (1982) standard error of an AUROC from n_pos positives, n_neg negatives."""
    if a is None or not n_pos or not n_neg:
        return None
    q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
    v = (a * (1 - a) + (n_pos - 1) * (q1 - a * a) + (n_neg - 1) * (q2 - a * a)) / (n_pos * n_neg)
    return float(np.sqrt(max(v, 0.0)))


def _bootstrap_median_se(values, draws: int = 2000, seed: int = 0):
    v = np.asarray(values, np.float64)
    if v.size < 2:
        return None
    idx = np.random.default_rng(seed).integers(0, v.size, (draws, v.size))
    return float(np.std(np.median(v[idx], axis=1), ddof=1))


def metric_errors(profile: dict, root=None) -> dict:
    """Standard errors of the profile's metrics, where the saved results give one: binomial for
    accuracies (n test images; for the mean corruption accuracy n images, an upper bound since
    every corruption and severity reuses them), SE of the mean for LST Tables 1-2 metrics,
    I-ASIDE's own score SE, Hanley-McNeil for detector AUROCs, and a bootstrap over pairs for
    barrier medians when the barrier run's per-pair values (`stats.npz`) are under `root`.

    Returns:
        model -> {metric: se} (metrics without an SE are absent).
    """
    res = profile.get("results", {})
    out = {}
    for m in profile["models"]:
        e = {}
        rob = res.get("robustness", {}).get(m)
        if rob:
            n = rob.get("num_images")
            for k in ("clean_accuracy", "robust_accuracy", "mean_corruption_accuracy"):
                if k in rob:
                    e[k] = _binomial_se(rob[k], n)
        lst = res.get("lst", {}).get(m)
        if lst:
            for k, v in lst.get("table1", {}).items():
                e[f"lst_{k}"] = _mean_se(v)
            t2 = lst.get("table2", {})
            e["hull_mean_conf"] = _mean_se(t2.get("mean"))
            frac = [k for k in t2 if k.startswith("frac_")
                    and t2[k][0] == lst.get("hull_frac_above_delta")]
            e["hull_frac_above_delta"] = _mean_se(t2[frac[0]]) if frac else None
        ia = res.get("iaside", {}).get(m)
        if ia:
            e["iaside_score"] = e["iaside_signed_score"] = ia.get("score_se")
        con = res.get("connectivity", {}).get(m)
        if con:
            det = con.get("detect", {})
            for attack, d in det.get("attacks", {}).items():
                e[f"detect_auroc_{attack}"] = _auroc_se(d.get("auroc"), d.get("n_adversarial"),
                                                        det.get("n_clean"))
            run_dir = con.get("barrier", {}).get("run_dir")
            stats = Path(root) / run_dir / "stats.npz" if root and run_dir else None
            if stats is not None and stats.is_file():
                with np.load(stats) as z:
                    for g, short in (("real", "real"), ("adversarial", "adv")):
                        for q in ("max", "gap"):
                            if f"{g}_{q}" in z:
                                e[f"barrier_{short}_{q}_median"] = _bootstrap_median_se(
                                    z[f"{g}_{q}"])
        out[m] = {k: v for k, v in e.items() if v is not None and np.isfinite(v)}
    return out


def write_csv(run: RunDir, table: dict, models) -> Path:
    cols = scalar_metrics(table, models)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["model"] + cols)
    for m in models:
        w.writerow([m] + ["" if table[m].get(c) is None else repr(float(table[m][c]))
                          for c in cols])
    return run.write_text("profile.csv", buf.getvalue())


# The analyses' names in the report's data line.
ANALYSIS_NAMES = {"robustness": "robustness", "lst": "LST", "iaside": "I-ASIDE",
                  "connectivity": "connectivity"}
TABLE_NAMES = {"digits": "the digits table [ours]",
               "cifar10": "CIFAR-10-C's severities (32x32)",
               "imagenet": "ImageNet-C's severities (224x224)"}


def _count(v) -> str:
    if isinstance(v, dict):     # differs between the models
        return " / ".join(f"{c} ({m})" for m, c in v.items())
    return str(v)


def data_line(profile: dict) -> str:
    """The report's data sentence: the images loaded, how many each analysis used, the
    corruption table and the PGD radius."""
    used = profile.get("images_per_analysis") or {}
    parts = [f"{ANALYSIS_NAMES.get(a, a)} " + ", ".join(f"{_count(v)} {what}"
                                                       for what, v in c.items())
             for a, c in used.items() if c]
    split = profile.get("split", "test")
    out = (f"Data: {profile.get('data_description', profile['data'])} "
           f"({profile['num_images']} {split + ' ' if split else ''}images")
    out += f"; used: {'; '.join(parts)})" if parts else ")"
    if profile.get("corruption_table"):
        table = profile["corruption_table"]
        out += (f"; corruptions: {TABLE_NAMES.get(table, table)}; "
                f"PGD radius {profile['pgd_radius']:g}/255")
    return out


def _correlation_rows(corr: dict):
    rows = []
    for metric, by in corr.items():
        cells = []
        for against in ("robust_accuracy", "mce"):
            s = by.get(against)
            cells.append("-" if s is None or s["rho"] is None
                         else f"{s['rho']:+.2f} (p = {s['p']:.3f})")
        rows.append([metric_label(metric)] + cells)
    return rows


def render_markdown(profile: dict, figures: dict, errors: dict | None = None) -> str:
    """The report page; `figures` maps a caption to a path relative to the report; `errors`
    (`metric_errors`) puts "± SE" beside the values that have one, rounded to it."""
    models, table = profile["models"], profile["metrics"]
    errors = errors or {}

    def cell(m, c):
        v, se = table[m].get(c), errors.get(m, {}).get(c)
        return format_estimate(v, se) if se else _fmt(v)

    n = len(models)
    cols = scalar_metrics(table, models)
    radius = profile.get("pgd_radius")

    def metric_label(c):     # the PGD robust accuracy names its radius
        return compare.metric_label(c, radius)

    out = [f"# Model profile: {', '.join(models)}", "",
           f"Regenerate: `{profile['command']}`", "",
           f"{data_line(profile)}; preset "
           f"`{profile['preset']}`; mCE baseline `{profile['baseline']}`"
           + (f" (left out of the mCE, the baseline never errs on them: "
              f"{', '.join(profile['mce_left_out'])})" if profile.get("mce_left_out") else "")
           + f"; {n} models.", ""]
    out += ["## All metrics", "",
            markdown_table(["metric"] + [f"`{m}`" for m in models],
                           [[metric_label(c)] + [cell(m, c) for m in models]
                            for c in cols]), ""]
    if errors:
        out += ["± one standard error where the results give one (binomial for accuracies; "
                "SE of the mean over pairs/sources for LST; I-ASIDE's own; Hanley-McNeil for "
                "AUROCs; bootstrap over pairs for barrier medians when the barrier run's "
                "per-pair values are present); values are rounded to their error.", ""]
    if profile["correlations"] and n >= 3:
        thr = significance_threshold(n)
        power = (f"with {n} models only |rho| >= {thr:.2f} reaches p < 0.05" if thr else
                 f"with {n} models no ordering can reach p < 0.05" if n <= 8 else
                 "p from the t approximation")
        out += [f"## Rank correlation with robustness (Spearman, n = {n} models)", "",
                f"Exact permutation p-values (two-sided; {power}): a ranking check over "
                "these models, not a law.", "",
                markdown_table(["geometry metric", f"vs {metric_label('robust_accuracy')}",
                                "vs mCE"],
                               _correlation_rows(profile["correlations"])), ""]
        out += ["## In words", ""] + [f"- {s}" for s in describe(profile["correlations"], n, table,
                                                                 models)]
        out += [""]
    elif n < 3:
        out += [f"Rank correlations need at least 3 models; this profile has {n}.", ""]
    out += ["## Figures", ""]
    for caption, rel in figures.items():
        out += [f"### {caption}", "", f"![{caption}]({rel})", ""]
    out += ["## Settings", "", "```json", json.dumps(profile["config"], indent=1,
                                                      sort_keys=True), "```", ""]
    return "\n".join(out)


def _inline_markdown(text: str) -> str:
    """The small Markdown subset of `render_markdown` (code, bold) as HTML."""
    text = html.escape(text)
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", text)
    return re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", text)


def markdown_to_html(md: str, images: dict, title: str) -> str:
    """Self-contained HTML from the report's Markdown: images (`![c](rel)`) become data URIs
    from `images` (rel path -> PNG bytes); nothing outside the page is referenced."""
    body, in_code, in_table, in_list = [], False, False, False
    for line in md.splitlines():
        if line.startswith("```"):
            body.append("</pre>" if in_code else "<pre>")
            in_code = not in_code
            continue
        if in_code:
            body.append(html.escape(line))
            continue
        if in_table and not line.startswith("|"):
            body.append("</table>")
            in_table = False
        if in_list and not line.startswith("- "):
            body.append("</ul>")
            in_list = False
        m = re.fullmatch(r"!\[([^\]]*)\]\(([^)]+)\)", line)
        if m:
            data = base64.b64encode(images[m.group(2)]).decode()
            body.append(f'<img alt="{html.escape(m.group(1))}" '
                        f'src="data:image/png;base64,{data}">')
        elif line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            body.append(f"<h{level}>{_inline_markdown(line[level:].strip())}</h{level}>")
        elif line.startswith("|"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            if all(set(c) <= {"-"} for c in cells):
                continue
            tag = "th" if not in_table else "td"
            if not in_table:
                body.append("<table>")
                in_table = True
            body.append("<tr>" + "".join(f"<{tag}>{_inline_markdown(c)}</{tag}>"
                                         for c in cells) + "</tr>")
        elif line.startswith("- "):
            if not in_list:
                body.append("<ul>")
                in_list = True
            body.append(f"<li>{_inline_markdown(line[2:])}</li>")
        elif line.strip():
            body.append(f"<p>{_inline_markdown(line)}</p>")
    if in_table:
        body.append("</table>")
    if in_list:
        body.append("</ul>")
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
             "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;"
             "padding:3px 6px;text-align:right}td:first-child,th:first-child{text-align:left}"
             "img{max-width:100%}pre{background:#f6f6f6;padding:1em;font-size:12px;"
             "overflow:auto}code{background:#f2f2f2}")
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>"
            f"{html.escape(title)}</title><style>{style}</style></head><body>\n"
            + "\n".join(body) + "\n</body></html>\n")


def write_report(run: RunDir, profile: dict, figures: dict) -> dict:
    """Writes profile.json, profile.csv, report.md and report.html into `run`.

    Args:
        figures: caption -> path of a PNG inside `run` (relative or absolute).
    """
    rel = {c: str(Path(p).resolve().relative_to(run.root.resolve())) for c, p in figures.items()}
    run.write_json("profile.json", profile)
    write_csv(run, profile["metrics"], profile["models"])
    md = render_markdown(profile, rel, metric_errors(profile, run.root))
    run.write_text("report.md", md)
    images = {r: run.path(r).read_bytes() for r in rel.values()}
    page = markdown_to_html(md, images, f"Model profile: {', '.join(profile['models'])}")
    run.write_text("report.html", page)
    return {"json": run.path("profile.json"), "csv": run.path("profile.csv"),
            "markdown": run.path("report.md"), "html": run.path("report.html")}


__all__ = ["write_report", "render_markdown", "data_line", "markdown_to_html", "scalar_metrics",
           "metric_errors"]
