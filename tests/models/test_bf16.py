"""The opt-in bfloat16 forward/backward: float32 logits, close to the float32 model, recorded
in run manifests, rejected for non-float dtypes."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lst_jax import cli
from lst_jax.data.digits import load_digits32
from lst_jax.models import load_model
from lst_jax.traversal import level_set_traversal, preset


def test_bf16_model_is_close_to_float32_and_traverses():
    f32 = load_model("digits_resnet-normal")
    bf16 = load_model("digits_resnet-normal", compute_dtype="bfloat16")
    assert bf16.model_fn.compute_dtype == jnp.bfloat16 and f32.model_fn.compute_dtype is None
    x, y = load_digits32("test")
    x = jnp.asarray(x[:64])
    logits = bf16.model_fn(bf16.params, x)
    assert logits.dtype == jnp.float32
    p32 = jax.nn.softmax(f32.model_fn(f32.params, x))
    p16 = jax.nn.softmax(logits)
    assert np.mean(np.argmax(p16, -1) == np.argmax(p32, -1)) >= 0.95
    assert float(jnp.max(jnp.abs(p16 - p32))) < 0.1
    # The traversal runs unchanged with it; its gradient and images stay float32.
    res = level_set_traversal(bf16.model_fn, bf16.params, x[:4], x[4:8], jnp.asarray(y[:4]),
                              key=jax.random.key(0), config=preset("paper", iters=10, log_step=10))
    assert res.images.dtype == jnp.float32
    conf = np.asarray(res.record.conf_source)
    assert np.all(np.isfinite(conf)) and np.all(conf[-1] > conf[0] - 0.2 - 1e-6)


def test_bad_compute_dtype():
    with pytest.raises(ValueError, match="compute_dtype"):
        load_model("digits_resnet-normal", compute_dtype="int8")


def test_cli_bf16_recorded_in_manifest(tmp_path):
    out = tmp_path / "run"
    assert cli.main(["examples", "--k", "2", "--iters", "4", "--log-step", "4", "--quiet",
                     "--bf16", "--out", str(out)]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["compute_dtype"] == "bfloat16"


def _eqns(jaxpr, into_scans=True):
    """All equations of a jaxpr and of the jaxprs nested in it (scan/while bodies, ...)."""
    for e in jaxpr.eqns:
        yield e
        if e.primitive.name == "scan" and not into_scans:
            continue
        for v in e.params.values():
            for sub in (v if isinstance(v, (list, tuple)) else [v]):
                inner = getattr(sub, "jaxpr", None)
                if inner is not None:
                    yield from _eqns(getattr(inner, "jaxpr", inner), into_scans)


def test_bf16_parameters_are_cast_once_outside_the_scan():
    from lst_jax.traversal import run as run_mod

    bf16 = load_model("digits_resnet-normal", compute_dtype="bfloat16")
    x, y = load_digits32("test")
    x, y = jnp.asarray(x[:2]), jnp.asarray(y[:2])
    cfg = preset("paper", iters=3, log_step=3)
    closed = jax.make_jaxpr(lambda p: run_mod.level_set_traversal_unchecked(
        bf16.model_fn, p, x, x[::-1], y, key=jax.random.key(0), config=cfg))(bf16.params)
    n_params = len(jax.tree.leaves(bf16.params))
    scans = [e for e in _eqns(closed.jaxpr) if e.primitive.name == "scan"]
    assert scans
    for scan in scans:
        body = scan.params["jaxpr"].jaxpr
        consts = body.invars[:scan.params["num_consts"]]
        assert sum(v.aval.dtype == jnp.bfloat16 for v in consts) >= n_params - 1
        casts = [e for e in _eqns(body) if e.primitive.name == "convert_element_type"
                 and e.invars[0] in consts]
        assert not casts, f"{len(casts)} parameters cast inside the scan"
    # Outside the scans each parameter is cast once (plus the images' casts per model call).
    outside = [e for e in _eqns(closed.jaxpr, into_scans=False)
               if e.primitive.name == "convert_element_type"
               and e.params["new_dtype"] == jnp.bfloat16]
    assert n_params <= len(outside) < 2 * n_params   # (three model calls before the scan)
