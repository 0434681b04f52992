"""I-ASIDE speed: lst_jax's batched coalition evaluation against its forward-pass limit and
against the authors' procedure in PyTorch, same weights, same K and M, one run.

    python experiments/benchmark_iaside.py                        # digits ResNet + ResNet-50
    python experiments/benchmark_iaside.py --models digits_resnet --bands 8 --k 100 --reps 3

Per model (common random numbers, random fill, abs, groups of 10, all 2^M coalitions):
- **lst_jax**: `lst_jax.spectral.coalition_log_probs` (each image's FFT once, (coalition,
  group) units batched `--images-per-call` images per jitted call through `sharded_apply`),
  in coalition-image evaluations per second (2^M x K / time, set-up included);
- **limit**: the same number of plain jitted forward passes of the model at the same batch
  size (images already built); `efficiency` = limit time / lst_jax time (goal >= 0.9);
- **PyTorch, the authors' procedure** (`tests/torch_iaside.py`, written from the spec): per
  coalition, batches of 10, FFT filter per batch, forward, log(softmax), eager, no grad,
  timed with 1 thread and with all cores, reported at the faster for the procedure (on a
  shared machine OpenMP with all cores can be several times slower than one thread;
  `--torch-threads` fixes it);
- **plain forward JAX / PyTorch** at batch 10 and at lst_jax's batch: the kernel-speed ratio,
  printed beside the I-ASIDE ratio so that what the algorithm buys (FFT reuse, big batches)
  is separated from kernel speed.
Before a speed is reported both must give the same values and distribution (the PyTorch
procedure gets lst_jax's random-fill pairing as input): max |value difference| <= `--atol`
(default 1e-4) and max |distribution difference| <= 10 x that. Timings interleave the
measurements `--reps` times (alternating their order) and report medians of per-repetition
ratios.

Models: the shipped digits ResNet (`digits_resnet-normal`, twin in experiments/torch_twins.py)
and ResNet-50 at 224x224 with random weights (twin in tests/torch_reference.py, converted).
Output: `benchmark_iaside.{json,md}` in `--out` (default runs/benchmark_iaside); the figures
are recorded in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for _p in (str(ROOT), str(ROOT / "experiments"), str(ROOT / "tests")):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import benchmark as lst_bench  # noqa: E402  (experiments/benchmark.py: cases, machine info)
from lst_jax.evaluation.rundir import RunDir, markdown_table  # noqa: E402
from lst_jax.spectral import (SpectralConfig, all_coalitions, coalition_log_probs,  # noqa: E402
                              exact_shapley, importance_distribution)
from lst_jax.spectral.sampling import crn_partners, group_layout  # noqa: E402

# model -> (bands, K, images per lst_jax call, reps)
DEFAULTS = {"digits_resnet": (8, 100, 80, 5), "resnet50": (4, 20, 20, 3)}


def _median(v):
    return statistics.median(v)


def _timed(fn):
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def _with_threads(n: int, fn, *args):
    import torch

    torch.set_num_threads(n)
    return fn(*args)


def bench_model(name: str, bands: int, k: int, batch: int, reps: int, atol: float,
                log=print, threads: int | None = None) -> dict:
    case = lst_bench.make_case(name)
    x, _, y = case.data(k)
    x, y = np.asarray(x, np.float32), np.asarray(y, np.int32)
    cfg = SpectralConfig(num_bands=bands)
    bits = all_coalitions(bands)
    n_evals = len(bits) * k
    model_fn, params = case.model_fn, case.params
    res = {"model": name, "input": "x".join(map(str, case.image_shape)), "M": bands, "K": k,
           "coalition_images": n_evals, "batch": batch, "weights": case.weights}

    def run_jax():
        return coalition_log_probs(model_fn, params, x, y, bits, cfg, images_per_call=batch,
                                   block_size=len(bits))

    fwd = jax.jit(model_fn)
    xb = {b: jnp.asarray(np.resize(x, (b,) + x.shape[1:])) for b in (10, batch)}

    def run_limit(b=batch):
        calls = -(-n_evals // b)
        out = None
        for _ in range(calls):
            out = fwd(params, xb[b])
        return jax.block_until_ready(out)

    t_first, lp = _timed(run_jax)                       # compiles
    run_limit(batch), run_limit(10)
    res["jax_first_call_s"] = t_first
    values = lp.astype(np.float64).mean(1)
    dist = importance_distribution(exact_shapley(values))
    res["jax_distribution"] = dist.tolist()

    torch_ok = lst_bench.HAVE_TORCH and case.make_torch is not None
    if torch_ok:
        import torch
        from torch_iaside import reference_distribution, reference_shapley, reference_values

        twin = case.make_torch()
        thread_counts = [threads] if threads else sorted({1, os.cpu_count() or 1})
        layout = group_layout(k, cfg.group_size)
        partners = crn_partners(layout, cfg.seed)
        perms = [partners[j] - j * cfg.group_size for j in range(layout.num_groups)]

        def run_torch():
            return reference_values(twin, x, y, bands, "random", perms)

        def torch_forward(b):
            xt = torch.from_numpy(np.ascontiguousarray(np.asarray(xb[b]).transpose(0, 3, 1, 2)))
            with torch.no_grad():
                for _ in range(-(-n_evals // b)):
                    twin(xt)

        t_torch_first, ref_v = _timed(run_torch)
        ref_dist = reference_distribution(reference_shapley(ref_v, bands))
        dv = float(np.abs(ref_v - values).max())
        dd = float(np.abs(ref_dist - dist).max())
        res["agreement"] = {"max_value_diff": dv, "max_distribution_diff": dd,
                            "ok": bool(dv <= atol and dd <= 10 * atol)}
        res["torch_distribution"] = ref_dist.tolist()
        log(f"{name}: values differ by {dv:.2e}, distributions by {dd:.2e}")
        if not res["agreement"]["ok"]:
            log(f"{name}: JAX and the PyTorch procedure DISAGREE; no speed reported")
            res["speed_reported"] = False
            return res
    else:
        res["torch_skipped"] = "torch is not installed"

    times = {key: [] for key in ("jax", "limit", "jax_fwd10")}
    for r in range(reps):
        order = [("jax", run_jax), ("limit", run_limit), ("jax_fwd10", lambda: run_limit(10))]
        if torch_ok:
            for n in thread_counts:
                order += [(f"torch@{n}", lambda n=n: _with_threads(n, run_torch)),
                          (f"torch_fwd10@{n}", lambda n=n: _with_threads(n, torch_forward, 10)),
                          (f"torch_fwd_batch@{n}",
                           lambda n=n: _with_threads(n, torch_forward, batch))]
        for key, fn in (order if r % 2 == 0 else order[::-1]):
            times.setdefault(key, []).append(_timed(fn)[0])
    if torch_ok:   # PyTorch at its best thread count for the procedure (same for all rows)
        best = min(thread_counts, key=lambda n: _median(times[f"torch@{n}"]))
        res["torch_threads"] = best
        res["torch_procedure_seconds_by_threads"] = {n: _median(times[f"torch@{n}"])
                                                     for n in thread_counts}
        for key in ("torch", "torch_fwd10", "torch_fwd_batch"):
            times[key] = times[f"{key}@{best}"]
    med = {key: _median(v) for key, v in times.items() if v}
    rate = {key: n_evals / t for key, t in med.items()}

    def ratio(a, b):     # median of per-repetition ratios: slow load drifts cancel
        return _median([ta / tb for ta, tb in zip(times[a], times[b])])

    res.update({"speed_reported": True, "seconds": med, "seconds_all": times,
                "jax_evals_per_s": rate["jax"], "limit_evals_per_s": rate["limit"],
                "efficiency": ratio("limit", "jax")})
    if torch_ok:
        res.update({
            "torch_evals_per_s": rate["torch"],
            "jax_over_torch": ratio("torch", "jax"),
            "fwd_jax_over_torch_batch10": ratio("torch_fwd10", "jax_fwd10"),
            "fwd_jax_over_torch_batch": ratio("torch_fwd_batch", "limit"),
            "torch_procedure_over_jax_limit": ratio("torch", "limit"),
            "torch_procedure_over_torch_fwd10": ratio("torch", "torch_fwd10")})
    return res


def _f(v, fmt):
    return "-" if v is None else format(v, fmt)


def markdown_report(results, machine) -> str:
    rows = []
    for r in results:
        if not r.get("speed_reported"):
            rows.append([r["model"], r["input"], r["M"], r["K"], r["batch"]] + ["DISAGREE"]
                        + ["-"] * 7)
            continue
        rows.append([r["model"], r["input"], r["M"], r["K"], r["batch"],
                     _f(r["jax_evals_per_s"], ".0f"), _f(r["limit_evals_per_s"], ".0f"),
                     _f(r["efficiency"], ".2f"), _f(r.get("torch_evals_per_s"), ".0f"),
                     _f(r.get("jax_over_torch"), ".2f"),
                     _f(r.get("fwd_jax_over_torch_batch10"), ".2f"),
                     _f(r.get("fwd_jax_over_torch_batch"), ".2f"),
                     _f(r.get("torch_procedure_over_jax_limit"), ".2f")])
    table = markdown_table(
        ["model", "input", "M", "K", "JAX batch", "JAX coalition-img/s", "limit img/s",
         "efficiency", "PyTorch procedure img/s", "I-ASIDE JAX / PyTorch",
         "forward JAX / PyTorch (batch 10)", "forward JAX / PyTorch (JAX batch)",
         "PyTorch procedure / JAX limit (time)"], rows)
    agree = [f"- {r['model']}: max |value diff| {r['agreement']['max_value_diff']:.1e}, "
             f"max |distribution diff| {r['agreement']['max_distribution_diff']:.1e}"
             for r in results if "agreement" in r]
    threads = ", ".join(f"{r['model']} {r['torch_threads']}" for r in results
                        if "torch_threads" in r) or "-"
    return (f"Machine: {machine['cpu']}, {machine['cores']} cores, backend "
            f"{machine['backend']}, jax {machine['versions'].get('jax')}, torch "
            f"{machine['versions'].get('torch', '-')} (threads: {threads}); load average "
            f"{machine.get('load_average')}.\n\n" + table + "\n"
            + "\n".join(agree) + "\n")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="+", default=list(DEFAULTS), choices=list(DEFAULTS))
    ap.add_argument("--bands", type=int, help="M (default per model: 8 digits, 4 ResNet-50)")
    ap.add_argument("--k", type=int, help="K (default per model: 100 digits, 20 ResNet-50)")
    ap.add_argument("--images-per-call", type=int, help="lst_jax batch (default 80 / 20)")
    ap.add_argument("--reps", type=int, help="timed repetitions (default 5 / 3)")
    ap.add_argument("--atol", type=float, default=1e-4)
    ap.add_argument("--torch-threads", type=int, help="PyTorch threads (default: both 1 and "
                    "all cores, the faster reported)")
    ap.add_argument("--out", default="runs/benchmark_iaside")
    args = ap.parse_args(argv)
    machine = lst_bench.machine_info()
    results = []
    for name in args.models:
        m, k, b, reps = DEFAULTS[name]
        r = bench_model(name, args.bands or m, args.k or k, args.images_per_call or b,
                        args.reps or reps, args.atol, threads=args.torch_threads)
        print({key: v for key, v in r.items() if not key.endswith("distribution")})
        results.append(r)
    md = markdown_report(results, machine)
    run = RunDir(args.out)
    run.write_json("benchmark_iaside.json", {"machine": machine, "results": results})
    run.write_text("benchmark_iaside.md", md)
    print(md)
    return 0 if all(r.get("speed_reported") for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
