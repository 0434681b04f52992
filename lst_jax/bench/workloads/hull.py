"""The Table-2 hull grid: for S sources and R rounds, every triangle (source, output r1,
output r2) of the R(R-1)/2 round pairs on the reference's 64-point grid, the source-class
confidence at every point. Test digits stand in for the LST outputs (the cost does not depend
on what the vertices are).

lst_jax: `multi_hull_confidences` with the sharded evaluator over all devices; limit: one
jitted forward pass + softmax over all probe images materialised on the device beforehand;
PyTorch: the reference's loop, per source and triangle one batch of the grid's probes
(`torch_procedures.torch_hull_loop`). The confidences must agree (max |difference| <= atol,
1e-4) before a speed is reported.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from lst_jax.bench.timing import median, ratio, timed
from lst_jax.bench.workloads.common import time_jobs
from lst_jax.geometry import multi_hull_confidences, round_pairs, triangle_grid
from lst_jax.geometry.hull import pair_weights
from lst_jax.parallel import ShardedEvaluator, data_mesh


def run(w, case, ctx) -> dict:
    from lst_jax.data.digits import load_digits32

    p = w.params
    s, r, reps, atol = p["sources"], p["rounds"], p["reps"], p.get("atol", 1e-4)
    x, y = load_digits32("test")
    if len(x) < s * (r + 1):
        raise ValueError(f"need {s * (r + 1)} test digits, have {len(x)}")
    src, labels = x[:s], y[:s].astype(np.int32)
    outs = np.stack([x[s * (i + 1):s * (i + 2)] for i in range(r)])
    grid, pairs = triangle_grid(), round_pairs(r)
    n = s * len(pairs) * grid.num_points
    model_fn, params = case.model_fn, case.params
    res = {"sources": s, "rounds": r, "probes": n, "chunk_per_device": w.batch,
           "weights": case.weights, "compile_s": {}}
    ev = ShardedEvaluator(data_mesh(), per_device_chunk=w.batch)

    def run_jax():
        return np.asarray(multi_hull_confidences(model_fn, params, src, outs, labels,
                                                 grid=grid, evaluate_fn=ev))

    t_first, conf = timed(run_jax)
    t_second, _ = timed(run_jax)
    res["compile_s"]["jax_hull (first call - second call)"] = max(0.0, t_first - t_second)

    vertices = np.concatenate([src[None], outs])
    wts = pair_weights(grid, pairs, r)
    probes = np.einsum("pv,vshwc->sphwc", wts, vertices).reshape((n,) + src.shape[1:])
    probe_labels = np.repeat(labels, len(pairs) * grid.num_points)
    fwd = jax.jit(lambda q, im, lab: jnp.take_along_axis(
        jax.nn.softmax(model_fn(q, im), -1), lab[:, None], -1)[:, 0])
    dev_args = jax.device_put((params, jnp.asarray(probes), jnp.asarray(probe_labels)))
    t_c, conf_lim = timed(lambda: np.asarray(fwd(*dev_args)))
    res["compile_s"]["jax_forward_all_probes (first call)"] = t_c

    def run_limit():
        return jax.block_until_ready(fwd(*dev_args))

    checks = {"jax_vs_limit": float(np.abs(conf.reshape(-1) - conf_lim).max())}
    jobs = {"jax": run_jax, "limit": run_limit}
    if ctx.torch_device is None:
        res["torch_skipped"] = "torch is not installed"
    else:
        from lst_jax.bench.torch_procedures import synchronize, torch_hull_loop

        net = case.make_torch(ctx.torch_device)

        def run_torch():
            out = torch_hull_loop(net, src, outs, labels, grid.weights, pairs,
                                  device=ctx.torch_device)
            synchronize(ctx.torch_device)
            return out

        checks["jax_vs_torch"] = float(np.abs(conf - run_torch()).max())
        jobs["torch"] = run_torch
    ok = all(v <= atol for v in checks.values())
    res["agreement"] = {**checks, "atol": atol, "ok": ok}
    ctx.log(f"    JAX first call {t_first:.1f} s; max |confidence diff| "
            + ", ".join(f"{k} {v:.1e}" for k, v in checks.items())
            + f" ({'ok' if ok else 'DISAGREE'})")
    if not ok:
        res["speed_reported"] = False
        return res
    times = time_jobs(ctx, jobs, reps, res)
    if times is None:
        return res
    res.update({"jax_points_per_s": n / median(times["jax"]),
                "limit_points_per_s": n / median(times["limit"]),
                "efficiency": ratio(times, "limit", "jax")})
    if "torch" in times:
        res["torch_points_per_s"] = n / median(times["torch"])
        res["jax_over_torch"] = ratio(times, "torch", "jax")
    return res
