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
from lst_jax.spectral.sampling import crn_partners, group_layout, numpy_seed

pytestmark = requires_torch

M, K, SIDE = 5, 20, 16


@pytest.mark.parametrize("fill", ["zero", "random"])
def test_matches_the_reference_procedure(fill):
    from subproc import fast_tiny_cnn
    from torch_iaside import reference_distribution, reference_shapley, reference_values
    from torch_reference import torch_tiny_cnn

    model_fn, params = fast_tiny_cnn(1, (SIDE, SIDE, 3), logit_scale=20.0)
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(K, SIDE, SIDE, 3)).astype(np.float32)
    y = np.asarray(jax.jit(model_fn)(params, x)).argmax(-1).astype(np.int32)
    cfg = SpectralConfig(num_bands=M, fill=fill)          # group normalisation, abs, CRN
    key = jax.random.key(42)
    res = spectral_importance(model_fn, params, x, y, key=key, config=cfg, batch_size=30)

    # The pairing is an input of the reference: the random-fill permutation of each batch.
    layout = group_layout(K, cfg.group_size)
    partners = crn_partners(layout, numpy_seed(key))
    perms = [partners[j] - j * cfg.group_size for j in range(layout.num_groups)]
    assert all(sorted(p) == list(range(cfg.group_size)) for p in perms)
    ref_v = reference_values(torch_tiny_cnn(params), x, y, M, fill, perms)
    np.testing.assert_allclose(res.values, ref_v, atol=1e-5, rtol=0)
    ref_psi = reference_shapley(ref_v, M)
    np.testing.assert_allclose(res.shapley, ref_psi, atol=1e-5, rtol=0)
    np.testing.assert_allclose(res.distribution, reference_distribution(ref_psi), atol=1e-5,
                               rtol=0)
    assert np.ptp(ref_psi) > 0.05                          # a non-degenerate game
