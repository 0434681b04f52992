"""The digits ViT as a configuration of the zoo's ViT, and the migration of its checkpoints.

References:
- `LegacyDigitsViT` below is the module the shipped digits ViT checkpoints were trained with
  (lst_jax/models/digits.py up to commit 0e29f72: flax `MultiHeadDotProductAttention` blocks
  with separate q/k/v projections), kept here only as the reference for the migration;
- tests/data/digits_vit_legacy_logits.npz holds the logits that module computed from the
  shipped checkpoints, before they were migrated, on the first 128 digits test images.
"""

from __future__ import annotations

import json
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lst_jax.cli import main
from lst_jax.data.digits import load_digits32
from lst_jax.models import vit
from lst_jax.models.checkpoint import save_checkpoint
from lst_jax.models.layers import Conv, flax_attention_fn
from lst_jax.models.migrate import is_legacy_digits_vit, migrate_checkpoint, migrate_digits_vit
from lst_jax.models.registry import checkpoint_root, load_model
from lst_jax.models.wrapper import Classifier
from tolerances import assert_close_to_float64

DATA_DIR = Path(__file__).resolve().parents[1] / "data"

LEGACY_DIGESTS = {
    "digits_vit-normal": "ef74dd20be036060df30a89e8911f0a55e4f641b1ec452851a5298646197433e",
    "digits_vit-linf": "39a00af1fac945095f32685ce84302eacb24b78d1c254b78d5a4c96947d4d550"}


class _LegacyBlock(nn.Module):
    dim: int
    heads: int
    mlp_dim: int

    @nn.compact
    def __call__(self, x):
        y = nn.LayerNorm(epsilon=1e-6, name="norm1")(x)
        y = nn.MultiHeadDotProductAttention(num_heads=self.heads, attention_fn=flax_attention_fn,
                                            name="attn")(y, y)
        x = x + y
        y = nn.LayerNorm(epsilon=1e-6, name="norm2")(x)
        y = nn.Dense(self.mlp_dim, name="fc1")(y)
        return x + nn.Dense(self.dim, name="fc2")(nn.gelu(y, approximate=False))


class LegacyDigitsViT(nn.Module):
    num_classes: int = 10
    patch: int = 8
    dim: int = 96
    depth: int = 4
    heads: int = 4
    mlp_dim: int = 192

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = Conv(self.dim, (self.patch, self.patch), (self.patch, self.patch),
                 padding="VALID", name="patch_embed")(x)
        b, h, w, d = x.shape
        x = x.reshape(b, h * w, d)
        cls = self.param("cls_token", nn.initializers.zeros, (1, 1, d))
        x = jnp.concatenate([jnp.broadcast_to(cls, (b, 1, d)), x], axis=1)
        x = x + self.param("pos_embed", nn.initializers.normal(0.02), (1, h * w + 1, d))
        for i in range(self.depth):
            x = _LegacyBlock(self.dim, self.heads, self.mlp_dim, name=f"block{i + 1}")(x)
        x = nn.LayerNorm(epsilon=1e-6, name="norm")(x)
        return nn.Dense(self.num_classes, name="head")(x[:, 0]), {}


def _legacy_variables(seed=0):
    variables = Classifier(LegacyDigitsViT()).init(jax.random.key(seed), (32, 32, 3))
    # Non-zero class token and biases, so a misplaced bias or token cannot go unnoticed.
    leaves, tree = jax.tree.flatten(variables)
    keys = jax.random.split(jax.random.key(seed + 1), len(leaves))
    leaves = [v + 0.05 * jax.random.normal(k, v.shape) for v, k in zip(leaves, keys)]
    return jax.tree.map(np.asarray, jax.tree.unflatten(tree, leaves))


def _images(n, seed=0):
    return jax.random.uniform(jax.random.key(seed), (n, 32, 32, 3))


def _float64_logits(model_fn, variables, x):
    """The same model in float64: measures the float32 round-off the tolerances derive from."""
    with jax.enable_x64(True):
        v64 = jax.tree.map(lambda v: np.asarray(v, np.float64), variables)
        out = np.asarray(model_fn(v64, jnp.asarray(np.asarray(x), jnp.float64)))
    assert out.dtype == np.float64
    return out


