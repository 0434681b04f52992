"""I-ASIDE on 8 fake CPU devices (one child process): the same numbers as one device (1e-6)
for every fill, with common random numbers and with resampling, for K not a multiple of the
group size or of the device count, whatever the chunking (batch size, memory budget,
block size); the second call compiles nothing.
"""

from subproc import run_python

CHILD = r"""
import jax, numpy as np
from subproc import fast_tiny_cnn
from lst_jax import parallel as par
from lst_jax.parallel import sharded as sh_mod
from lst_jax.spectral import (SpectralConfig, all_coalitions, coalition_log_probs,
                              spectral_importance)

model_fn, params = fast_tiny_cnn(0, (16, 16, 3), logit_scale=10.0)
rng = np.random.default_rng(0)
x = rng.uniform(size=(23, 16, 16, 3)).astype(np.float32)       # 3 groups, the last ragged
y = rng.integers(0, 10, size=23).astype(np.int32)
one = par.data_mesh(jax.devices()[:1])
eight = par.data_mesh()
bits = all_coalitions(4)
key = jax.random.key(42)
out = {"devices": jax.device_count()}
for fill in ("random", "gaussian", "zero"):
    for resample in (False, True):
        cfg = SpectralConfig(num_bands=4, fill=fill, resample=resample,
                             k=17 if resample else None)
        ref = coalition_log_probs(model_fn, params, x, y, bits, key=key, config=cfg)  # 1 device
        got = coalition_log_probs(model_fn, params, x, y, bits, key=key, config=cfg,
                                  mesh=eight, batch_size=5, block_size=5)
        c0 = sh_mod._apply._cache_size()
        again = coalition_log_probs(model_fn, params, x, y, bits, key=key, config=cfg,
                                    mesh=eight, batch_size=5, block_size=5)
        out[f"{fill}_{resample}"] = {
            "diff": float(np.abs(ref - got).max()), "repeat": float(np.abs(got - again).max()),
            "compiles_second": sh_mod._apply._cache_size() - c0, "shape": list(got.shape)}
cfg = SpectralConfig(num_bands=4)
a = spectral_importance(model_fn, params, x, y, key=key, config=cfg, mesh=one)
b = spectral_importance(model_fn, params, x, y, key=key, config=cfg, mesh=eight,
                        memory_budget="64MiB")
out["importance"] = {"values": float(np.abs(a.values - b.values).max()),
                     "shapley": float(np.abs(a.shapley - b.shapley).max()),
                     "distribution": float(np.abs(a.distribution - b.distribution).max()),
                     "score": float(abs(a.score - b.score))}
emit(out)
"""


def test_eight_devices_equal_one():
    out = run_python(CHILD, devices=8)
    assert out["devices"] == 8
    for fill in ("random", "gaussian", "zero"):
        for resample in (False, True):
            r = out[f"{fill}_{resample}"]
            assert r["shape"] == [16, 17 if resample else 23]
            assert r["diff"] <= 1e-6, (fill, resample, r)
            assert r["repeat"] == 0.0 and r["compiles_second"] == 0, (fill, resample, r)
    assert max(out["importance"].values()) <= 1e-6, out["importance"]
