"""Models in memory through the jobs (`ModelRef.in_memory`): a Flax module that is in no zoo
gets the profile's run directory and cache; an in-memory copy of a shipped checkpoint has its
digest and its numbers; bad models are refused before any work."""

import json

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lst_jax.data.pool import load_pool
from lst_jax.jobs.iaside.job import IasideConfig, iaside_job
from lst_jax.jobs.lst.job import pool_job
from lst_jax.jobs.profile import profile_job, profile_preset
from lst_jax.models import Classifier, ModelRef, Normalization, load_model, resolve_model
from lst_jax.models.registry import checkpoint_digest

SHIPPED = "digits_resnet-normal"
TINY_IASIDE = IasideConfig(num_bands=3, k=12)


class TinyConvNet(nn.Module):
    """A small conv net that is no zoo architecture (the zoo's contract: logits, extras)."""

    num_classes: int = 10

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.relu(nn.Conv(8, (3, 3), strides=(2, 2))(x))
        x = nn.relu(nn.Conv(8, (3, 3), strides=(2, 2))(x))
        feats = x.reshape(x.shape[0], -1)
        return nn.Dense(self.num_classes)(feats), {"pre_logits": feats}


def _tiny(width_classes=10, seed=0):
    clf = Classifier(TinyConvNet(width_classes), Normalization((0.5,) * 3, (0.25,) * 3))
    return clf, clf.init(jax.random.key(seed), (32, 32, 3))


def _mtimes(root):
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*")
            if p.is_file()}


def test_own_module_through_profile_writes_run_dir_and_reuses_cache(tmp_path, monkeypatch):
    clf, variables = _tiny()
    ref = ModelRef.in_memory(clf, variables, name="tiny_conv", input_shape=(32, 32, 3),
                             label_set="digits")
    assert resolve_model(ref) is ref and ref.spec.num_classes == 10
    # I-ASIDE alone: the quickest analysis (the others run through the same references)
    config = profile_preset("quick", analyses=("iaside",), baseline=ref, iaside=TINY_IASIDE)
    out = tmp_path / "profile"
    prof = profile_job([ref], config, out, progress=False)
    assert prof["models"] == ["tiny_conv"] and prof["baseline"] == "tiny_conv"
    for name in ("report.md", "profile.json", "manifest.json"):
        assert (out / name).is_file(), name
    metrics = prof["metrics"]["tiny_conv"]
    assert np.isfinite(metrics["iaside_score"])
    # the cached units are named by the model and keyed by the parameters' own digest
    units = [p for p in (out / "cache").rglob("manifest.json") if "tiny_conv-" in str(p)]
    assert units, sorted((out / "cache").rglob("*"))
    keyed = [json.loads(p.read_text())["config"] for p in units]
    assert any(ref.digest() in json.dumps(k) for k in keyed)

    before = _mtimes(out / "cache")
    import lst_jax.jobs.iaside.job as ia

    def boom(*a, **k):
        raise AssertionError("recomputed a cached analysis")

    monkeypatch.setattr(ia, "spectral_importance", boom)
    again = profile_job([ref], config, out, progress=False)
    assert _mtimes(out / "cache") == before
    assert again["metrics"] == prof["metrics"]
    # other parameters under the same name are another model: a new unit, not the cache
    other = ModelRef.in_memory(clf, _tiny(seed=1)[1], name="tiny_conv",
                               input_shape=(32, 32, 3), label_set="digits")
    assert other.digest() != ref.digest()
    with pytest.raises(AssertionError, match="recomputed"):
        profile_job([other], config.replace(baseline=other), out, progress=False)


