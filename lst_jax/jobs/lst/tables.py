"""Paper-style tables from finished full-evaluation runs: Markdown, LaTeX and CSV.

Table 1 (`../spec/lst.md` section 3.3): distances between each LST output and its own target
over all N x R pairs, `mean +- std` with the **unbiased** std (ddof=1), 3 decimals; RMSE is the
L2 distance divided by sqrt(H W C) of the actual images (the metrics module does this).
Table 2 (section 3.4): per-source hull statistics, `mean +- std` across sources with the
**population** std (ddof=0), 2 decimals, `edge_min` left out of the paper-style table (it is
kept in the CSV and JSON). Both conventions are the reference's (`print_tables.py`).
"""

from __future__ import annotations

import csv
import io
from typing import Sequence

import numpy as np

from lst_jax.jobs.rundir import markdown_table

TABLE1_NAMES = {"rmse": ("RMSE", "RMSE"), "l2": ("L2", "$\\ell_2$"),
                "linf": ("L-inf", "$\\ell_\\infty$"), "ssim": ("SSIM", "SSIM"),
                "lpips": ("LPIPS", "LPIPS")}
TABLE1_ORDER = ("rmse", "linf", "ssim", "lpips")
TABLE2_NAMES = {
    "p_src": ("source conf", "Src. conf."),
    "mean": ("hull mean conf", "Hull mean"),
    "frac_0": ("frac > p_src", "$>p_{src}$"),
    "frac_0.1": ("frac > p_src - 0.1", "$>p_{src}-0.1$"),
    "frac_0.2": ("frac > p_src - 0.2", "$>p_{src}-0.2$"),
    "frac_0.3": ("frac > p_src - 0.3", "$>p_{src}-0.3$"),
    "edge_mean": ("mean conf on linear paths", "Linear paths"),
    "edge_min": ("min drop on linear paths", "Min path drop"),
}
PAPER_MODEL_LABELS = {"resnet50": "ResNet-50", "deit_small": "DeiT-S",
                      "deit_small_patch16_224": "DeiT-S", "wrn28_10": "WRN-28-10",
                      "wrn34_10": "WRN-34-10"}


def model_label(name: str) -> str:
    """'resnet50-linf' -> 'ResNet-50 (AT)', 'digits_resnet-normal' -> 'digits_resnet (Normal)'."""
    arch, _, kind = str(name).rpartition("-")
    if not arch:
        return str(name)
    kind_label = {"normal": "Normal", "linf": "AT"}.get(kind, kind)
    return f"{PAPER_MODEL_LABELS.get(arch, arch)} ({kind_label})"


def table1_columns(keys: Sequence[str]) -> list[str]:
    """Known distance keys in paper order, then any others sorted."""
    keys = list(keys)
    return [k for k in TABLE1_ORDER if k in keys] + sorted(k for k in keys
                                                          if k not in TABLE1_ORDER)


def table1_stats(distances: dict) -> dict:
    """key -> (mean, std ddof=1, count) over all pairs (NaN entries ignored).

    Shape:
        distances: key -> (M,) or (R, N) array (flattened).
    """
    out = {}
    for k in table1_columns(distances):
        v = np.asarray(distances[k], np.float64).reshape(-1)
        v = v[np.isfinite(v)]
        mean = float(v.mean()) if v.size else float("nan")
        std = float(v.std(ddof=1)) if v.size > 1 else float("nan")
        out[k] = (mean, std, int(v.size))
    return out


def table2_stats(per_source: np.ndarray, names: Sequence[str]) -> dict:
    """name -> (mean, std ddof=0, count) across sources.

    Shape:
        per_source: (N, S) with S = len(names).
    """
    a = np.asarray(per_source, np.float64)
    if a.ndim != 2 or a.shape[1] != len(names):
        raise ValueError(f"per-source statistics must have shape (N, {len(names)}), got "
                         f"{a.shape}")
    return {n: (float(a[:, i].mean()), float(a[:, i].std(ddof=0)), int(a.shape[0]))
            for i, n in enumerate(names)}


def _pm(mean, std, digits, latex=False):
    if not np.isfinite(mean):
        return "-"
    s = f"{mean:.{digits}f}" if not np.isfinite(std) else f"{mean:.{digits}f} {{}} {std:.{digits}f}"
    if latex:
        return "$" + s.format("\\pm") + "$"
    return s.format("±")


def _render(title, rows, cols, names, digits, paper_cols, caption):
    """rows: [(label, stats dict)] -> (markdown, latex, csv)."""
    show = [c for c in cols if c in paper_cols]
    md = [f"### {title}", "", markdown_table(
        ["model"] + [names.get(c, (c, c))[0] for c in show],
        [[label] + [_pm(*st[c][:2], digits) if c in st else "-" for c in show]
         for label, st in rows]), caption, ""]
    tex = ["% " + title, "\\begin{tabular}{l" + "c" * len(show) + "}", "\\toprule",
           "Model & " + " & ".join(names.get(c, (c, c))[1] for c in show) + " \\\\",
           "\\midrule"]
    for label, st in rows:
        tex.append(label.replace("_", "\\_") + " & " + " & ".join(
            _pm(*st[c][:2], digits, latex=True) if c in st else "-" for c in show) + " \\\\")
    tex += ["\\bottomrule", "\\end{tabular}", ""]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["model"] + [f"{c}_{s}" for c in cols for s in ("mean", "std")] + ["count"])
    for label, st in rows:
        count = next((st[c][2] for c in cols if c in st), 0)
        w.writerow([label] + [repr(round(st[c][i], 6)) if c in st else "" for c in cols
                              for i in (0, 1)] + [count])
    return "\n".join(md), "\n".join(tex), buf.getvalue()


def render_table1(rows):
    """rows: [(label, table1_stats)] -> (markdown, latex, csv)."""
    cols = table1_columns({k for _, st in rows for k in st})
    return _render("Table 1: distance of the LST output to its target", rows, cols,
                   TABLE1_NAMES, 3, cols,
                   "mean ± std over all (source, round) pairs, std with ddof=1; RMSE = L2 / "
                   "sqrt(H·W·C).")


def render_table2(rows):
    """rows: [(label, table2_stats)] -> (markdown, latex, csv); edge_min only in the CSV."""
    cols = list(dict.fromkeys(k for _, st in rows for k in st))
    paper = [c for c in cols if c != "edge_min"]
    return _render("Table 2: confidence over triangular hulls (source, two LST outputs)", rows,
                   cols, TABLE2_NAMES, 2, paper,
                   "mean ± std across sources (std with ddof=0) of the per-source averages over "
                   "all round-pair triangles; fractions count grid points strictly above "
                   "p_src - d.")


def write_tables(run, rows1, rows2, prefix: str = "") -> dict:
    """Writes `<prefix>table{1,2}.{md,tex,csv}` and `<prefix>tables.md` into a RunDir."""
    md1, tex1, csv1 = render_table1(rows1)
    md2, tex2, csv2 = render_table2(rows2)
    paths = {}
    for name, text in ((f"{prefix}table1.md", md1), (f"{prefix}table1.tex", tex1),
                       (f"{prefix}table1.csv", csv1), (f"{prefix}table2.md", md2),
                       (f"{prefix}table2.tex", tex2), (f"{prefix}table2.csv", csv2),
                       (f"{prefix}tables.md", md1 + "\n" + md2)):
        paths[name] = run.write_text(name, text)
    return paths
