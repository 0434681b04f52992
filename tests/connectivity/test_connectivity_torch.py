"""The connectivity optimisers against independent PyTorch loops written from the spec
(the authors' `bypass_barrier` and `feature_visualization`): same weights, same start."""

import numpy as np
import pytest

from conftest import HAVE_TORCH
from lst_jax.connectivity import BypassConfig, FVOConfig, bypass_barrier, feature_visualization
from lst_jax.connectivity.paths import path_point
from subproc import fast_tiny_cnn

pytestmark = pytest.mark.skipif(not HAVE_TORCH, reason="needs the optional torch extra")

SHAPE = (8, 8, 3)


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny models: OpenMP across 2 threads of a busy machine is ~6x slower than one."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _setup():
    from torch_reference import torch_tiny_cnn

    model, params = fast_tiny_cnn(0, SHAPE, 10, logit_scale=10.0)
    return model, params, torch_tiny_cnn(params)


def _nchw(a):
    import torch

    return torch.from_numpy(np.ascontiguousarray(np.asarray(a, np.float32).transpose(2, 0, 1)))


def _hf(t):
    dw = (t[..., :, 1:] - t[..., :, :-1]).abs().sum()
    return dw + (t[..., 1:, :] - t[..., :-1, :]).abs().sum()


def torch_bypass(net, a, c, b, target, lr, iterations, lam_mse, lam_hf):
    """Spec section 3: projected gradient (component along C - A removed), then Adam."""
    import torch
    import torch.nn.functional as F

    anchor = b.clone()
    v = (c - a).flatten()
    x = anchor.clone().unsqueeze(0).requires_grad_(True)
    opt = torch.optim.Adam([x], lr=lr)
    y = torch.tensor([target])
    for _ in range(iterations):
        opt.zero_grad()
        total = (F.cross_entropy(net(x), y) + lam_mse * torch.mean((x[0] - anchor) ** 2)
                 + lam_hf * _hf(x[0] - anchor))
        total.backward()
        with torch.no_grad():
            g = x.grad.flatten()
            x.grad -= (torch.dot(g, v) / torch.dot(v, v)) * v.view_as(x.grad)
        opt.step()
    return x.detach()[0]


def torch_fvo(net, x0, target, lr, iterations, threshold, wd, lam_hf):
    """Spec section 5: coupled weight decay (torch Adam weight_decay), post-step CE, keep the
    best, stop below the threshold."""
    import torch
    import torch.nn.functional as F

    x = x0.clone().unsqueeze(0).requires_grad_(True)
    opt = torch.optim.Adam([x], lr=lr, weight_decay=wd)
    y = torch.tensor([target])
    best, best_loss, trace = None, float("inf"), []
    for _ in range(iterations):
        opt.zero_grad()
        ce = F.cross_entropy(net(x), y)
        (ce + lam_hf * _hf(x) if lam_hf > 0 else ce).backward()
        opt.step()
        with torch.no_grad():
            post = F.cross_entropy(net(x), y).item()
        trace.append(post)
        if post < best_loss:
            best, best_loss = x.detach().clone(), post
        if post < threshold:
            break
    return best[0], best_loss, trace


def test_faithful_bypass_matches_torch_loop():
    model, params, net = _setup()
    rng = np.random.default_rng(0)
    a, c = rng.uniform(size=(2, 2) + SHAPE).astype(np.float32)
    labels = np.array([3, 8])
    b = path_point(a, c, np.array([4, 6]), 11)
    cfg = BypassConfig(lr=0.01, steps=100, tv_weight=1e-7)
    res = bypass_barrier(model, params, a, c, b, labels, config=cfg)
    for i in range(2):
        ref = torch_bypass(net, _nchw(a[i]), _nchw(c[i]), _nchw(b[i]), int(labels[i]), 0.01, 100,
                           0.1, 1e-7).numpy().transpose(1, 2, 0)
        assert np.abs(ref - b[i]).max() > 0.3                 # it moved
        np.testing.assert_allclose(res.x[i], ref, atol=1e-4)


def test_fvo_coupled_weight_decay_matches_torch_adam():
    model, params, net = _setup()
    x0 = 0.01 * np.random.default_rng(1).normal(size=(2,) + SHAPE).astype(np.float32)
    lr, wd, tv = 0.05, 0.05, 1e-4      # a large weight decay: coupled vs decoupled differ
    refs = [torch_fvo(net, _nchw(x0[i]), 6, lr, 100, 0.0, wd, tv) for i in range(2)]
    cfg = FVOConfig(lr=lr, steps=100, weight_decay=wd, threshold=0.0, tv_weight=tv)
    fvo = feature_visualization(model, params, x0, np.array([6, 6]), config=cfg)
    for i in range(2):
        np.testing.assert_allclose(fvo.x[i], refs[i][0].numpy().transpose(1, 2, 0), atol=1e-4)
        np.testing.assert_allclose(fvo.ce[i], refs[i][1], rtol=1e-4, atol=1e-6)
        assert fvo.steps[i] == 100 and not fvo.stopped[i]
    # the CE is not monotone (weight decay pulls back): the kept iterate is not the last
    assert np.argmin(refs[0][2]) < 99
    # early stop: a threshold between two post-update losses of row 0 (first drop > 1e-3
    # after update 15), so the torch loop stops after update k + 1
    trace = np.asarray(refs[0][2])
    k = next(i for i in range(15, 100) if trace[i] < trace[i - 1] - 1e-3)
    thr = float(0.5 * (trace[k - 1] + trace[k]))
    ref_best, ref_loss, ref_trace = torch_fvo(net, _nchw(x0[0]), 6, lr, 100, thr, wd, tv)
    early = feature_visualization(model, params, x0, np.array([6, 6]),
                                  config=cfg.replace(threshold=thr))
    assert len(ref_trace) == k + 1 and early.steps[0] == k + 1 and early.stopped[0]
    np.testing.assert_allclose(early.x[0], ref_best.numpy().transpose(1, 2, 0), atol=1e-4)
    assert early.steps[1] != k + 1      # row 1 follows its own rule in the same batch
