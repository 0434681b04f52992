"""The committed digits checkpoints: they load, and their metadata claims hold."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lst_jax.attacks import PGDAttackConfig, pgd_linf
from lst_jax.data.digits import load_digits32
from lst_jax.models import REGISTRY, load_model
from lst_jax.models.checkpoint import tree_digest
from lst_jax.models.registry import DIGITS_LADDER
from lst_jax.robustness import pgd_accuracy

DIGITS_MODELS = sorted(n for n, s in REGISTRY.items() if s.dataset == "digits")


@functools.lru_cache(maxsize=None)
def _model(name):
    return load_model(name)


def _accuracy(m, x, y):
    pred = jax.jit(lambda p, x: jnp.argmax(m.model_fn(p, x), -1))(m.params, jnp.asarray(x))
    return float(np.mean(np.asarray(pred) == y))


@pytest.mark.parametrize("name", DIGITS_MODELS)
def test_checkpoint_loads_and_matches_its_metadata(name):
    m = _model(name)
    x, y = load_digits32("test")
    acc = _accuracy(m, x, y)
    assert acc == pytest.approx(m.metadata["test_accuracy"], abs=1e-9)
    assert m.metadata["digest"] == tree_digest(m.params)
    assert m.metadata["arch"] == m.spec.arch
    assert m.metadata["command"].startswith("python experiments/train_digits.py")
    if name.endswith("-normal"):
        assert acc >= 0.95


@pytest.mark.parametrize("arch", sorted({REGISTRY[n].arch for n in DIGITS_MODELS}))
def test_adversarial_training_gives_robustness(arch):
    """PGD on 96 test digits: the AT model keeps most predictions, the normal one does not."""
    x, y = load_digits32("test")
    x, y = jnp.asarray(x[:96]), jnp.asarray(y[:96])
    robust = {}
    for kind in ("normal", "linf"):
        m = _model(f"{arch}-{kind}")
        pgd = m.metadata["pgd_eval"]
        attack = jax.jit(lambda p, x, y, k: pgd_linf(m.model_fn, p, x, y, key=k,
                                                     config=PGDAttackConfig(**pgd)))
        xa = attack(m.params, x, y, jax.random.key(0))
        assert float(jnp.max(jnp.abs(xa - x))) <= pgd["eps"] + 1e-6
        robust[kind] = _accuracy(m, xa, np.asarray(y))
    assert robust["linf"] >= 0.6
    assert robust["normal"] <= 0.3


def test_robustness_ladder():
    """The ladder's training radii grow and so does its recorded PGD-20 robustness at 8/255
    and 16/255; one cell of the records is re-measured exactly (same key, same attack)."""
    metas = [_model(n).metadata for n in DIGITS_LADDER]
    eps = [(m["train_attack"] or {}).get("eps", 0.0) for m in metas]
    assert eps == sorted(eps) and len(set(eps)) == len(eps)
    for radius in ("8/255", "16/255"):
        robust = [m["pgd_ladder"][radius] for m in metas]
        assert robust == sorted(robust), (radius, robust)
    assert all(m["test_accuracy"] >= 0.98 for m in metas)
    m = _model("digits_resnet-linf4")
    x, y = load_digits32("test")
    got = pgd_accuracy(m.model_fn, m.params, x, y, key=jax.random.key(m.metadata["seed"] + 1),
                       config=PGDAttackConfig(eps=16 / 255, steps=20))
    # the same count of robust images (the result is float32, the record float64)
    assert round(float(got) * len(x)) == round(m.metadata["pgd_ladder"]["16/255"] * len(x))
