"""bench.json and bench.md of `lst-jax bench`, written atomically after every workload (and on
SIGTERM/SIGINT), so that a killed run leaves valid partial files."""

from __future__ import annotations

from lst_jax.jobs.rundir import RunDir, markdown_table

MAX_BYTES = 16 * 2 ** 20


def _f(v, fmt):
    return "-" if v is None else format(v, fmt)


def _status(r) -> str:
    return r.get("status", "-")


def _lst_rows(results):
    rows = []
    for r in results:
        if r.get("dtype") == "bfloat16":
            c = r.get("change_vs_float32") or {}
            rows.append([r["model"], r.get("input", "-"), "bfloat16", r.get("batch", "-"),
                         r.get("iters", "-"), _status(r), _f(r.get("jax_pair_it_per_s"), ".1f"),
                         f"float32 {_f(r.get('float32_pair_it_per_s'), '.1f')}",
                         f"bf16/f32 {_f(r.get('speedup_over_float32'), '.2f')}", "-", "-", "-",
                         f"final conf {_f(c.get('final_conf_diff_max'), '.1e')}"])
            continue
        a = r.get("torch_agreement") or {}
        rows.append([r["model"], r.get("input", "-"), "float32", r.get("batch", "-"),
                     r.get("iters", "-"), _status(r), _f(r.get("jax_pair_it_per_s"), ".1f"),
                     _f(r.get("torch_pair_it_per_s"), ".1f"), _f(r.get("jax_over_torch"), ".2f"),
                     _f(r.get("torch_compile_pair_it_per_s"), ".1f"),
                     _f(r.get("jax_over_torch_compile"), ".2f"), _f(r.get("efficiency"), ".2f"),
                     _f(a.get("max_abs_diff"), ".1e")])
    return markdown_table(["model", "input", "dtype", "batch", "iters", "status",
                           "JAX pair-it/s", "PyTorch eager pair-it/s", "JAX / eager",
                           "torch.compile pair-it/s", "JAX / compile",
                           "efficiency (fwd+bwd limit)", "max abs diff / change"], rows)


def _iaside_rows(results):
    rows = []
    for r in results:
        extra = (f"bf16/f32 {_f(r.get('speedup_over_float32'), '.2f')}, distribution change "
                 f"{_f((r.get('change_vs_float32') or {}).get('max_distribution_diff'), '.1e')}"
                 if r.get("dtype") == "bfloat16" else
                 _f((r.get("agreement") or {}).get("max_value_diff"), ".1e"))
        rows.append([r["model"], r.get("input", "-"), r.get("dtype"), r.get("M", "-"),
                     r.get("K", "-"), r.get("batch", "-"), _status(r),
                     _f(r.get("jax_evals_per_s"), ".0f"), _f(r.get("limit_evals_per_s"), ".0f"),
                     _f(r.get("efficiency"), ".2f"), _f(r.get("torch_evals_per_s"), ".0f"),
                     _f(r.get("jax_over_torch"), ".2f"), extra])
    return markdown_table(["model", "input", "dtype", "M", "K", "JAX batch", "status",
                           "JAX coalition-img/s", "limit img/s", "efficiency",
                           "PyTorch procedure img/s", "JAX / PyTorch",
                           "max value diff / change"], rows)


def _connectivity_rows(results):
    rows = []
    for r in results:
        j, t = r.get("jax") or {}, r.get("torch") or {}
        rows.append([r["model"], r.get("pairs", "-"), r.get("points", "-"), _status(r),
                     _f(j.get("total_s"), ".2f"), _f(t.get("total_s"), ".2f"),
                     _f(r.get("torch_over_jax"), ".2f"), _f(r.get("attack_torch_over_jax"), ".2f"),
                     _f(r.get("path_efficiency"), ".2f")])
    return markdown_table(["model", "pairs", "points", "status", "JAX s", "PyTorch loop s",
                           "JAX / PyTorch", "attack JAX / PyTorch", "path efficiency"], rows)


def _hull_rows(results):
    rows = [[r["model"], r.get("probes", "-"), _status(r), _f(r.get("jax_points_per_s"), ".0f"),
             _f(r.get("limit_points_per_s"), ".0f"), _f(r.get("efficiency"), ".2f"),
             _f(r.get("torch_points_per_s"), ".0f"), _f(r.get("jax_over_torch"), ".2f")]
            for r in results]
    return markdown_table(["model", "probes", "status", "JAX points/s", "limit points/s",
                           "efficiency", "PyTorch loop points/s", "JAX / PyTorch"], rows)


TABLES = {"lst": ("LST traversal", _lst_rows), "iaside": ("I-ASIDE coalitions", _iaside_rows),
          "connectivity": ("Connectivity statistics", _connectivity_rows),
          "hull": ("Table-2 hull grid", _hull_rows)}


def markdown(report: dict) -> str:
    m = report["machine"]
    v = m.get("versions", {})
    lines = [f"# lst-jax bench --suite {report['suite']} ({report['status']})", "",
             f"JAX {v.get('jax')} on {', '.join(sorted(set(m.get('jax_devices', []))))}; "
             f"PyTorch {v.get('torch')} on {m.get('torch_device')}"
             + (f" ({m['torch_device_name']})" if m.get("torch_device_name") else "")
             + f"; {m.get('cpu')}, {m.get('cores')} cores. Precision: "
             f"{report.get('precision', {}).get('policy')}. Budget "
             + ("none" if report.get("budget_s") is None else f"{report['budget_s']:.0f} s")
             + f", used {report.get('elapsed_s', 0):.0f} s.", ""]
    results = report["results"]
    for kind, (title, rows) in TABLES.items():
        rs = [r for r in results if r.get("kind") == kind]
        if rs:
            lines += [f"## {title}", "", rows(rs)]
    compile_rows = [[r["name"], k, f"{s:.1f}"] for r in results
                    for k, s in (r.get("compile_s") or {}).items()]
    if compile_rows:
        lines += ["## Compilation (seconds per program, excluded from the speeds)", "",
                  markdown_table(["workload", "program", "seconds"], compile_rows)]
    other = [r for r in results if r.get("status") in ("error", "skipped")]
    if other:
        lines += ["## Errors and skipped workloads", ""]
        lines += [f"- {r['name']}: {r['status']}: "
                  + (f"{r['error']['type']}: {r['error']['message'][:300]}" if "error" in r
                     else r.get("skipped", "")) for r in other]
        lines.append("")
    return "\n".join(lines)


class Writer:
    """Writes bench.json and bench.md of `report` into `out`, atomically."""

    def __init__(self, out):
        self.run = RunDir(out)

    def write(self, report: dict) -> None:
        self.run.write_json("bench.json", report)
        self.run.write_text("bench.md", markdown(report))
        if self.run.path("bench.json").stat().st_size > MAX_BYTES:   # never: times are small
            slim = {**report, "results": [{k: v for k, v in r.items() if k != "times_s"}
                                          for r in report["results"]]}
            self.run.write_json("bench.json", slim)
