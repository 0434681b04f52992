"""The authors' procedures in PyTorch, the PyTorch side of `lst-jax bench` (imported only where
torch is used; every function runs on the device of the model and inputs it is given):

- `torch_traversal`: the reference LST loop (spec/lst.md section 1.5);
- `torch_connectivity`: the authors' `create_adversarial` + `linear_interpolation` +
  `compute_losses`, one pair at a time;
- `torch_hull_loop`: the reference's Table-2 loop, one batch of grid probes per triangle.
The I-ASIDE procedure is `lst_jax.bench.torch_iaside`.
"""

from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F


def nchw(a, device=None) -> torch.Tensor:
    """NHWC numpy -> NCHW float tensor on `device`."""
    t = torch.from_numpy(np.ascontiguousarray(np.asarray(a).transpose(0, 3, 1, 2)))
    return t if device is None else t.to(device)


def synchronize(device) -> None:
    """Waits for the device's queued kernels (CUDA); no-op on the CPU."""
    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


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
        loss = F.cross_entropy(f(xg), ys, reduction="sum")
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


def torch_connectivity(net, a, k, c, points: int, *, steps: int = 512, min_step: int = 33,
                       lr: float = 5e-3, mse_weight: float = 0.1, tv_weight: float = 1e-8,
                       device=None) -> dict:
    """The authors' loop, one pair at a time: the targeted Adam attack from K toward class c
    (early stop at 0-based update `it >= min_step` once its pre-update CE is below L(A)), then the
    CE
    of c at the `points` points of A -> K' in batches of 64, under `no_grad`.

    Shape:
        a, k: (B, H, W, C) numpy in the model's input space; c: (B,) int.
        Returns {"steps": (B,), "max": (B,) barrier max, "attack_s", "path_s"}.
    """
    def hf(t):
        return ((t[..., :, 1:] - t[..., :, :-1]).abs().sum()
                + (t[..., 1:, :] - t[..., :-1, :]).abs().sum())

    steps_taken, maxes = [], []
    t_attack = t_path = 0.0
    for i in range(len(a)):
        synchronize(device)
        t0 = time.perf_counter()
        xa = nchw(a[i:i + 1], device)
        target = torch.tensor([int(c[i])], device=device)
        with torch.no_grad():
            loss1 = F.cross_entropy(net(xa), target).item()
        carrier = nchw(k[i:i + 1], device)
        x = carrier.clone().requires_grad_(True)
        opt = torch.optim.Adam([x], lr=lr)
        n = 0
        for it in range(steps):
            opt.zero_grad()
            ce = F.cross_entropy(net(x), target)
            total = ce + mse_weight * torch.mean((x - carrier) ** 2) + tv_weight * hf(x - carrier)
            total.backward()
            opt.step()
            n += 1
            if it >= min_step and ce.item() < loss1:   # the authors: `i > 32`
                break
        synchronize(device)
        t1 = time.perf_counter()
        with torch.no_grad():
            alphas = torch.linspace(0, 1, points, device=device)
            pts = torch.stack([(1 - al) * xa[0] + al * x.detach()[0] for al in alphas])
            losses = []
            for s in range(0, points, 64):
                batch = pts[s:s + 64]
                losses.append(F.cross_entropy(net(batch), target.expand(len(batch)),
                                              reduction="none"))
            maxes.append(float(torch.cat(losses).max()))
        t_path += time.perf_counter() - t1
        t_attack += t1 - t0
        steps_taken.append(n)
    return {"steps": np.asarray(steps_taken), "max": np.asarray(maxes), "attack_s": t_attack,
            "path_s": t_path}


def torch_hull_loop(net, src, outs, labels, weights, pairs, device=None) -> np.ndarray:
    """The reference's loop: per source, per triangle, one batch of the grid's probes.

    Shape:
        src: (S, H, W, C); outs: (R, S, H, W, C); weights: (P, 3) barycentric grid;
        pairs: T round pairs -> (S, T, P) source-class confidences.
    """
    w = torch.from_numpy(np.asarray(weights, np.float32)).to(device)
    src_t = torch.from_numpy(np.ascontiguousarray(src)).permute(0, 3, 1, 2).to(device)
    outs_t = torch.from_numpy(np.ascontiguousarray(outs)).permute(0, 1, 4, 2, 3).to(device)
    conf = np.zeros((len(src), len(pairs), len(w)), np.float32)
    with torch.no_grad():
        for i in range(len(src)):
            for t, (r1, r2) in enumerate(pairs):
                probes = (w[:, 0, None, None, None] * src_t[i] + w[:, 1, None, None, None]
                          * outs_t[r1, i] + w[:, 2, None, None, None] * outs_t[r2, i])
                p = torch.softmax(net(probes), dim=-1)
                conf[i, t] = p[:, int(labels[i])].cpu().numpy()
    return conf
