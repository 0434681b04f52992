"""I-ASIDE coalition evaluation: lst_jax (each image's FFT once, (coalition, group) units
batched per jitted call) against the plain forward-pass limit and against the authors'
procedure in PyTorch (per coalition, batches of 10, FFT filter per batch; `torch_iaside`).

Common random numbers, random fill, abs, groups of 10, all 2^M coalitions. Before a speed is
reported both must give the same values and distribution (the PyTorch procedure gets
lst_jax's random-fill pairing): max |value difference| <= atol (1e-4) and max |distribution
difference| <= 10 atol. The limit: the same number of coalition-images as plain jitted
forward passes at lst_jax's batch (images already built); efficiency = limit time / lst_jax
time. A bfloat16 workload compares lst_jax's bfloat16 run with its float32 run (speed-up and
the change of the importance distribution).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from lst_jax.bench.timing import median, ratio, timed
from lst_jax.bench.workloads.common import block, time_jobs, with_dtype
from lst_jax.parallel import data_mesh
from lst_jax.spectral import (
    SpectralConfig,
    all_coalitions,
    coalition_log_probs,
    exact_shapley,
    importance_distribution,
)
from lst_jax.spectral.sampling import crn_partners, group_layout, numpy_seed

SEED = 42   # the job's default seed: key = jax.random.key(SEED)


def run(w, case, ctx) -> dict:
    p = w.params
    bands, k, batch, reps = p["bands"], p["k"], w.batch, p["reps"]
    atol = p.get("atol", 1e-4)
    x, _, y = case.data(k)
    x, y = np.asarray(x, np.float32), np.asarray(y, np.int32)
    cfg, key, mesh = SpectralConfig(num_bands=bands), jax.random.key(SEED), data_mesh()
    per_device = max(1, batch // jax.device_count())   # `batch`: images per call, all devices
    bits = all_coalitions(bands)
    n_evals = len(bits) * k
    res = {"input": "x".join(map(str, case.image_shape)), "M": bands, "K": k,
           "coalition_images": n_evals, "batch": batch, "weights": case.weights,
           "compile_s": {}}

    def runner(dtype):
        fn = with_dtype(case.model_fn, dtype)
        return lambda: np.asarray(jax.device_get(coalition_log_probs(
            fn, case.params, x, y, bits, key=key, config=cfg, mesh=mesh,
            batch_size=per_device, block_size=len(bits))))

    run_jax = runner(w.dtype)
    t_first, lp = timed(run_jax)                       # compiles
    t_second, _ = timed(run_jax)
    res["compile_s"]["jax_coalition_program (first call - second call)"] = max(
        0.0, t_first - t_second)
    values = lp.astype(np.float64).mean(1)
    dist = importance_distribution(exact_shapley(values))
    res["jax_distribution"] = dist.tolist()
    ctx.log(f"    JAX first call {t_first:.1f} s, second {t_second:.2f} s")

    if w.dtype != "float32":
        run_f32 = runner("float32")
        lp32 = run_f32()
        d32 = importance_distribution(exact_shapley(lp32.astype(np.float64).mean(1)))
        res["change_vs_float32"] = {
            "max_value_diff": float(np.abs(lp32.astype(np.float64).mean(1) - values).max()),
            "max_distribution_diff": float(np.abs(d32 - dist).max())}
        times = time_jobs(ctx, {"jax_bf16": run_jax, "jax_f32": run_f32}, reps, res)
        if times is None:
            return res
        res.update({"jax_evals_per_s": n_evals / median(times["jax_bf16"]),
                    "float32_evals_per_s": n_evals / median(times["jax_f32"]),
                    "speedup_over_float32": ratio(times, "jax_f32", "jax_bf16")})
        return res

    fwd = case.forward
    xb = {b: jnp.asarray(np.resize(x, (b,) + x.shape[1:])) for b in (10, batch)}

    def run_limit(b=batch):
        out = None
        for _ in range(-(-n_evals // b)):
            out = fwd(case.params, xb[b])
        return block(out)

    t_c, _ = timed(run_limit)
    timed(lambda: run_limit(10))
    res["compile_s"]["jax_forward (first call)"] = t_c

    jobs = {"jax": run_jax, "limit": run_limit, "jax_fwd10": lambda: run_limit(10)}
    if ctx.torch_device is None:
        res["torch_skipped"] = "torch is not installed"
    else:
        import torch

        from lst_jax.bench.torch_iaside import (
            reference_distribution,
            reference_shapley,
            reference_values,
        )
        from lst_jax.bench.torch_procedures import nchw, synchronize

        dev = ctx.torch_device
        twin = case.make_torch(dev)
        layout = group_layout(k, cfg.group_size)
        partners = crn_partners(layout, numpy_seed(key))
        perms = [partners[j] - j * cfg.group_size for j in range(layout.num_groups)]

        def run_torch():
            out = reference_values(twin, x, y, bands, "random", perms, device=dev)
            synchronize(dev)
            return out

        xt = {b: nchw(np.asarray(v), dev) for b, v in xb.items()}

        def torch_forward(b):
            with torch.no_grad():
                for _ in range(-(-n_evals // b)):
                    twin(xt[b])
            synchronize(dev)

        t_torch, ref_v = timed(run_torch)
        ref_dist = reference_distribution(reference_shapley(ref_v, bands))
        dv = float(np.abs(ref_v - values).max())
        dd = float(np.abs(ref_dist - dist).max())
        res["agreement"] = {"max_value_diff": dv, "max_distribution_diff": dd, "atol": atol,
                            "ok": bool(dv <= atol and dd <= 10 * atol)}
        res["torch_distribution"] = ref_dist.tolist()
        res["torch_first_run_s"] = t_torch
        ctx.log(f"    PyTorch procedure {t_torch:.1f} s; values differ by {dv:.1e}, "
                f"distributions by {dd:.1e} ({'ok' if res['agreement']['ok'] else 'DISAGREE'})")
        if not res["agreement"]["ok"]:
            res["speed_reported"] = False
            return res
        torch_forward(10), torch_forward(batch)
        jobs.update({"torch": run_torch, "torch_fwd10": lambda: torch_forward(10),
                     "torch_fwd_batch": lambda: torch_forward(batch)})

    times = time_jobs(ctx, jobs, reps, res, unwarmed=("torch",),
                      unwarmed_s=res.get("torch_first_run_s", 0.0))
    if times is None:
        return res
    res.update({"jax_evals_per_s": n_evals / median(times["jax"]),
                "limit_evals_per_s": n_evals / median(times["limit"]),
                "efficiency": ratio(times, "limit", "jax")})
    if "torch" in times:
        res.update({"torch_evals_per_s": n_evals / median(times["torch"]),
                    "jax_over_torch": ratio(times, "torch", "jax"),
                    "fwd_jax_over_torch_batch10": ratio(times, "torch_fwd10", "jax_fwd10"),
                    "fwd_jax_over_torch_batch": ratio(times, "torch_fwd_batch", "limit"),
                    "torch_procedure_over_jax_limit": ratio(times, "torch", "limit")})
    return res
