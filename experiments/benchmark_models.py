"""Throughput of the zoo architectures in JAX and in PyTorch, same machine, same run.

    python experiments/benchmark_models.py                       # every architecture
    python experiments/benchmark_models.py --archs resnet50 wrn28_10 --batch-224 8 --batch-32 32

For each architecture at its native input size (224x224, or 32x32 for the CIFAR WideResNets):
parameters, forward and forward+backward-to-the-input (the gradient LST needs: d CE / d x,
no parameter gradients) throughput in images/s for JAX (jit, float32, the library's
`Classifier` with its normalisation) and PyTorch (eager, float32, the independent twins of
tests/torch_reference.py; for GoogLeNet torchvision's own class), and the ratio JAX /
PyTorch. PyTorch is timed with each of `--threads` (default 1 and all cores) and its best
figure is reported with its thread count:
on a shared, oversubscribed machine OpenMP with all cores can be several times slower than
one thread.
Both sides run the *same* weights: the PyTorch model is randomly initialised (BatchNorm
statistics randomised), converted with `lst_jax.convert`, and the logits of the two are
compared (max relative error, a full-size parity check). Timings: median of `--reps` runs
after one warm-up; JAX compile time reported separately. Not a test; numbers go to
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from lst_jax.convert import convert_state_dict, param_count  # noqa: E402
from lst_jax.models.registry import ARCHITECTURES  # noqa: E402
from lst_jax.models.wrapper import IMAGENET_NORMALIZATION, Classifier, Normalization  # noqa: E402

# architecture -> (PyTorch twin factory name and kwargs, input size)
TWINS = {
    "resnet18": (("TorchResNet", dict(block="basic", layers=(2, 2, 2, 2))), 224),
    "resnet34": (("TorchResNet", dict(block="basic", layers=(3, 4, 6, 3))), 224),
    "resnet50": (("TorchResNet", dict(block="bottleneck", layers=(3, 4, 6, 3))), 224),
    "resnet101": (("TorchResNet", dict(block="bottleneck", layers=(3, 4, 23, 3))), 224),
    "resnet152": (("TorchResNet", dict(block="bottleneck", layers=(3, 8, 36, 3))), 224),
    "wrn28_10": (("TorchWideResNet", dict(depth=28, widen_factor=10)), 32),
    "wrn34_10": (("TorchWideResNet", dict(depth=34, widen_factor=10)), 32),
    "deit_tiny": (("TorchViT", dict(dim=192, depth=12, heads=3)), 224),
    "deit_small": (("TorchViT", dict(dim=384, depth=12, heads=6)), 224),
    "vit_base": (("TorchViT", dict(dim=768, depth=12, heads=12)), 224),
    "vit_small_convstem": (("TorchViT", dict(convstem=True, stem_width=48)), 224),
    # torchvision's own class (stub import); vit_b_16 (torchvision) is the vit_base network
    "googlenet": (("torchvision_googlenet", {}), 224),
}


def _median_time(fn, reps):
    fn()  # warm-up
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def bench(arch, batch, reps, thread_counts):
    import torch
    import torch.nn.functional as F

    import torch_reference as tr

    (cls, kwargs), size = TWINS[arch]
    torch.manual_seed(0)
    twin = tr.randomize_(getattr(tr, cls)(**kwargs))
    for p in twin.parameters():
        p.requires_grad_(False)
    module = ARCHITECTURES[arch]()
    norm = Normalization() if size == 32 else IMAGENET_NORMALIZATION
    model_fn = Classifier(module, norm)
    variables = jax.device_put(convert_state_dict(tr.state_dict_numpy(twin), module,
                                                  (size, size, 3)).variables)
    n_params = param_count(variables)

    rng = np.random.default_rng(0)
    x = rng.uniform(size=(batch, size, size, 3)).astype(np.float32)
    y = rng.integers(0, 10, batch).astype(np.int32)
    xj, yj = jnp.asarray(x), jnp.asarray(y)
    xt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy())
    yt = torch.from_numpy(y.astype(np.int64))
    if norm.mean is not None:
        mean = torch.tensor(norm.mean).view(1, 3, 1, 1)
        std = torch.tensor(norm.std).view(1, 3, 1, 1)
    else:
        mean, std = torch.zeros(1, 3, 1, 1), torch.ones(1, 3, 1, 1)

    fwd = jax.jit(model_fn)

    def loss(v, x, y):
        logits = model_fn(v, x)
        return -jnp.sum(jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], 1))

    grad_x = jax.jit(jax.grad(loss, argnums=1))

    t = time.perf_counter()
    logits_j = np.asarray(fwd(variables, xj))
    compile_fwd = time.perf_counter() - t
    t = time.perf_counter()
    jax.block_until_ready(grad_x(variables, xj, yj))
    compile_bwd = time.perf_counter() - t

    with torch.no_grad():
        logits_t = twin((xt - mean) / std).numpy()
    err = float(np.max(np.abs(logits_j - logits_t)) / np.max(np.abs(logits_t)))

    def torch_fwd():
        with torch.no_grad():
            twin((xt - mean) / std)

    def torch_bwd():
        xg = xt.clone().requires_grad_(True)
        F.cross_entropy(twin((xg - mean) / std), yt, reduction="sum").backward()
        return xg.grad

    tj_f = _median_time(lambda: fwd(variables, xj).block_until_ready(), reps)
    tj_b = _median_time(lambda: grad_x(variables, xj, yj).block_until_ready(), reps)
    tt_f, tt_b = {}, {}
    for n in thread_counts:
        torch.set_num_threads(n)
        tt_f[n] = _median_time(torch_fwd, reps)
        tt_b[n] = _median_time(torch_bwd, reps)
    nf, nb = min(tt_f, key=tt_f.get), min(tt_b, key=tt_b.get)
    return dict(arch=arch, input=f"{size}x{size}", batch=batch, params=n_params,
                jax_fwd=batch / tj_f, torch_fwd=batch / tt_f[nf], torch_fwd_threads=nf,
                jax_bwd=batch / tj_b, torch_bwd=batch / tt_b[nb], torch_bwd_threads=nb,
                compile_fwd=compile_fwd, compile_bwd=compile_bwd, rel_err=err)


def machine() -> str:
    import importlib.metadata as md

    from lst_jax.jobs.rundir import cpu_model_name

    cpu = cpu_model_name()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    vers = ", ".join(f"{p} {md.version(p)}" for p in ("jax", "jaxlib", "flax", "torch"))
    return (f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}; "
            f"python {platform.python_version()}, {vers}; backend {jax.default_backend()}; "
            f"load average at start {load:.1f}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--archs", nargs="+", default=list(TWINS), choices=list(TWINS))
    p.add_argument("--batch-224", type=int, default=8, help="batch at 224x224")
    p.add_argument("--batch-32", type=int, default=32, help="batch at 32x32")
    p.add_argument("--reps", type=int, default=3, help="timed repetitions (median)")
    p.add_argument("--threads", type=int, nargs="+", default=sorted({1, os.cpu_count() or 1}),
                   help="PyTorch thread counts to try (best is reported)")
    args = p.parse_args(argv)

    print(f"machine: {machine()}", flush=True)
    header = ("architecture", "input", "batch", "params", "fwd JAX img/s",
              "fwd PyTorch img/s (threads)", "fwd JAX/PT", "fwd+bwd(x) JAX img/s",
              "fwd+bwd(x) PyTorch img/s (threads)",
              "fwd+bwd JAX/PT", "JAX compile fwd / fwd+bwd s", "logits rel. err")
    rows = []
    for arch in args.archs:
        size = TWINS[arch][1]
        r = bench(arch, args.batch_224 if size == 224 else args.batch_32, args.reps,
                  args.threads)
        rows.append((r["arch"], r["input"], r["batch"], f"{r['params']:,}",
                     f"{r['jax_fwd']:.1f}", f"{r['torch_fwd']:.1f} ({r['torch_fwd_threads']})",
                     f"{r['jax_fwd'] / r['torch_fwd']:.2f}", f"{r['jax_bwd']:.1f}",
                     f"{r['torch_bwd']:.1f} ({r['torch_bwd_threads']})",
                     f"{r['jax_bwd'] / r['torch_bwd']:.2f}",
                     f"{r['compile_fwd']:.1f} / {r['compile_bwd']:.1f}",
                     f"{r['rel_err']:.1e}"))
        print(" | ".join(map(str, rows[-1])), flush=True)
    print()
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for r in rows:
        print("| " + " | ".join(map(str, r)) + " |")


if __name__ == "__main__":
    main()