def test_migrated_random_weights_give_the_same_logits_and_input_gradients():
    old = _legacy_variables()
    new = migrate_digits_vit(old)
    x = _images(16)
    legacy, current = Classifier(LegacyDigitsViT()), Classifier(vit.DigitsViT())
    assert_close_to_float64(current(new, x), _float64_logits(current, new, x), legacy(old, x),
                            what="migrated vs legacy logits")

    def grad(model, variables):
        return jax.grad(lambda z: jnp.sum(jax.nn.log_softmax(model(variables, z))[:, 3]))(x)

    g_old, g_new = grad(legacy, old), grad(current, new)
    assert float(jnp.max(jnp.abs(g_new - g_old))) <= 1e-5 * float(jnp.max(jnp.abs(g_old)))


def test_digits_vit_is_a_vision_transformer_configuration():
    module = vit.DigitsViT()
    assert isinstance(module, vit.VisionTransformer)
    assert (module.patch, module.dim, module.depth, module.heads, module.mlp_ratio,
            module.fast_variance) == (8, 96, 4, 4, 2.0, True)
    from lst_jax.models import digits

    assert not hasattr(digits, "DigitsViT")


@pytest.mark.parametrize("name", ["digits_vit-normal", "digits_vit-linf"])
def test_shipped_checkpoints_reproduce_the_legacy_logits(name):
    ref = np.load(DATA_DIR / "digits_vit_legacy_logits.npz")
    images = load_digits32("test")[0][ref["images_index"]]
    m = load_model(name)
    logits = np.asarray(jax.jit(m.model_fn)(m.params, jnp.asarray(images)))
    # The reference was computed in float32 by another module on another CPU: the tolerance is
    # derived from this run's float32 error against the same model in float64 (logits ~10,
    # 1 ulp ~1e-6; measured differences 3-7e-6 across CPUs and XLA ISAs).
    assert_close_to_float64(logits, _float64_logits(m.model_fn, m.params, images),
                            ref[name.replace("-", "_") + "_logits"],
                            what=f"{name} logits vs the legacy module's")
    meta = json.loads((checkpoint_root() / name / "metadata.json").read_text())
    assert meta["migrated"]["previous_digest"] == LEGACY_DIGESTS[name]
    assert meta["digest"] != LEGACY_DIGESTS[name]
    assert not is_legacy_digits_vit(m.params["params"])


def test_legacy_checkpoint_is_refused_with_the_command_then_migrated(tmp_path, capsys):
    old = _legacy_variables(seed=3)
    path = tmp_path / "digits_vit-normal"
    save_checkpoint(path, old, {"arch": "digits_vit", "arch_kwargs": {},
                                "input_size": [32, 32, 3], "test_accuracy": 0.5})
    old_digest = json.loads((path / "metadata.json").read_text())["digest"]
    with pytest.raises(ValueError, match="lst-jax migrate digits_vit-normal --checkpoint"):
        load_model("digits_vit-normal", tmp_path)

    assert main(["migrate", "digits_vit-normal", "--checkpoint", str(tmp_path)]) == 0
    assert "digest" in capsys.readouterr().out
    meta = json.loads((path / "metadata.json").read_text())
    assert meta["test_accuracy"] == 0.5 and meta["migrated"]["previous_digest"] == old_digest
    m = load_model("digits_vit-normal", tmp_path)
    x = _images(4, seed=5)
    assert_close_to_float64(m.model_fn(m.params, x), _float64_logits(m.model_fn, m.params, x),
                            Classifier(LegacyDigitsViT())(old, x), what="migrated checkpoint")

    assert main(["migrate", "digits_vit-normal", "--checkpoint", str(tmp_path)]) == 2
    assert "already in the current digits_vit layout" in capsys.readouterr().err


def test_migration_errors_name_the_problem(tmp_path):
    with pytest.raises(ValueError, match="not in the old digits ViT layout"):
        migrate_digits_vit(Classifier(vit.DigitsViT()).init(jax.random.key(0), (32, 32, 3)))
    with pytest.raises(ValueError, match="no migration for architecture 'digits_resnet'"):
        migrate_checkpoint(tmp_path, "digits_resnet")
