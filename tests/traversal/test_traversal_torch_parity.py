"""LST against an independent PyTorch loop written from the spec (reference semantics:
two forward passes and one backward per iteration, CE with reduction='sum')."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import HAVE_TORCH, tiny_cnn
from lst_jax.traversal import LSTConfig, level_set_traversal

pytestmark = pytest.mark.skipif(not HAVE_TORCH, reason="needs the optional torch extra")

SHAPE = (16, 16, 3)


def torch_lst(f, xs, xt, ys, yt, eta, iters, delta, adv_pert, eps):
    """Straightforward reference loop (spec section 1.5), zero start noise. NCHW tensors."""
    import torch

    with torch.no_grad():
        p0 = torch.softmax(f(xs.clamp(0, 1)), -1).gather(1, ys[:, None])[:, 0]
    x = xs.clone()
    a = torch.zeros_like(x)
    confs, tconfs, oks, dists = [], [], [], []
    for _ in range(iters):
        x_req = x.clone().requires_grad_(True)
        loss = torch.nn.functional.cross_entropy(f(x_req), ys, reduction="sum")
        (g,) = torch.autograd.grad(loss, x_req)
        v = xt - x
        gf, vf = g.flatten(1), v.flatten(1)
        coef = (gf * vf).sum(1) / (gf * gf).sum(1)
        v_perp = v - coef[:, None, None, None] * g
        a = torch.clamp(a + (eps / 2) * g, -eps, eps)
        step = x + eta * v_perp - (a if adv_pert else 0.0)
        x_new = step.clamp(0, 1)
        with torch.no_grad():
            p_new = torch.softmax(f(x_new), -1)
        ok = (p0 - p_new.gather(1, ys[:, None])[:, 0]) < delta
        m = ok[:, None, None, None].float()
        x = x * (1 - m) + x_new * m
        with torch.no_grad():
            p_x = torch.softmax(f(x), -1)
        confs.append(p_x.gather(1, ys[:, None])[:, 0])
        tconfs.append(p_x.gather(1, yt[:, None])[:, 0])
        oks.append(ok)
        dists.append((x - xt).flatten(1).norm(dim=1))
    stack = lambda t: torch.stack(t).detach().numpy()
    return x.detach(), stack(confs), stack(tconfs), stack(oks), stack(dists)


@pytest.mark.parametrize("adv_pert,pthresh", [(False, 0.05), (True, 0.0)])
def test_matches_independent_pytorch_loop(adv_pert, pthresh):
    import torch

    from torch_reference import torch_tiny_cnn

    torch.set_num_threads(2)
    model_fn, params = tiny_cnn(0, SHAPE, logit_scale=30.0)
    k = jax.random.split(jax.random.key(11), 2)
    xs = jax.random.uniform(k[0], (6,) + SHAPE)
    xt = jax.random.uniform(k[1], (6,) + SHAPE)
    ys = jnp.argmax(model_fn(params, xs), -1).astype(jnp.int32)
    yt = jnp.argmax(model_fn(params, xt), -1).astype(jnp.int32)
    cfg = LSTConfig(step_size=0.05, iters=50, pthresh=pthresh, adv_pert=adv_pert,
                    adv_step_size=2e-3, noise=0.0)
    res = level_set_traversal(model_fn, params, xs, xt, ys, key=jax.random.key(0), config=cfg,
                              target_labels=yt)


    f = torch_tiny_cnn(params)
    nchw = lambda a: torch.from_numpy(np.asarray(a).transpose(0, 3, 1, 2).copy())
    lng = lambda a: torch.from_numpy(np.asarray(a).astype(np.int64))
    # The twin reproduces the logits first (a weight-mapping error would show here).
    with torch.no_grad():
        np.testing.assert_allclose(f(nchw(xs)).numpy(), np.asarray(model_fn(params, xs)),
                                   atol=1e-5)
    x, conf, tconf, ok, dist = torch_lst(f, nchw(xs), nchw(xt), lng(ys), lng(yt), 0.05, 50,
                                         pthresh, adv_pert, 2e-3)
    np.testing.assert_array_equal(np.asarray(res.record.accepted), ok)
    np.testing.assert_allclose(np.asarray(res.record.conf_source), conf, atol=1e-4)
    np.testing.assert_allclose(np.asarray(res.record.conf_target), tconf, atol=1e-4)
    np.testing.assert_allclose(np.asarray(res.record.dist_target), dist, atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(np.asarray(res.images), x.numpy().transpose(0, 2, 3, 1),
                               atol=1e-4)
    if pthresh == 0.0:
        assert 0 < ok.mean() < 1   # rejections really happened
