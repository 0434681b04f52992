"""LST numerics: float32 trajectories against a float64 ground truth of the same traversal.

    python experiments/numerics.py                        # both models, 32 pairs, 10/50/100
    python experiments/numerics.py --models digits_resnet --pairs 64 --out runs/numerics

The `paper` preset (zero start noise, as in `lst-jax bench`, so that the PyTorch loop
walks the same trajectory) on the same weights and pairs, run
- by lst_jax in float64 (`level_set_traversal(..., precision="float64")`): the ground truth;
- by lst_jax in float32 with its default arithmetic (the CE gradient without cancellation,
  `lst_jax.traversal.step.ce_cotangent`) and with `reference_numerics=True` (the reference's
  `softmax - onehot`);
- by the PyTorch loop of the benchmark (the reference's arithmetic) in float32 and float64,
  and the PyTorch float64 run is checked against lst_jax's float64 run (two independent
  implementations of the ground truth).
For every iteration count it reports the max, mean and median over the valid pairs of
`max |x_float32 - x_float64|` over pixels (each float32 run against the float64 run of its own
implementation), and the per-step error free of the trajectories' chaotic amplification: at
the float64 iterate, the float32 input gradient of each lst_jax arithmetic against the float64
gradient (`step_errors`).

Models: the shipped digits ResNet (`digits_resnet-normal`, sources and targets from the
digits test split as in the benchmark) and a small CNN (`TinyCNN` of the tests, trained
for 1000 steps on the digits train split, its last layer then scaled by `--logit-scale`, so that
many sources are saturated: `1 - p_y` below float32's spacing near 1; labels are its own
predictions). Output:
`numerics.json` and `numerics.md` in `--out`; the figures are recorded in docs/lst.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for _p in (str(ROOT), str(ROOT / "experiments"), str(ROOT / "tests")):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from lst_jax.jobs.rundir import RunDir, markdown_table  # noqa: E402
from lst_jax.traversal import level_set_traversal, preset  # noqa: E402

MODELS = ("digits_resnet", "small_cnn")
ITERS = (10, 50, 100)
RUNS = ("lst_jax", "lst_jax_reference_numerics", "pytorch")


def make_case(name: str, pairs: int, logit_scale: float = 6.0):
    """(model_fn, params, sources, targets, labels, make_torch) for one model.

    Shape:
        sources, targets: (pairs, 32, 32, 3) float32 in [0, 1]; labels: (pairs,) int32.
    """
    from lst_jax.bench.cases import digits_data

    xs, xt, ys = digits_data(pairs)
    if name == "digits_resnet":
        from lst_jax.models import load_model

        m = load_model("digits_resnet-normal")

        def make_torch():
            from lst_jax.bench.torch_twins import TorchNormalized, digits_twin

            return TorchNormalized(digits_twin(m.model_fn.module, m.params),
                                   m.model_fn.normalization).eval()

        return m.model_fn, m.params, xs, xt, ys.astype(np.int32), make_torch
    if name == "small_cnn":
        model_fn, params = small_cnn(logit_scale)
        ys = np.asarray(jnp.argmax(model_fn(params, jnp.asarray(xs)), -1)).astype(np.int32)

        def make_torch():
            from torch_reference import torch_tiny_cnn

            m = torch_tiny_cnn(params)
            for q in m.parameters():
                q.requires_grad_(False)
            return m

        return model_fn, params, xs, xt, ys, make_torch
    raise ValueError(f"unknown model {name!r}; choose from {', '.join(MODELS)}")


SMALL_CNN = ROOT / "tests" / "data" / "small_cnn_digits.npz"


def small_cnn(logit_scale: float = 6.0, path=SMALL_CNN):
    """The committed small CNN (`train_small_cnn(1.0)`, 79% digits test accuracy) with its last
    layer multiplied by `logit_scale`: a confident small CNN whose softmax saturates in
    float32 on many digits (9 of the 32 benchmark sources at the default 6).

    Returns:
        (model_fn, params).
    """
    from lst_jax.models.wrapper import Classifier
    from subproc import TinyCNN

    with np.load(path) as z:
        layers = {}
        for k in z.files:
            layer, leaf = k.split("/")
            layers.setdefault(layer, {})[leaf] = z[k]
    layers["fc"] = {k: v * np.float32(logit_scale) for k, v in layers["fc"].items()}
    return Classifier(TinyCNN(10)), {"params": layers}


def save_small_cnn(path=SMALL_CNN) -> Path:
    """Trains the small CNN (`train_small_cnn(1.0)`) and writes it as npz (layer/leaf keys)."""
    _, params = train_small_cnn(1.0)
    np.savez(path, **{f"{layer}/{leaf}": v for layer, leaves in params["params"].items()
                      for leaf, v in leaves.items()})
    return Path(path)


def train_small_cnn(logit_scale: float, steps: int = 1000, seed: int = 0):
    """The tests' `TinyCNN` trained on the digits train split (optax Adam 1e-2, batch 128,
    `steps` steps, deterministic), its last layer then multiplied by `logit_scale`.

    Returns:
        (model_fn, params).
    """
    import optax

    from lst_jax.data.digits import load_digits32
    from subproc import fast_tiny_cnn

    model_fn, params = fast_tiny_cnn(seed, (32, 32, 3), 10)
    x, y = load_digits32("train")
    opt = optax.adam(1e-2)

    def loss(p, xb, yb):
        return optax.softmax_cross_entropy_with_integer_labels(model_fn(p, xb), yb).mean()

    @jax.jit
    def step(p, s, xb, yb):
        g = jax.grad(loss)(p, xb, yb)
        u, s = opt.update(g, s, p)
        return optax.apply_updates(p, u), s

    state = opt.init(params)
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        idx = rng.choice(len(x), 128, replace=False)
        params, state = step(params, state, x[idx], y[idx])
    params = jax.tree.map(np.asarray, params)
    params["params"]["fc"] = {k: v * np.float32(logit_scale)
                              for k, v in params["params"]["fc"].items()}
    return model_fn, params


def jax_snapshots(model_fn, params, xs, xt, ys, config, iters, precision):
    """lst_jax iterates x_k for k in `iters` (one run of max(iters) iterations).

    Shape:
        -> ({k: (B, H, W, C) float64}, accepted (T, B) bool, valid (B,) bool,
        one_minus_p0 (B,) float64).
    """
    step = int(np.gcd.reduce(np.asarray(iters)))
    cfg = config.replace(iters=max(iters), log_images=True, log_step=step)
    res = level_set_traversal(model_fn, params, xs, xt, ys, key=jax.random.key(0), config=cfg,
                              precision=precision)
    logged = np.asarray(res.logged_images, np.float64)
    snaps = {k: (np.asarray(res.images, np.float64) if k == max(iters)
                 else logged[k // step]) for k in iters}
    return (snaps, np.asarray(res.record.accepted), np.asarray(res.valid),
            1.0 - np.asarray(res.clean_conf, np.float64))


def torch_snapshots(make_torch, xs, xt, ys, config, iters, dtype):
    """The benchmark's PyTorch loop in `dtype`: iterates x_k (NHWC float64) for k in `iters`
    and the acceptance decisions (T, B)."""
    import torch

    from lst_jax.bench.torch_procedures import nchw as _nchw
    from lst_jax.bench.torch_procedures import torch_traversal

    f = make_torch().to(dtype)
    t = lambda a: _nchw(a).to(dtype)
    _, accepted, snaps = torch_traversal(
        f, t(xs), t(xt), torch.from_numpy(np.asarray(ys, np.int64)),
        step_size=config.step_size, iters=max(iters), pthresh=config.pthresh,
        adv_pert=config.adv_pert, adv_step_size=config.adv_step_size, snapshots=tuple(iters))
    return ({k: v.double().numpy().transpose(0, 2, 3, 1) for k, v in snaps.items()},
            accepted.numpy())


def compare(x32, acc32, x64, acc64, valid, iters) -> dict:
    """Per iteration count k: the per-pair `max |x32_k - x64_k|` over pixels, summarised.

    An acceptance decision that flips (a candidate within round-off of the `pthresh`
    boundary) moves a pair by a whole step, so drift is summarised over the pairs whose
    decisions up to k all equal float64's, and the flipped pairs are counted.

    Returns:
        {str(k): {"max": over unflipped valid pairs, "mean", "median": over all valid pairs,
        "flipped": number of valid pairs with a flipped decision, "per_pair": (B,) list,
        "same_decisions": (B,) list of bool}}.
    """
    out = {}
    for k in iters:
        d = np.abs(x32[k] - x64[k]).reshape(len(valid), -1).max(axis=1)
        same = np.all(acc32[:k] == acc64[:k], axis=0)
        keep = valid & same
        out[str(k)] = {"max": float(d[keep].max()) if keep.any() else float("nan"),
                       "mean": float(np.mean(d[valid])),
                       "median": float(np.median(d[valid])),
                       "flipped": int(np.sum(valid & ~same)),
                       "per_pair": d.tolist(), "same_decisions": same.tolist()}
    return out


def step_errors(model_fn, params, states, labels, valid, iters) -> dict:
    """The per-step error, free of the trajectories' chaotic amplification: at the float64
    run's iterate x_k rounded to float32, the float32 input gradient (float32 weights) with
    each arithmetic against the float64 gradient (float64 weights, exact cotangent) at the same
    rounded input; per pair `||g_f32 - g_f64|| / ||g_f64||` (L2 over pixels).

    Shape:
        states: {k: (B, H, W, C) float64}; labels, valid: (B,) -> {run: {str(k): {"max",
        "mean", "median" over the valid pairs, "per_pair": (B,) list}}}.
    """
    from lst_jax.traversal.run import _as_float64
    from lst_jax.traversal.step import forward_backward

    fb = jax.jit(forward_backward, static_argnums=0, static_argnames="reference_numerics")
    grad = lambda f, p, x, y, ref: fb(f, p, x, y, reference_numerics=ref)[1]
    out = {"lst_jax": {}, "lst_jax_reference_numerics": {}}
    for k in iters:
        x32 = jnp.asarray(states[k], jnp.float32)
        with jax.enable_x64(True):
            # the ground truth at the very input the float32 gradient sees
            g64 = np.asarray(grad(model_fn, _as_float64(params),
                                  jnp.asarray(np.asarray(x32), jnp.float64),
                                  jnp.asarray(labels), False))
        norm = np.linalg.norm(g64.reshape(len(valid), -1), axis=1)
        for run, ref in (("lst_jax", False), ("lst_jax_reference_numerics", True)):
            g32 = np.asarray(grad(model_fn, params, x32, jnp.asarray(labels), ref), np.float64)
            e = np.linalg.norm((g32 - g64).reshape(len(valid), -1), axis=1) / np.maximum(
                norm, np.finfo(np.float64).tiny)
            out[run][str(k)] = {"max": float(e[valid].max()), "mean": float(e[valid].mean()),
                                "median": float(np.median(e[valid])), "per_pair": e.tolist()}
    return out


def measure(name: str, *, pairs: int = 32, iters=ITERS, logit_scale: float = 6.0,
            with_torch: bool = True) -> dict:
    """float32-vs-float64 image differences of one model (see the module docstring).

    Returns:
        {"model", "pairs", "valid", "saturated" (valid sources with 1 - p_y < 2^-24), "runs":
        {run: `compare(...)`}, "step_errors": `step_errors(...)`, "valid_mask",
        "torch64_vs_jax64": {str(k): max over pairs}}.
    """
    model_fn, params, xs, xt, ys, make_torch = make_case(name, pairs, logit_scale)
    cfg = preset("paper", noise=0.0)
    x64, acc64, valid, rest = jax_snapshots(model_fn, params, xs, xt, ys, cfg, iters,
                                            "float64")
    out = {"model": name, "pairs": pairs, "valid": int(valid.sum()),
           "saturated": int(np.sum((rest < 2.0 ** -24) & valid)), "runs": {},
           "valid_mask": valid.tolist()}
    for run, c in (("lst_jax", cfg), ("lst_jax_reference_numerics",
                                      cfg.replace(reference_numerics=True))):
        x32, acc32, _, _ = jax_snapshots(model_fn, params, xs, xt, ys, c, iters, "float32")
        out["runs"][run] = compare(x32, acc32, x64, acc64, valid, iters)
    out["step_errors"] = step_errors(model_fn, params, x64, ys, valid, iters)
    if with_torch:
        import torch

        t64, tacc64 = torch_snapshots(make_torch, xs, xt, ys, cfg, iters, torch.float64)
        t32, tacc32 = torch_snapshots(make_torch, xs, xt, ys, cfg, iters, torch.float32)
        out["runs"]["pytorch"] = compare(t32, tacc32, t64, tacc64, valid, iters)
        out["torch64_vs_jax64"] = {
            str(k): float(np.abs(t64[k] - x64[k])[valid].max()) for k in iters}
        out["torch64_same_decisions_as_jax64"] = bool(np.array_equal(tacc64, acc64))
        # the same arithmetic in both (where 1 - p_y < 1e-16 even float64 loses the
        # true-class term of softmax - onehot): two independent float64 implementations
        r64, racc64, _, _ = jax_snapshots(model_fn, params, xs, xt, ys,
                                          cfg.replace(reference_numerics=True), iters, "float64")
        out["torch64_vs_jax64_reference_numerics"] = {
            str(k): float(np.abs(t64[k] - r64[k])[valid].max()) for k in iters}
        out["torch64_same_decisions_as_jax64_reference_numerics"] = bool(
            np.array_equal(tacc64, racc64))
    return out


def markdown_report(results) -> str:
    labels = {"lst_jax": "lst_jax float32", "lst_jax_reference_numerics":
              "lst_jax float32, `reference_numerics=True`", "pytorch": "PyTorch loop float32"}
    lines = []
    for r in results:
        iters = list(r["runs"]["lst_jax"])
        rows = [[labels[run]] + [f"{v[k]['max']:.1e} / {v[k]['mean']:.1e} / "
                                 f"{v[k]['median']:.1e} / {v[k]['flipped']}" for k in iters]
                for run, v in r["runs"].items()]
        lines.append(f"**{r['model']}** ({r['valid']} valid pairs, {r['saturated']} with a "
                     "saturated source, 1 - p_y < 2^-24): max |x_f32 - x_f64| over pixels, "
                     "max over the pairs without a flipped acceptance decision / mean / median "
                     "over all pairs / pairs with a flipped decision\n")
        lines.append(markdown_table(["run"] + [f"{k} iterations" for k in iters], rows))
        rows = [[labels[run]] + [f"{v[k]['max']:.1e} / {v[k]['mean']:.1e} / "
                                 f"{v[k]['median']:.1e}" for k in iters]
                for run, v in r["step_errors"].items()]
        lines.append("\nPer step: at the float64 iterate x_k, ||g_f32 - g_f64|| / ||g_f64|| of "
                     "the input gradient, max / mean / median over the valid pairs\n")
        lines.append(markdown_table(["run"] + [f"x_{k}" for k in iters], rows))
        if "torch64_vs_jax64" in r:
            fmt = lambda d: ", ".join(f"{v:.1e} ({k} it.)" for k, v in d.items())
            lines.append("\nPyTorch float64 vs lst_jax float64: "
                         + fmt(r["torch64_vs_jax64"]) + "; vs lst_jax float64 with "
                         "`reference_numerics=True` (the PyTorch loop's arithmetic): "
                         + fmt(r["torch64_vs_jax64_reference_numerics"]) + "\n")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    p.add_argument("--pairs", type=int, default=32)
    p.add_argument("--iters", type=int, nargs="+", default=list(ITERS))
    p.add_argument("--retrain-small-cnn", action="store_true",
                   help=f"train the small CNN again and overwrite {SMALL_CNN.relative_to(ROOT)}")
    p.add_argument("--logit-scale", type=float, default=6.0,
                   help="last-layer scale of the small CNN (saturates its softmax)")
    p.add_argument("--no-torch", action="store_true", help="skip the PyTorch loop")
    p.add_argument("--out", default="runs/numerics")
    args = p.parse_args(argv)
    try:
        import torch  # noqa: F401

        with_torch = not args.no_torch
    except ImportError:
        print("torch not installed: PyTorch columns skipped", file=sys.stderr)
        with_torch = False
    if args.retrain_small_cnn:
        print(f"wrote {save_small_cnn()}")
    results = [measure(m, pairs=args.pairs, iters=tuple(sorted(args.iters)),
                       logit_scale=args.logit_scale, with_torch=with_torch)
               for m in args.models]
    run = RunDir(args.out)
    run.write_json("numerics.json", results)
    md = markdown_report(results)
    (run.root / "numerics.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
