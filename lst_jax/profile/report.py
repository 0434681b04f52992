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

from lst_jax.evaluation.rundir import RunDir, markdown_table
from lst_jax.profile.compare import (ROBUSTNESS_METRICS, describe, metric_label,
                                     significance_threshold)


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
    return ([k for k in ROBUSTNESS_METRICS if k in names]
            + [k for k in names if k not in ROBUSTNESS_METRICS])


def write_csv(run: RunDir, table: dict, models) -> Path:
    cols = scalar_metrics(table, models)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["model"] + cols)
    for m in models:
        w.writerow([m] + ["" if table[m].get(c) is None else repr(float(table[m][c]))
                          for c in cols])
    return run.write_text("profile.csv", buf.getvalue())


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


def render_markdown(profile: dict, figures: dict) -> str:
    """The report page; `figures` maps a caption to a path relative to the report."""
    models, table = profile["models"], profile["metrics"]
    n = len(models)
    cols = scalar_metrics(table, models)
    out = [f"# Model profile: {', '.join(models)}", "",
           f"Regenerate: `{profile['command']}`", "",
           f"Data: {profile['data']} ({profile['num_images']} test images); preset "
           f"`{profile['preset']}`; mCE baseline `{profile['baseline']}`"
           + (f" (left out of the mCE, the baseline never errs on them: "
              f"{', '.join(profile['mce_left_out'])})" if profile.get("mce_left_out") else "")
           + f"; {n} models.", ""]
    out += ["## All metrics", "",
            markdown_table(["metric"] + [f"`{m}`" for m in models],
                           [[metric_label(c)] + [_fmt(table[m].get(c)) for m in models]
                            for c in cols]), ""]
    if profile["correlations"] and n >= 3:
        thr = significance_threshold(n)
        power = (f"with {n} models only |rho| >= {thr:.2f} reaches p < 0.05" if thr else
                 f"with {n} models no ordering can reach p < 0.05" if n <= 8 else
                 "p from the t approximation")
        out += [f"## Rank correlation with robustness (Spearman, n = {n} models)", "",
                f"Exact permutation p-values (two-sided; {power}): a ranking check over "
                "these models, not a law.", "",
                markdown_table(["geometry metric", "vs PGD robust accuracy", "vs mCE"],
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
    md = render_markdown(profile, rel)
    run.write_text("report.md", md)
    images = {r: run.path(r).read_bytes() for r in rel.values()}
    page = markdown_to_html(md, images, f"Model profile: {', '.join(profile['models'])}")
    run.write_text("report.html", page)
    return {"json": run.path("profile.json"), "csv": run.path("profile.csv"),
            "markdown": run.path("report.md"), "html": run.path("report.html")}


__all__ = ["write_report", "render_markdown", "markdown_to_html", "scalar_metrics"]
