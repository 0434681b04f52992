"""Level Set Traversal speed: lst_jax's fused jitted scan against a PyTorch eager loop.

    python experiments/benchmark.py                      # every model, default batch sizes
    python experiments/benchmark.py --models digits_resnet digits_vit --batch-sizes 32 128
    python experiments/benchmark.py --torch-compile --bf16 on --out runs/benchmark

The same traversal (same weights, same pairs, the `paper` preset with zero start noise) is run
by
- lst_jax: `lst_jax.traversal.traverse`, one jitted `lax.scan`, fused step (one forward and
  one backward per iteration);
- PyTorch eager: the reference loop of `../shared/spec/lst.md` section 1.5, written from the
  spec (gradient at x: one forward + one backward; confidence of the candidate: a second
  forward), with lst_jax's documented guards (zero-gradient coefficient, non-finite
  rejection) so that both compute the same trajectory;
- optionally `torch.compile` of the model inside that loop (`--torch-compile`).

Per model and batch size it reports pair-iterations per second (batch x iterations / time),
the JAX/PyTorch throughput ratio, and the traversal's **efficiency**: iterations x (time of
one jitted forward+backward of the batch, `lst_jax.traversal.forward_backward`) / traversal
time, whose limit is 1.0 (the traversal's set-up adds one forward and one forward+backward,
so with `--iters 25` the ceiling is about 0.95). Measurements are interleaved (JAX traversal,
PyTorch traversal, JAX forward+backward, in alternating order, `--reps` times) and medians
of per-repetition ratios are reported, so slow drifts of a shared machine's load cancel.

Before any speed is reported, JAX and PyTorch must compute the same traversal: every
acceptance decision of every iteration equal, and the final images within `--atol` (default
1/255, one 8-bit grey level: float32 summation-order differences in the gradients grow
along a trajectory, to ~1e-3 after 25 iterations for a few pairs). A disagreeing case
reports no speed and makes the command fail.

Efficiency is reported twice: against one jitted forward+backward call (the definition
above, `efficiency`) and against the per-iteration time of a jitted `fori_loop` of
forward+backward passes (`efficiency_loop`), the stricter bound: inside a loop XLA:CPU
reuses its buffers and warm caches, so a loop iteration can be faster than a separate call
and `efficiency` can exceed 1.
It also checks that the traversal's peak memory (XLA's buffer assignment of the compiled
program: arguments + outputs + temporaries) does not grow with the number of iterations
beyond the per-iteration record (13 bytes per pair and iteration), and, with `--bf16`,
runs the traversal with a bfloat16 forward/backward (`Classifier(compute_dtype=bfloat16)`)
and reports its speed and confidence differences against float32.

Models: the shipped digits ResNet and ViT (trained checkpoints, PyTorch twins in
experiments/torch_twins.py), and when the model zoo is present WRN-28-10 (32x32), ResNet-50
and DeiT-S (224x224) with random weights (speed does not depend on the weights).
Without torch the PyTorch columns are skipped with a message. Output: `benchmark.json`
and `benchmark.md` in `--out` (default runs/benchmark); the figures with machine details
are recorded in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional

ROOT = Path(__file__).resolve().parents[1]
for _p in (str(ROOT), str(ROOT / "experiments"), str(ROOT / "tests")):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from lst_jax.evaluation.rundir import (RunDir, cpu_model_name, markdown_table,  # noqa: E402
                                       package_versions)  # noqa: E402
from lst_jax.models.wrapper import Classifier  # noqa: E402
from lst_jax.traversal import preset  # noqa: E402
from lst_jax.traversal import run as run_mod  # noqa: E402
from lst_jax.traversal.step import forward_backward  # noqa: E402

try:
    import torch

    HAVE_TORCH = True
except ImportError:  # the PyTorch side is optional
    torch = None
    HAVE_TORCH = False

RECORD_BYTES_PER_PAIR_ITER = 4 + 4 + 1 + 4   # LSTRecord: two confidences, accepted, distance


# ------------------------------------------------------------------------------- cases
@dataclasses.dataclass
class Case:
    """One model of the benchmark.

    Attributes:
        name: label in the tables.
        model_fn, params: the JAX model (`Classifier`) and its variables.
        image_shape: (H, W, C).
        make_torch: builds the PyTorch twin taking [0, 1] NCHW pixels (normalisation
            included) with the same weights; None when torch is absent.
        data: batch size -> (sources, targets, labels) numpy arrays, NHWC in [0, 1].
        batch_sizes: default batch sizes.
        weights: where the weights come from (for the table).
    """

    name: str
    model_fn: Classifier
    params: Any
    image_shape: tuple
    make_torch: Optional[Callable[[], Any]]
    data: Callable[[int], tuple]
    batch_sizes: tuple
    weights: str


class TorchNormalized(torch.nn.Module if HAVE_TORCH else object):
    """`module((x - mean) / std)` on NCHW pixels in [0, 1] (identity without mean/std)."""

    def __init__(self, module, normalization):
        super().__init__()
        self.module = module
        self.has_norm = normalization.mean is not None
        if self.has_norm:
            self.register_buffer("mean", torch.tensor(normalization.mean).view(1, -1, 1, 1))
            self.register_buffer("std", torch.tensor(normalization.std).view(1, -1, 1, 1))

    def forward(self, x):
        return self.module((x - self.mean) / self.std if self.has_norm else x)


def _cycle(images, labels, n):
    idx = np.arange(n) % len(images)
    return images[idx], labels[idx]


def random_variables(model_fn, image_shape, seed: int = 0, scale: float = 0.5):
    """Random variables in the structure of `model_fn.init`, drawn with numpy (no jitted
    initialisers to compile); BatchNorm variances are positive.

    Shape:
        image_shape: (H, W, C).
    """
    abstract = jax.eval_shape(lambda: model_fn.init(jax.random.key(0), image_shape))
    rng = np.random.default_rng(seed)

    def draw(path, leaf):
        v = scale * rng.standard_normal(leaf.shape) / np.sqrt(max(1, np.prod(leaf.shape[:-1])))
        if any(getattr(k, "key", None) == "var" for k in path):
            v = 0.5 + rng.uniform(size=leaf.shape)
        return jnp.asarray(v, leaf.dtype)

    return jax.tree_util.tree_map_with_path(draw, abstract)


def digits_data(batch: int):
    """Test digits as sources; target i is source (i + batch // 2 + 1) mod batch."""
    from lst_jax.data.digits import load_digits32

    x, y = load_digits32("test")
    xs, ys = _cycle(x, y, batch)
    shift = batch // 2 + 1 if batch > 1 else 0
    return xs, np.roll(xs, -shift, axis=0), ys


def random_data(model_fn, params, image_shape, seed=0):
    """Uniform random images; labels are the model's predictions (all pass the filter)."""
    def data(batch: int):
        rng = np.random.default_rng(seed)
        xs = rng.uniform(size=(batch,) + tuple(image_shape)).astype(np.float32)
        xt = rng.uniform(size=(batch,) + tuple(image_shape)).astype(np.float32)
        ys = np.asarray(jnp.argmax(model_fn(params, jnp.asarray(xs)), -1)).astype(np.int32)
        return xs, xt, ys
    return data


def digits_case(arch: str) -> Case:
    from lst_jax.models import load_model

    m = load_model(f"{arch}-normal")
    make_torch = None
    if HAVE_TORCH:
        from torch_twins import digits_twin

        make_torch = lambda: TorchNormalized(digits_twin(m.model_fn.module, m.params),
                                             m.model_fn.normalization).eval()
    return Case(arch, m.model_fn, m.params, tuple(m.spec.input_size), make_torch, digits_data,
                (32, 128), f"shipped checkpoint {arch}-normal")


def zoo_case(name: str) -> Case:
    """WRN-28-10 / ResNet-50 / DeiT-S with random weights from the PyTorch twin (needs the
    zoo: lst_jax.models.{wide_resnet,resnet,vit} and lst_jax.convert)."""
    try:
        from lst_jax.convert import convert_state_dict
        from lst_jax.models.registry import ARCHITECTURES
    except ImportError as e:
        raise ValueError(f"model {name!r} needs the model zoo (lst_jax.convert): {e}") from e
    from lst_jax.models.wrapper import IMAGENET_NORMALIZATION, Normalization

    spec = ZOO[name]
    if not HAVE_TORCH:
        raise ValueError(f"model {name!r} takes its random weights from the PyTorch twin: "
                         "install the torch extra")
    import torch_reference as tr  # tests/torch_reference.py (the zoo's twins)

    torch.manual_seed(0)
    twin = tr.randomize_(getattr(tr, spec["twin"])(**spec["twin_kwargs"]))
    module = ARCHITECTURES[spec["arch"]]()
    size = spec["size"]
    norm = IMAGENET_NORMALIZATION if size == 224 else Normalization()
    model_fn = Classifier(module, norm)
    params = jax.device_put(convert_state_dict(tr.state_dict_numpy(twin), module,
                                               (size, size, 3)).variables)
    for p in twin.parameters():
        p.requires_grad_(False)
    make_torch = lambda: TorchNormalized(twin, norm).eval()
    shape = (size, size, 3)
    return Case(name, model_fn, params, shape, make_torch, random_data(model_fn, params, shape),
                spec["batch_sizes"], "random init (PyTorch twin, converted)")


ZOO = {
    "wrn28_10": dict(arch="wrn28_10", twin="TorchWideResNet",
                     twin_kwargs=dict(depth=28, widen_factor=10), size=32, batch_sizes=(8, 16)),
    "resnet50": dict(arch="resnet50", twin="TorchResNet",
                     twin_kwargs=dict(block="bottleneck", layers=(3, 4, 6, 3)), size=224,
                     batch_sizes=(2, 8)),
    "deit_small": dict(arch="deit_small", twin="TorchViT",
                       twin_kwargs=dict(dim=384, depth=12, heads=6), size=224,
                       batch_sizes=(2, 8)),
}
MODELS = ("digits_resnet", "digits_vit") + tuple(ZOO)


def make_case(name: str) -> Case:
    if name in ("digits_resnet", "digits_vit"):
        return digits_case(name)
    if name in ZOO:
        return zoo_case(name)
    raise ValueError(f"unknown benchmark model {name!r}; choose from {', '.join(MODELS)}")


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


# ------------------------------------------------------------------------------- PyTorch
def torch_traversal(f, xs, xt, ys, *, step_size, iters, pthresh, adv_pert, adv_step_size,
                    snapshots=()):
    """The reference LST loop (spec section 1.5) in PyTorch eager, zero start noise.

    Per iteration: forward + backward at x (gradient of the summed CE), projection,
    accumulator, candidate, a second forward for the candidate's confidence, strict
    acceptance test against the clean confidence. As in lst_jax, a zero gradient gives
    projection coefficient 0 and non-finite candidates are rejected.

    Runs in the dtype of `xs` (float64 with a `.double()` model for ground-truth runs).
    `snapshots`: iteration counts k whose iterate x_k is also returned.

    Shape:
        xs, xt: (B, C, H, W) float tensors in [0, 1]; ys: (B,) int64.
        Returns (final x (B, C, H, W), accepted (iters, B) bool), and with `snapshots` a
        third item {k: x_k}.
    """
    tiny = torch.finfo(xs.dtype).tiny
    taken = {}
    with torch.no_grad():
        p0 = torch.softmax(f(xs.clamp(0, 1)), -1).gather(1, ys[:, None])[:, 0]
    x = xs.clone()
    a = torch.zeros_like(x)
    accepted = []
    shape = (-1,) + (1,) * (x.ndim - 1)
    for _ in range(iters):
        xg = x.detach().requires_grad_(True)
        loss = torch.nn.functional.cross_entropy(f(xg), ys, reduction="sum")
        (g,) = torch.autograd.grad(loss, xg)
        with torch.no_grad():
            v = xt - x
            gg = (g * g).flatten(1).sum(1)
            gv = (g * v).flatten(1).sum(1)
            coef = torch.where(gg > 0, gv / gg.clamp_min(tiny), torch.zeros_like(gg))
            v_perp = v - coef.view(shape) * g
            a = torch.clamp(a + (0.5 * adv_step_size) * g, -adv_step_size, adv_step_size)
            cand = x + step_size * v_perp
            if adv_pert:
                cand = cand - a
            cand = cand.clamp(0, 1)
            p = torch.softmax(f(cand), -1)
            ok = (p0 - p.gather(1, ys[:, None])[:, 0]) < pthresh
            ok &= torch.isfinite(cand).flatten(1).all(1) & torch.isfinite(p).all(1)
            x = torch.where(ok.view(shape), cand, x)
        accepted.append(ok)
        if len(accepted) in snapshots:
            taken[len(accepted)] = x.clone()
    if snapshots:
        return x, torch.stack(accepted), taken
    return x, torch.stack(accepted)


def _nchw(a):
    return torch.from_numpy(np.ascontiguousarray(np.asarray(a).transpose(0, 3, 1, 2)))


# ------------------------------------------------------------------------------- helpers
def _timed(fn):
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def _median(v):
    v = [x for x in v if x is not None]
    return statistics.median(v) if v else None


def compile_traversal(model_fn, params, xs, xt, ys, yt, key, cfg):
    """The jitted program of `lst_jax.traversal.traverse`, compiled ahead of time.

    Returns (compiled, seconds); call as `compiled(params, xs, xt, ys, yt, key, cfg.hyper)`
    (the static model_fn and settings are compiled in), exactly what `traverse` runs.
    """
    t = time.perf_counter()
    compiled = run_mod._traverse_jit.lower(model_fn, params, xs, xt, ys, yt, key, cfg.hyper,
                                           static=cfg.static).compile()
    return compiled, time.perf_counter() - t


def memory_profile(compiled) -> dict:
    """XLA's buffer assignment of a compiled program: sizes in bytes (empty if unknown)."""
    ma = compiled.memory_analysis()
    if ma is None:
        return {}
    out = {k: int(getattr(ma, f"{k}_size_in_bytes")) for k in
           ("argument", "output", "temp", "alias", "generated_code")}
    out["peak"] = out["argument"] + out["output"] + out["temp"] - out["alias"]
    return out


def memory_check(compiled, model_fn, params, xs, xt, ys, yt, key, cfg) -> dict:
    """Peak memory at `iters` and `2 iters`: may grow only by the per-iteration record."""
    a = memory_profile(compiled)
    b = memory_profile(compile_traversal(model_fn, params, xs, xt, ys, yt, key,
                                         cfg.replace(iters=2 * cfg.iters))[0])
    if not a or not b:
        return {"ok": None, "note": "no memory analysis on this backend"}
    record = RECORD_BYTES_PER_PAIR_ITER * xs.shape[0] * cfg.iters
    growth = b["peak"] - a["peak"]
    # Slack: alignment of the four record buffers (64 bytes each).
    ok = growth <= record + 4 * 64
    return {"ok": bool(ok), "iters": cfg.iters, "peak": a["peak"], "peak_2x": b["peak"],
            "temp": a["temp"], "temp_2x": b["temp"], "growth": growth,
            "record_bytes": record}


def machine_info() -> dict:
    info = {"cpu": cpu_model_name(), "cores": os.cpu_count(), "system": f"{platform.system()} "
            f"{platform.release()}", "backend": jax.default_backend(),
            "devices": [str(d) for d in jax.devices()],
            "xla_flags": os.environ.get("XLA_FLAGS", ""),
            "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
            "versions": package_versions()}
    if HAVE_TORCH:
        info["versions"]["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
    return info


# ------------------------------------------------------------------------------- one run
def bench_one(case: Case, batch: int, *, iters: int, reps: int, atol: float,
              torch_compile: bool, bf16: bool, check_memory: bool, log=print) -> dict:
    """Runs one (model, batch size) measurement; returns its JSON-able result."""
    cfg = preset("paper", iters=iters, noise=0.0)
    xs_np, xt_np, ys_np = case.data(batch)
    xs, xt, ys = jnp.asarray(xs_np), jnp.asarray(xt_np), jnp.asarray(ys_np, jnp.int32)
    yt = jnp.argmax(case.model_fn(case.params, xt), -1).astype(jnp.int32)
    key = jax.random.key(0)
    model_fn, params = case.model_fn, case.params
    res = {"model": case.name, "input": "x".join(map(str, case.image_shape)), "batch": batch,
           "iters": iters, "weights": case.weights, "config": cfg.to_dict()}

    hyper = cfg.hyper
    compiled, t_compile = compile_traversal(model_fn, params, xs, xt, ys, yt, key, cfg)

    def run_jax(c=compiled):
        return jax.block_until_ready(c(params, xs, xt, ys, yt, key, hyper))

    fb = jax.jit(forward_backward, static_argnums=0)
    fb_loop = jax.jit(forward_backward_loop, static_argnums=(0, 4))

    def run_fb():
        return jax.block_until_ready(fb(model_fn, params, xs, ys))

    def run_fb_loop():
        return jax.block_until_ready(fb_loop(model_fn, params, xs, ys, iters))

    # First run: the JAX side of the agreement check.
    t_first, jres = _timed(run_jax)
    res["jax_compile_s"] = t_compile
    res["jax_first_run_s"] = t_first
    run_fb()
    run_fb_loop()
    log(f"  [{case.name} b={batch}] JAX compiled in {t_compile:.1f} s, first run {t_first:.2f} s")

    # PyTorch side: warm-up run = agreement check.
    torch_fns = {}
    if case.make_torch is not None and HAVE_TORCH:
        f = case.make_torch()
        torch_fns["torch"] = f
        if torch_compile:
            torch_fns["torch_compile"] = torch.compile(case.make_torch())
    elif not HAVE_TORCH:
        res["torch_skipped"] = "torch is not installed (pip install -e '.[torch]')"
    txs, txt, tys = ((_nchw(xs_np), _nchw(xt_np), torch.from_numpy(ys_np.astype(np.int64)))
                     if torch_fns else (None, None, None))
    torch_hyper = dict(step_size=cfg.step_size, iters=iters, pthresh=cfg.pthresh,
                       adv_pert=cfg.adv_pert, adv_step_size=cfg.adv_step_size)

    def run_torch(f):
        return torch_traversal(f, txs, txt, tys, **torch_hyper)

    agree_all = True
    jax_img = np.asarray(jres.images)
    jax_acc = np.asarray(jres.record.accepted)
    for name, f in torch_fns.items():
        t_first, (tx, tacc) = _timed(lambda: run_torch(f))
        diff = np.abs(tx.numpy().transpose(0, 2, 3, 1) - jax_img)
        per_pair = diff.reshape(batch, -1).max(1)
        accept_agreement = float((tacc.numpy() == jax_acc).mean())
        agree = {"max_abs_diff": float(diff.max()), "atol": atol,
                 "pairs_differing": int((per_pair > atol).sum()),
                 "accept_agreement": accept_agreement,
                 "ok": bool(diff.max() <= atol and accept_agreement == 1.0)}
        res[f"{name}_agreement"] = agree
        res[f"{name}_first_run_s"] = t_first
        agree_all &= agree["ok"]
        log(f"  [{case.name} b={batch}] {name} first run {t_first:.1f} s; final images "
            f"max |diff| {agree['max_abs_diff']:.2e} ({'ok' if agree['ok'] else 'DISAGREE'}), "
            f"accept decisions equal {100 * agree['accept_agreement']:.2f}%")

    bf16_fn = bf16_compiled = None
    if bf16:
        bf16_fn = dataclasses.replace(model_fn, compute_dtype=jnp.bfloat16)
        bf16_compiled, t_c = compile_traversal(bf16_fn, params, xs, xt, ys, yt, key, cfg)
        bres = run_jax(bf16_compiled)
        f32_final = np.asarray(jres.record.conf_source[-1])
        bf_final = np.asarray(bres.record.conf_source[-1])
        # The bf16 traversal's final images under the float32 model: does it stay on the level set?
        p_true = np.asarray(jax.nn.softmax(model_fn(params, bres.images), -1))
        p_true = p_true[np.arange(batch), ys_np]
        p_bf_same = np.asarray(jax.nn.softmax(bf16_fn(params, jres.images), -1))
        p_bf_same = p_bf_same[np.arange(batch), ys_np]
        res["bf16"] = {
            "compile_s": t_c,
            "conf_diff_same_images_max": float(np.abs(p_bf_same - f32_final).max()),
            "conf_diff_same_images_mean": float(np.abs(p_bf_same - f32_final).mean()),
            "final_conf_diff_max": float(np.abs(bf_final - f32_final).max()),
            "final_conf_diff_mean": float(np.abs(bf_final - f32_final).mean()),
            "final_conf_f32_model_of_bf16_images_min": float(p_true.min()),
            "final_image_diff_max": float(np.abs(np.asarray(bres.images) - jax_img).max()),
        }

    if check_memory:
        res["memory"] = memory_check(compiled, model_fn, params, xs, xt, ys, yt, key, cfg)
        m = res["memory"]
        if m.get("ok") is not None:
            log(f"  [{case.name} b={batch}] peak memory {m['peak'] / 2**20:.1f} MiB at "
                f"{iters} iterations, {m['peak_2x'] / 2**20:.1f} MiB at {2 * iters} "
                f"({'ok' if m['ok'] else 'GROWS'})")

    if not agree_all:
        res["speed_reported"] = False
        log(f"  [{case.name} b={batch}] JAX and PyTorch disagree: no speed reported")
        return res

    # Interleaved timing.
    times = {"jax": [], "fb": [], "fb_loop": [], **{k: [] for k in torch_fns}}
    if bf16_compiled is not None:
        times["jax_bf16"] = []
    jobs = [("jax", run_jax), ("fb", lambda: [_timed(run_fb)[0] for _ in range(3)]),
            ("fb_loop", run_fb_loop)]
    jobs += [(k, (lambda f=f: run_torch(f))) for k, f in torch_fns.items()]
    if bf16_compiled is not None:
        jobs.append(("jax_bf16", lambda: run_jax(bf16_compiled)))
    for r in range(reps):
        for name, job in (jobs if r % 2 == 0 else jobs[::-1]):
            t, out = _timed(job)
            times[name].append(statistics.median(out) if name == "fb" else t)
        log(f"  [{case.name} b={batch}] rep {r + 1}/{reps}: " + ", ".join(
            f"{k} {v[-1]:.3f} s" for k, v in times.items()))
    pairs = batch * iters
    res["times_s"] = times
    res["speed_reported"] = True
    res["jax_pair_it_per_s"] = pairs / _median(times["jax"])
    res["jax_fwd_bwd_s"] = _median(times["fb"])
    res["efficiency"] = _median([iters * f / t for f, t in zip(times["fb"], times["jax"])])
    res["jax_fwd_bwd_loop_s"] = _median(times["fb_loop"]) / iters
    res["efficiency_loop"] = _median([f / t for f, t in zip(times["fb_loop"], times["jax"])])
    for k in torch_fns:
        res[f"{k}_pair_it_per_s"] = pairs / _median(times[k])
        res[f"jax_over_{k}"] = _median([t / j for t, j in zip(times[k], times["jax"])])
    if bf16_compiled is not None:
        res["bf16"]["pair_it_per_s"] = pairs / _median(times["jax_bf16"])
        res["bf16"]["speedup_over_f32"] = _median(
            [j / b for j, b in zip(times["jax"], times["jax_bf16"])])
    return res


# ------------------------------------------------------------------------------- report
def _f(v, fmt):
    return "-" if v is None else format(v, fmt)


def markdown_report(results, machine, torch_compile: bool, bf16: bool) -> str:
    header = ["model", "input", "batch", "iters", "JAX pair-it/s", "PyTorch pair-it/s",
              "JAX / PyTorch"]
    if torch_compile:
        header += ["torch.compile pair-it/s", "JAX / compile"]
    header += ["JAX fwd+bwd (ms)", "efficiency", "efficiency (loop)",
               "max abs diff JAX-PyTorch",
               "peak MiB (iters / 2x iters)"]
    if bf16:
        header += ["bf16 pair-it/s", "bf16 conf diff (max, same images / final)"]
    rows = []
    for r in results:
        agree = r.get("torch_agreement") or {}
        mem = r.get("memory") or {}
        if not r.get("speed_reported"):
            ratio = "DISAGREE"
        else:
            ratio = _f(r.get("jax_over_torch"), ".2f")
        row = [r["model"], r["input"], r["batch"], r["iters"],
               _f(r.get("jax_pair_it_per_s"), ".1f"), _f(r.get("torch_pair_it_per_s"), ".1f"),
               ratio]
        if torch_compile:
            row += [_f(r.get("torch_compile_pair_it_per_s"), ".1f"),
                    _f(r.get("jax_over_torch_compile"), ".2f")]
        row += [_f(None if r.get("jax_fwd_bwd_s") is None else 1e3 * r["jax_fwd_bwd_s"], ".1f"),
                _f(r.get("efficiency"), ".2f"), _f(r.get("efficiency_loop"), ".2f"),
                _f(agree.get("max_abs_diff"), ".1e"),
                (f"{mem['peak'] / 2**20:.1f} / {mem['peak_2x'] / 2**20:.1f}"
                 + ("" if mem.get("ok") else " GROWS")) if mem.get("peak") else "-"]
        if bf16:
            b = r.get("bf16") or {}
            row += [_f(b.get("pair_it_per_s"), ".1f"),
                    (f"{b['conf_diff_same_images_max']:.1e} / {b['final_conf_diff_max']:.1e}"
                     if b else "-")]
        rows.append(row)
    load = machine.get("load_average")
    lines = [f"Machine: {machine['cpu']}, {machine['cores']} cores, backend "
             f"{machine['backend']}; jax {machine['versions'].get('jax')}, torch "
             f"{machine['versions'].get('torch', 'absent')} ({machine.get('torch_threads', '-')}"
             f" threads); load average at start {load[0]:.1f}" if load else "", "",
             markdown_table(header, rows)]
    return "\n".join(lines)


# ------------------------------------------------------------------------------- main
def run_benchmark(cases, *, batch_sizes=None, iters=25, reps=3, atol=1 / 255,
                  torch_compile=False, bf16=False, check_memory=True, out=None,
                  log=print) -> dict:
    """Runs every case at its batch sizes; writes benchmark.json / benchmark.md to `out`."""
    machine = machine_info()
    log(f"machine: {machine['cpu']}, {machine['cores']} cores, backend {machine['backend']}, "
        f"load {machine['load_average']}")
    if not HAVE_TORCH:
        log("torch is not installed: the PyTorch side is skipped (pip install -e '.[torch]')")
    results = []
    for case in cases:
        for b in (batch_sizes or case.batch_sizes):
            log(f"{case.name}: batch {b}, {iters} iterations")
            results.append(bench_one(case, b, iters=iters, reps=reps, atol=atol,
                                     torch_compile=torch_compile, bf16=bf16,
                                     check_memory=check_memory, log=log))
    machine["load_average_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    report = {"machine": machine, "settings": {"iters": iters, "reps": reps, "atol": atol,
                                               "torch_compile": torch_compile, "bf16": bf16},
              "results": results}
    md = markdown_report(results, machine, torch_compile, bf16)
    if out is not None:
        rd = RunDir(out)
        rd.write_json("benchmark.json", report)
        rd.write_text("benchmark.md", md)
    report["markdown"] = md
    return report


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=None,
                   help=f"subset of {', '.join(MODELS)} (default: all available)")
    p.add_argument("--batch-sizes", type=int, nargs="+",
                   help="batch sizes for every model (default: per model)")
    p.add_argument("--iters", type=int, default=25, help="LST iterations per traversal")
    p.add_argument("--reps", type=int, default=3, help="interleaved timed repetitions")
    p.add_argument("--atol", type=float, default=1 / 255,
                   help="max abs difference of final images for JAX and PyTorch to agree "
                        "(default: one 8-bit grey level)")
    p.add_argument("--torch-threads", type=int, default=os.cpu_count(),
                   help="PyTorch intra-op threads (default: all cores, as XLA)")
    p.add_argument("--torch-compile", action="store_true", help="also time torch.compile")
    p.add_argument("--bf16", choices=["auto", "on", "off"], default="auto",
                   help="bfloat16 forward/backward run (auto: on for GPU/TPU)")
    p.add_argument("--no-memory-check", action="store_true")
    p.add_argument("--out", default=str(ROOT / "runs" / "benchmark"))
    args = p.parse_args(argv)
    if HAVE_TORCH:
        torch.set_num_threads(args.torch_threads)
    names = args.models or list(MODELS)
    cases = []
    for n in names:
        try:
            cases.append(make_case(n))
        except (ValueError, FileNotFoundError) as e:
            if args.models:  # explicitly requested: an error
                print(f"benchmark: error: {e}", file=sys.stderr)
                return 2
            print(f"skipping {n}: {e}", file=sys.stderr)
    bf16 = args.bf16 == "on" or (args.bf16 == "auto" and jax.default_backend() != "cpu")
    report = run_benchmark(cases, batch_sizes=args.batch_sizes, iters=args.iters,
                           reps=args.reps, atol=args.atol, torch_compile=args.torch_compile,
                           bf16=bf16, check_memory=not args.no_memory_check, out=args.out,
                           log=lambda s: print(s, flush=True))
    print()
    print(report["markdown"])
    print(f"wrote {args.out}/benchmark.json and benchmark.md")
    bad = [r for r in report["results"] if not r.get("speed_reported")]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
