"""Per-model caches (shape inference, memory plans, output checks) hold models weakly and a
bounded number of entries: they neither grow without limit nor keep models alive."""

import gc

import jax.numpy as jnp
import numpy as np
import pytest

from lst_jax.utils import checks
from lst_jax.utils.cache import ModelCache


class _Model:
    def __init__(self, k):
        self.k = k

    def __call__(self, params, x):
        return jnp.zeros((x.shape[0], self.k)) + params["b"][None]


def test_entries_are_bounded_and_die_with_the_model():
    cache = ModelCache(maxsize=3)
    m = _Model(4)
    for i in range(10):
        cache.put(m, i, i * i)
    assert len(cache) == 3 and cache.get(m, 9) == 81 and cache.get(m, 0) is None
    del m
    gc.collect()
    assert len(cache) == 0
    cache.put(lambda p, x: x, "unhashable key is skipped", 1)   # a dying lambda: no error
    cache.put(_Model(2), [1, 2], 1)                             # unhashable key: not cached


def test_num_classes_of_one_implementation_weakly_cached():
    m = _Model(7)
    params = {"b": np.zeros(7, np.float32)}
    assert checks.num_classes_of(m, params, (8, 8, 3)) == 7
    assert len(checks._NUM_CLASSES) >= 1
    n = len(checks._NUM_CLASSES)
    del m
    gc.collect()
    assert len(checks._NUM_CLASSES) == n - 1
    with pytest.raises(ValueError, match="must return logits of shape"):
        checks.num_classes_of(lambda p, x: jnp.zeros(3), params, (8, 8, 3))
    from lst_jax.spectral import values
    from lst_jax.traversal import run
    assert run.num_classes_of is checks.num_classes_of is values.num_classes_of
