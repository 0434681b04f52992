"""I-ASIDE against the authors' procedure re-implemented in PyTorch from the spec
(tests/torch_iaside.py: the reference's mask loop, per-batch FFT filter, global min-max over
each batch of 10, abs, black empty coalition, log(softmax), the reference's Shapley loop), on
a small CNN with the same weights, for both fills that are deterministic given the pairing.
"""

import jax
import numpy as np
import pytest

from conftest import requires_torch
from lst_jax.spectral import SpectralConfig, spectral_importance
from lst_jax.spectral.sampling import group_layout, sample_block

pytestmark = requires_torch

M, K, SIDE = 5, 20, 16


def _torch_twin(params):
    import torch
    from torch import nn

    class TorchTinyCNN(nn.Module):          # the twin of subproc.TinyCNN
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
            self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
            self.fc = nn.Linear(16, 10)

        def forward(self, x):
            x = torch.relu(self.conv1(x))
            x = nn.functional.avg_pool2d(x, 2)
            x = torch.relu(self.conv2(x))
            return self.fc(x.mean(dim=(2, 3)))

    m = TorchTinyCNN().eval()
    p = jax.tree.map(lambda a: np.array(a, np.float32), params["params"])
    with torch.no_grad():
        for name in ("conv1", "conv2"):
            getattr(m, name).weight.copy_(torch.from_numpy(
                p[name]["kernel"].transpose(3, 2, 0, 1).copy()))
            getattr(m, name).bias.copy_(torch.from_numpy(p[name]["bias"]))
        m.fc.weight.copy_(torch.from_numpy(p["fc"]["kernel"].T.copy()))
        m.fc.bias.copy_(torch.from_numpy(p["fc"]["bias"]))
    return m


@pytest.mark.parametrize("fill", ["zero", "random"])
def test_matches_the_reference_procedure(fill):
    from subproc import fast_tiny_cnn
    from torch_iaside import reference_distribution, reference_shapley, reference_values

    model_fn, params = fast_tiny_cnn(1, (SIDE, SIDE, 3), logit_scale=20.0)
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(K, SIDE, SIDE, 3)).astype(np.float32)
    y = np.asarray(jax.jit(model_fn)(params, x)).argmax(-1).astype(np.int32)
    cfg = SpectralConfig(num_bands=M, fill=fill)          # group normalisation, abs, CRN
    res = spectral_importance(model_fn, params, x, y, cfg, images_per_call=30)

    # The pairing is an input of the reference: the random-fill permutation of each batch.
    layout = group_layout(K, cfg.group_size)
    partners = sample_block(np.ones((1, M), bool), layout, num_images=K, resample=False,
                            seed=cfg.seed).partners[0]
    perms = [partners[j] - j * cfg.group_size for j in range(layout.num_groups)]
    assert all(sorted(p) == list(range(cfg.group_size)) for p in perms)
    ref_v = reference_values(_torch_twin(params), x, y, M, fill, perms)
    np.testing.assert_allclose(res.values, ref_v, atol=1e-5, rtol=0)
    ref_psi = reference_shapley(ref_v, M)
    np.testing.assert_allclose(res.shapley, ref_psi, atol=1e-5, rtol=0)
    np.testing.assert_allclose(res.distribution, reference_distribution(ref_psi), atol=1e-5,
                               rtol=0)
    assert np.ptp(ref_psi) > 0.05                          # a non-degenerate game
