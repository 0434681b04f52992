"""The connectivity computations on a device mesh (4 fake CPU devices in a child process):
path losses (points split by `ShardedEvaluator`) and the batched optimiser with `mesh=` give
the one-device numbers; row counts are not multiples of the device count."""

from subproc import run_python

CHILD = r"""
import jax, numpy as np
from subproc import fast_tiny_cnn
from lst_jax import parallel as par
from lst_jax.connectivity import AttackConfig, optimization_attack, path_losses

model_fn, params = fast_tiny_cnn(0, (8, 8, 3), logit_scale=10.0)
rng = np.random.default_rng(0)
a, c = rng.uniform(size=(2, 3, 8, 8, 3)).astype(np.float32)
y = np.array([1, 4, 7])
mesh = par.data_mesh()
one = path_losses(model_fn, params, a, c, y, num_points=21)
sh = path_losses(model_fn, params, a, c, y, num_points=21, batch_size=4, mesh=mesh)
cfg = AttackConfig(lr=0.05, steps=20, min_step=2)
stop = np.array([1.0, 0.5, 2.0], np.float32)
r1 = jax.device_get(optimization_attack(model_fn, params, a, y, stop_loss=stop, config=cfg))
r2 = jax.device_get(optimization_attack(model_fn, params, a, y, stop_loss=stop, config=cfg,
                                        mesh=mesh))
emit({"devices": jax.device_count(), "path": float(np.abs(one - sh).max()),
      "x": float(np.abs(r1.x - r2.x).max()), "steps": [r1.steps.tolist(), r2.steps.tolist()],
      "ce": float(np.abs(r1.ce - r2.ce).max())})
"""


def test_path_losses_and_optimiser_on_a_mesh_equal_one_device():
    out = run_python(CHILD, devices=4)
    assert out["devices"] == 4
    assert out["path"] <= 1e-5
    assert out["steps"][0] == out["steps"][1]
    assert out["x"] <= 1e-5 and out["ce"] <= 1e-5
