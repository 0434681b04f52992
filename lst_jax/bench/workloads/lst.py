"""LST traversal: lst_jax's fused jitted scan against the PyTorch reference loop (eager and
`torch.compile`), and against the forward+backward limit.

The same traversal (same weights, same pairs, the `paper` preset with zero start noise) is run
by lst_jax (`lst_jax.traversal.level_set_traversal_unchecked`: one jitted `lax.scan`, one forward
and one backward
per iteration) and by the reference loop of spec/lst.md 1.5 in PyTorch
(`lst_jax.bench.torch_procedures.torch_traversal`). Before any speed is reported both must
compute the same traversal: every acceptance decision equal and the final images within
`atol` (default 1/255, one 8-bit grey level). Efficiency = iterations x (one jitted
forward+backward of the batch) / traversal time (limit 1; the set-up adds one forward and
one forward+backward). A bfloat16 workload times JAX's bfloat16 traversal against the
float32 one (the float32 program is reused when the float32 workload compiled it) and
reports the change of the outputs.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from lst_jax.bench.timing import median, ratio, timed
from lst_jax.bench.workloads.common import aot, block, memory_profile, time_jobs, with_dtype
from lst_jax.traversal import preset
from lst_jax.traversal import run as run_mod
from lst_jax.traversal.step import forward_backward

RECORD_BYTES_PER_PAIR_ITER = 4 + 4 + 1 + 4   # LSTRecord: two confidences, accepted, distance
MAX_MEMORY_SHARE = 0.45   # of the device memory for JAX's program; PyTorch needs the rest


def forward_backward_loop(model_fn, params, xs, ys, n: int):
    """`n` forward+backward passes in one jitted `fori_loop`; each input depends on the previous
    gradient (a tiny signed step, clipped) so that XLA cannot hoist the pass out of the loop.

    Shape:
        xs: (B, H, W, C), ys: (B,) -> (B, H, W, C).
    """
    def body(_, x):
        _, g = forward_backward(model_fn, params, x, ys)
        return jnp.clip(x + 1e-6 * jnp.sign(g), 0.0, 1.0)

    return jax.lax.fori_loop(0, n, body, xs)


def _program(case, ctx, dtype, batch, iters, inputs):
    """The compiled traversal of (model, dtype, batch, iters), cached in the context."""
    key = ("lst", case.name, dtype, batch, iters)
    if key not in ctx.cache:
        cfg = preset("paper", iters=iters, noise=0.0)
        model_fn = with_dtype(case.model_fn, dtype)
        compiled, secs = aot(run_mod._traverse_jit, model_fn, case.params, *inputs,
                             cfg.hyper, static=cfg.static)
        ctx.cache[key] = (compiled, secs, cfg)
    return ctx.cache[key]


def _inputs(case, batch):
    xs_np, xt_np, ys_np = case.data(batch)
    xs, xt, ys = jnp.asarray(xs_np), jnp.asarray(xt_np), jnp.asarray(ys_np, jnp.int32)
    yt = jnp.argmax(case.forward(case.params, xt), -1).astype(jnp.int32)
    return (xs_np, xt_np, ys_np), (xs, xt, ys, yt, jax.random.key(0))


def run(w, case, ctx) -> dict:
    p = w.params
    batch, iters, reps = w.batch, p["iters"], p["reps"]
    atol = p.get("atol", 1 / 255)
    res = {"input": "x".join(map(str, case.image_shape)), "iters": iters,
           "weights": case.weights, "compile_s": {}}
    while True:   # on an accelerator: halve the batch while XLA's buffers exceed the share
        (xs_np, xt_np, ys_np), inputs = _inputs(case, batch)
        compiled, t_c, cfg = _program(case, ctx, w.dtype, batch, iters, inputs)
        res["memory"] = memory_profile(compiled)
        peak, limit = res["memory"].get("peak", 0), ctx.memory_bytes
        if limit is None or peak <= MAX_MEMORY_SHARE * limit or batch < 2:
            break
        res.setdefault("batch_halved", []).append(
            f"batch {batch}: the compiled traversal needs {peak / 2**30:.1f} GiB, more than "
            f"{MAX_MEMORY_SHARE:.0%} of {limit / 2**30:.0f} GiB")
        batch //= 2
    res["batch"] = batch
    res["compile_s"][f"jax_traversal_{w.dtype}"] = t_c
    model_fn, params = with_dtype(case.model_fn, w.dtype), case.params

    def run_jax(c=compiled):
        return block(c(params, *inputs, cfg.hyper))

    t_first, jres = timed(run_jax)
    res["jax_first_run_s"] = t_first
    ctx.log(f"    JAX traversal compiled in {t_c:.1f} s, first run {t_first:.2f} s")
    jax_img = np.asarray(jres.images)

    if w.dtype != "float32":
        return _bf16(w, case, ctx, res, run_jax, jres, inputs, batch, iters, reps, ys_np)

    fb, t_fb = aot(jax.jit(forward_backward, static_argnums=0), model_fn, params, inputs[0],
                   inputs[2])
    res["compile_s"]["jax_forward_backward"] = t_fb

    def run_fb():
        return block(fb(params, inputs[0], inputs[2]))

    limits = {"fwd_bwd": run_fb}
    if p.get("loop_limit", True):   # the stricter bound: fwd+bwd passes inside one fori_loop
        fb_loop, t_loop = aot(jax.jit(forward_backward_loop, static_argnums=(0, 4)), model_fn,
                              params, inputs[0], inputs[2], iters)
        res["compile_s"]["jax_forward_backward_loop"] = t_loop
        limits["fwd_bwd_loop"] = lambda: block(fb_loop(params, inputs[0], inputs[2]))
    for f in limits.values():
        f()
    if p.get("check_memory"):
        res["memory_check"] = _memory_check(case, ctx, batch, iters, inputs, res["memory"])

    # The PyTorch side: the first run of each variant is the agreement check. Eager first,
    # timed against JAX before `torch.compile` (minutes on a GPU) is started at all.
    check = (jax_img, np.asarray(jres.record.accepted), atol)
    eager = {}
    if ctx.torch_device is None:
        res["torch_skipped"] = "torch is not installed (pip install -e '.[torch]')"
    else:
        eager = _torch_variant("torch", case.make_torch(ctx.torch_device), ctx, res, cfg,
                               xs_np, xt_np, ys_np, check)
    if not res.get("agree", True):
        res["speed_reported"] = False
        ctx.log("    JAX and PyTorch DISAGREE: no speed reported")
        return res

    times = time_jobs(ctx, {"jax": run_jax, **limits, **eager}, reps, res)
    if times is None:
        return res
    pairs = batch * iters
    res.update({"jax_pair_it_per_s": pairs / median(times["jax"]),
                "jax_fwd_bwd_s": median(times["fwd_bwd"]),
                "efficiency": median([iters * f / t for f, t in
                                      zip(times["fwd_bwd"], times["jax"])])})
    if "fwd_bwd_loop" in times:
        res.update({"jax_fwd_bwd_loop_s": median(times["fwd_bwd_loop"]) / iters,
                    "efficiency_loop": ratio(times, "fwd_bwd_loop", "jax")})
    if eager:
        res["torch_pair_it_per_s"] = pairs / median(times["torch"])
        res["jax_over_torch"] = ratio(times, "torch", "jax")
    if p.get("torch_compile") and eager:
        _torch_compile(case, ctx, res, cfg, xs_np, xt_np, ys_np, check, run_jax, reps, pairs)
    return res


def _torch_compile(case, ctx, res, cfg, xs_np, xt_np, ys_np, check, run_jax, reps, pairs):
    """`torch.compile` of the twin inside the same loop: compiled (first run, checked against
    JAX) when the budget leaves `ctx.torch_compile_estimate_s`, then timed against JAX."""
    import torch

    try:
        ctx.budget.check(ctx.torch_compile_estimate_s, "torch.compile")
        f = torch.compile(case.make_torch(ctx.torch_device))
        job = _torch_variant("torch_compile", f, ctx, res, cfg, xs_np, xt_np, ys_np, check)
    except Exception as e:      # budget, or torch.compile unavailable here (no compiler, ...)
        res["torch_compile_skipped"] = f"{type(e).__name__}: {str(e)[:500]}"
        ctx.log(f"    torch.compile skipped: {type(e).__name__}: {str(e)[:200]}")
        return
    if not res.get("agree", True):
        ctx.log("    JAX and torch.compile DISAGREE: no torch.compile speed reported")
        return
    sub = {}
    times = time_jobs(ctx, {"jax": run_jax, **job}, reps, sub)
    if times is None:
        res["torch_compile_skipped"] = sub["skipped"]
        return
    res["times_s_torch_compile"] = times
    res["torch_compile_pair_it_per_s"] = pairs / median(times["torch_compile"])
    res["jax_over_torch_compile"] = ratio(times, "torch_compile", "jax")


def _torch_variant(name, f, ctx, res, cfg, xs_np, xt_np, ys_np, check) -> dict:
    """{name: timed job} of the PyTorch loop with model `f`, after its first run (the
    agreement check: every acceptance decision equal, final images within atol); sets
    res["agree"] False when it disagrees."""
    import torch

    from lst_jax.bench.torch_procedures import nchw, synchronize, torch_traversal

    jax_img, jax_acc, atol = check
    dev = ctx.torch_device
    txs, txt = nchw(xs_np, dev), nchw(xt_np, dev)
    tys = torch.from_numpy(ys_np.astype(np.int64)).to(dev)
    hyper = dict(step_size=cfg.step_size, iters=cfg.iters, pthresh=cfg.pthresh,
                 adv_pert=cfg.adv_pert, adv_step_size=cfg.adv_step_size)

    def job():
        out = torch_traversal(f, txs, txt, tys, **hyper)
        synchronize(dev)
        return out

    t_first, (tx, tacc) = timed(job)
    diff = np.abs(tx.cpu().numpy().transpose(0, 2, 3, 1) - jax_img)
    per_pair = diff.reshape(len(xs_np), -1).max(1)
    acc = float((tacc.cpu().numpy() == jax_acc).mean())
    agree = {"max_abs_diff": float(diff.max()), "atol": atol,
             "pairs_differing": int((per_pair > atol).sum()), "accept_agreement": acc,
             "ok": bool(diff.max() <= atol and acc == 1.0)}
    res[f"{name}_agreement"] = agree
    res[f"{name}_first_run_s"] = t_first
    if name == "torch_compile":   # first run = compilation + one run
        res["compile_s"]["torch_compile"] = max(0.0, t_first - res.get("torch_first_run_s", 0))
    res["agree"] = res.get("agree", True) and agree["ok"]
    ctx.log(f"    {name}: first run {t_first:.1f} s; final images max |diff| "
            f"{agree['max_abs_diff']:.1e} ({'ok' if agree['ok'] else 'DISAGREE'}), accept "
            f"decisions equal {100 * acc:.2f}%")
    return {name: job}


def _memory_check(case, ctx, batch, iters, inputs, a) -> dict:
    """Peak memory at `iters` and `2 iters`: may grow only by the per-iteration record."""
    b = memory_profile(_program(case, ctx, "float32", batch, 2 * iters, inputs)[0])
    if not a or not b:
        return {"ok": None, "note": "no memory analysis on this backend"}
    record = RECORD_BYTES_PER_PAIR_ITER * batch * iters
    growth = b["peak"] - a["peak"]
    return {"ok": bool(growth <= record + 4 * 64), "peak": a["peak"], "peak_2x": b["peak"],
            "growth": growth, "record_bytes": record}


def _bf16(w, case, ctx, res, run_bf, bres, inputs, batch, iters, reps, ys_np) -> dict:
    """bfloat16 traversal against the float32 one: speed-up and output changes."""
    fresh = ("lst", case.name, "float32", batch, iters) not in ctx.cache
    f32, t_c, cfg = _program(case, ctx, "float32", batch, iters, inputs)
    if fresh:   # else compiled (and reported) by the float32 workload
        res["compile_s"]["jax_traversal_float32"] = t_c
    params = case.params

    def run_f32():
        return block(f32(params, *inputs, cfg.hyper))

    fres = run_f32()
    bf_fn = with_dtype(case.model_fn, w.dtype)
    same = np.asarray(jax.nn.softmax(bf_fn(params, fres.images), -1))[np.arange(batch), ys_np]
    f32_final = np.asarray(fres.record.conf_source[-1])
    bf_final = np.asarray(bres.record.conf_source[-1])
    res["change_vs_float32"] = {
        "conf_diff_same_images_max": float(np.abs(same - f32_final).max()),
        "final_conf_diff_max": float(np.abs(bf_final - f32_final).max()),
        "final_conf_diff_mean": float(np.abs(bf_final - f32_final).mean()),
        "final_image_diff_max": float(np.abs(np.asarray(bres.images)
                                             - np.asarray(fres.images)).max()),
        "accept_agreement": float((np.asarray(bres.record.accepted)
                                   == np.asarray(fres.record.accepted)).mean())}
    times = time_jobs(ctx, {"jax_bf16": run_bf, "jax_f32": run_f32}, reps, res)
    if times is None:
        return res
    res.update({"jax_pair_it_per_s": batch * iters / median(times["jax_bf16"]),
                "float32_pair_it_per_s": batch * iters / median(times["jax_f32"]),
                "speedup_over_float32": ratio(times, "jax_f32", "jax_bf16")})
    return res