def test_in_memory_copy_of_shipped_checkpoint_has_its_digest_and_numbers(tmp_path):
    loaded = load_model(SHIPPED)
    ref = ModelRef.in_memory(loaded.model_fn, loaded.params, name=SHIPPED,
                             input_shape=(32, 32, 3), label_set="digits")
    assert ref.digest() == checkpoint_digest(SHIPPED)
    by_name = iaside_job([SHIPPED], TINY_IASIDE, tmp_path / "name", progress=False)
    in_mem = iaside_job([ref], TINY_IASIDE, tmp_path / "memory", progress=False)
    a, b = by_name["results"][0], in_mem["results"][0]
    assert a["checkpoint_digest"] == b["checkpoint_digest"] == ref.digest()
    np.testing.assert_array_equal(a["distribution"], b["distribution"])
    assert a["score"] == b["score"]
    # the same run-directory name (model name + digest of the key) under either root
    rel = lambda r: r["run_dir"].split("/models/")[1]
    assert rel(a) == rel(b)
    # the pool job (models restored through load_model) takes it as well
    pools = [load_pool(pool_job([m], "digits", tmp_path / f"pool{i}", classes=[0, 1, 2],
                                progress=False)) for i, m in enumerate((SHIPPED, ref))]
    np.testing.assert_array_equal(pools[0].images, pools[1].images)
    np.testing.assert_array_equal(pools[0].source_index, pools[1].source_index)


def test_plain_model_fn_reference():
    w = jax.random.normal(jax.random.key(0), (8 * 8 * 1, 3))
    model_fn = lambda p, x: x.reshape(len(x), -1) @ p["w"]
    ref = ModelRef.in_memory(model_fn, {"w": w}, name="linear", input_shape=(8, 8, 1))
    loaded = ref.load()
    assert loaded.model_fn is model_fn and ref.spec.num_classes == 3
    assert ref.spec.normalization.is_identity and ref.spec.dataset == "custom"
    assert loaded.metadata["digest"] == ref.digest()
    with pytest.raises(ValueError, match="compute_dtype.*needs a Classifier"):
        ref.load("bfloat16")


@pytest.mark.parametrize("kwargs, match", [
    ({"params": "other"}, r"(?s)params of model 'bad' .*mis-shaped"),
    ({"input_shape": (28, 28, 3)}, r"(?s)input_shape \(28, 28, 3\).*mis-shaped"),
    ({"input_shape": (32, 32)}, r"input_shape must be \(height, width, channels\)"),
    ({"num_classes": 7}, r"num_classes is 7, but the model returns 10 logits"),
    ({"name": "a b"}, r"name must be"),
    ({"params": {}}, r"params is empty"),
])
def test_bad_in_memory_models_are_refused_before_work(kwargs, match):
    clf, variables = _tiny()
    args = {"params": variables, "name": "bad", "input_shape": (32, 32, 3), **kwargs}
    if args["params"] == "other":
        args["params"] = _tiny(width_classes=5)[1]
    with pytest.raises(ValueError, match=match):
        ModelRef.in_memory(clf, args.pop("params"), **args)


def test_plain_model_fn_that_fails_on_the_input_shape_is_named():
    model_fn = lambda p, x: x.reshape(len(x), -1) @ p["w"]
    with pytest.raises(ValueError, match=r"model 'lin'.*params do not fit the model or "
                                         r"input_shape is wrong"):
        ModelRef.in_memory(model_fn, {"w": jnp.zeros((64, 3))}, name="lin",
                           input_shape=(32, 32, 3))
    with pytest.raises(ValueError, match="logits .batch, classes."):
        ModelRef.in_memory(lambda p, x: (x * p["s"]).sum(), {"s": jnp.ones(())}, name="sum",
                           input_shape=(4, 4, 1))
    with pytest.raises(ValueError, match="an in-memory model"):
        resolve_model(model_fn)


def test_profile_refuses_other_parameters_under_the_baseline_name(tmp_path):
    clf, variables = _tiny()
    ref = ModelRef.in_memory(clf, variables, name=SHIPPED, input_shape=(32, 32, 3),
                             label_set="digits")
    config = profile_preset("quick", analyses=("iaside",), iaside=TINY_IASIDE)
    assert config.baseline == SHIPPED
    with pytest.raises(ValueError, match=f"two different models .* named '{SHIPPED}'"):
        profile_job([ref], config, tmp_path / "p", progress=False)
    assert not (tmp_path / "p").exists()
