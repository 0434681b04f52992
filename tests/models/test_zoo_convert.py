"""Model zoo and converters without PyTorch: real-size parameter counts, rule round trips,
orbax round trip, bad inputs (.safetensors), registry messages and the `convert` CLI."""

from __future__ import annotations

import functools
import json
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors.numpy import save_file

from lst_jax import cli
from lst_jax.convert import (
    ConversionError,
    abstract_variables,
    clean_state_dict,
    convert_state_dict,
    export_state_dict,
    job,
    param_count,
    read_state_dict,
)
from lst_jax.models import REGISTRY, ModelSpec, load_model
from lst_jax.models import registry as registry_mod
from lst_jax.models.checkpoint import load_checkpoint, save_checkpoint, tree_digest
from lst_jax.models.googlenet import GoogLeNet
from lst_jax.models.resnet import ResNetTinyBasic, ResNetTinyBottleneck
from lst_jax.models.vit import ViTTiny, ViTTinyConvStem
from lst_jax.models.wide_resnet import WRNTiny
from lst_jax.models.wrapper import IMAGENET_NORMALIZATION

# Published parameter counts (torchvision / timm / RobustBench model cards; the ConvStem
# ViT-S count is DeiT-S minus its 16x16 patch projection plus the stem, checked against the
# PyTorch twin in test_zoo_torch_parity.py).
PARAM_COUNTS = {
    "resnet18": 11_689_512, "resnet34": 21_797_672, "resnet50": 25_557_032,
    "resnet101": 44_549_160, "resnet152": 60_192_808,
    "wrn28_10": 36_479_194, "wrn34_10": 46_160_474,
    "deit_tiny": 5_717_416, "deit_small": 22_050_664, "vit_base": 86_567_656,
    "vit_small_convstem": 22_777_576,
    "googlenet": 6_624_904,
}
NATIVE = {"wrn28_10": (32, 32, 3), "wrn34_10": (32, 32, 3)}

TINY = {  # name -> (module, image shape)
    "resnet_basic": (ResNetTinyBasic(), (64, 64, 3)),
    "resnet_bottleneck": (ResNetTinyBottleneck(), (64, 64, 3)),
    "wrn": (WRNTiny(), (32, 32, 3)),
    "vit": (ViTTiny(), (32, 32, 3)),
    "vit_convstem": (ViTTinyConvStem(), (32, 32, 3)),
    "googlenet": (GoogLeNet(num_classes=10), (32, 32, 3)),   # torchvision's widths, no tiny
}


@functools.lru_cache(maxsize=None)
def _tiny_variables(name, seed=0):
    """Random variables of a tiny model, drawn with numpy on its `eval_shape` tree (no XLA
    compilation); scales and BatchNorm variances in [0.5, 1.5]."""
    module, shape = TINY[name]
    rng = np.random.default_rng(seed)

    def draw(path, leaf):
        last = str(getattr(path[-1], "key", path[-1]))
        if last in ("var", "scale"):
            return rng.uniform(0.5, 1.5, leaf.shape).astype(np.float32)
        return (0.2 * rng.standard_normal(leaf.shape)).astype(np.float32)

    return jax.tree_util.tree_map_with_path(draw, abstract_variables(module, shape))


@pytest.mark.parametrize("arch", sorted(PARAM_COUNTS))
def test_real_size_parameter_counts(arch):
    module = registry_mod.ARCHITECTURES[arch]()
    shape = NATIVE.get(arch, (224, 224, 3))
    assert param_count(abstract_variables(module, shape)) == PARAM_COUNTS[arch]


def test_registry_entries_are_complete():
    for name, spec in REGISTRY.items():
        if spec.dataset == "digits":
            continue
        assert spec.arch in PARAM_COUNTS and spec.build().module is not None, name
        assert spec.weights and spec.source, name
        assert spec.resize in (None, 256) and spec.interpolation in ("bilinear", "bicubic")


def test_paper_models_are_registered():
    for name in ("resnet50-normal", "resnet50-linf", "deit_small-normal", "deit_small-linf",
                 "wrn28_10-normal", "wrn28_10-linf", "digits_resnet-normal"):
        assert name in REGISTRY
    assert REGISTRY["deit_small-linf"].arch == "vit_small_convstem"
    assert REGISTRY["wrn28_10-linf"].normalization.mean is None          # [0, 1] inputs
    assert REGISTRY["resnet50-linf"].normalization == IMAGENET_NORMALIZATION
    assert REGISTRY["deit_small-linf"].interpolation == "bicubic"
    assert REGISTRY["resnet50-linf"].interpolation == "bilinear"


@pytest.mark.parametrize("name", sorted(TINY))
def test_export_then_convert_is_the_identity(name):
    module, shape = TINY[name]
    v = _tiny_variables(name)
    sd = export_state_dict(v, module)
    assert all("/" not in k for k in sd)
    back = convert_state_dict(sd, module, shape)
    jax.tree.map(np.testing.assert_array_equal, back.variables, jax.tree.map(np.asarray, v))
    n_bn = sum(k.endswith("num_batches_tracked") for k in sd)
    assert len(back.report["dropped"]) == n_bn


def test_torch_layouts_of_exported_keys():
    sd = export_state_dict(_tiny_variables("resnet_bottleneck"), ResNetTinyBottleneck())
    assert sd["conv1.weight"].shape == (8, 3, 7, 7)                    # OIHW
    assert sd["layer2.0.downsample.0.weight"].shape == (64, 32, 1, 1)
    assert sd["layer2.0.downsample.1.running_var"].shape == (64,)
    assert sd["fc.weight"].shape == (10, 256)                          # out x in
    sd = export_state_dict(_tiny_variables("vit_convstem"), ViTTinyConvStem())
    assert sd["patch_embed.proj.stem.12.weight"].shape == (64, 64, 1, 1)
    assert sd["patch_embed.proj.stem.10.bias"].shape == (64,)
    assert sd["blocks.1.attn.qkv.weight"].shape == (192, 64)
    assert sd["pos_embed"].shape == (1, 5, 64)


def test_orbax_round_trip_is_bit_identical(tmp_path):
    module, shape = TINY["resnet_basic"]
    sd = export_state_dict(_tiny_variables("resnet_basic"), module)
    v = convert_state_dict(sd, module, shape).variables
    save_checkpoint(tmp_path / "ck", v, {"arch": "test"})
    restored, meta = load_checkpoint(tmp_path / "ck", abstract_variables(module, shape))
    assert meta["digest"] == tree_digest(v) == tree_digest(restored)
    for a, b in zip(jax.tree.leaves(v), jax.tree.leaves(restored)):
        assert a.dtype == b.dtype and np.array_equal(a, b)


def test_torchvision_vit_layout_round_trip_and_key_names():
    module, shape = TINY["vit"]
    v = _tiny_variables("vit")
    sd = export_state_dict(v, module, layout="torchvision")
    assert sd["encoder.layers.encoder_layer_1.self_attention.in_proj_weight"].shape == (96, 32)
    assert sd["encoder.layers.encoder_layer_1.self_attention.in_proj_bias"].shape == (96,)
    assert sd["encoder.layers.encoder_layer_0.self_attention.out_proj.weight"].shape == (32, 32)
    assert sd["encoder.layers.encoder_layer_0.mlp.3.weight"].shape == (32, 128)
    assert sd["conv_proj.weight"].shape == (32, 3, 8, 8)
    assert sd["encoder.pos_embedding"].shape == (1, 17, 32)
    assert {"class_token", "encoder.ln.weight", "heads.head.bias"} <= set(sd)
    # same tensors as the timm layout, other names: qkv rows are in_proj rows
    timm = export_state_dict(v, module)
    np.testing.assert_array_equal(
        sd["encoder.layers.encoder_layer_1.self_attention.in_proj_weight"],
        timm["blocks.1.attn.qkv.weight"])
    assert len(sd) == len(timm)
    back = convert_state_dict(sd, module, shape, layout="torchvision")
    jax.tree.map(np.testing.assert_array_equal, back.variables, jax.tree.map(np.asarray, v))
    with pytest.raises(ValueError, match="no 'torchvision' layout for ResNet"):
        convert_state_dict({}, ResNetTinyBasic(), (64, 64, 3), layout="torchvision")
    with pytest.raises(ValueError, match="no 'keras' layout for VisionTransformer; known "
                                         "layouts: 'timm', 'torchvision'"):
        export_state_dict(v, module, layout="keras")


def test_googlenet_keys_and_the_dropped_auxiliary_heads():
    module, shape = TINY["googlenet"]
    v = _tiny_variables("googlenet")
    sd = export_state_dict(v, module)
    assert sd["conv1.conv.weight"].shape == (64, 3, 7, 7)
    assert sd["inception3a.branch3.1.conv.weight"].shape == (32, 16, 3, 3)    # the "5x5"
    assert sd["inception5b.branch4.1.bn.running_var"].shape == (128,)
    assert sd["fc.weight"].shape == (10, 1024)
    assert not any(k.startswith("aux") or ".bias" in k and ".conv." in k for k in sd)
    # the pretrained file also holds the auxiliary classifiers: dropped, and said so
    aux = {f"{a}.{k}": np.zeros(s, np.float32) for a in ("aux1", "aux2") for k, s in (
        ("conv.conv.weight", (128, 512, 1, 1)), ("fc1.weight", (1024, 2048)),
        ("fc2.bias", (10,)))}
    conv = convert_state_dict({**sd, **aux}, module, shape)
    assert set(aux) <= set(conv.report["dropped"])
    assert conv.report["notes"] == ["dropped aux1.*, aux2.*: GoogLeNet's auxiliary "
                                    "classifiers, used only in training (eval mode returns "
                                    "the main logits)"]
    assert convert_state_dict(sd, module, shape).report["notes"] == []
    jax.tree.map(np.testing.assert_array_equal, conv.variables, jax.tree.map(np.asarray, v))


def test_connectivity_paper_models_are_registered():
    from lst_jax.convert.rules import GOOGLENET, VIT_TORCHVISION, rules_for

    gn, vit = REGISTRY["googlenet-normal"], REGISTRY["vit_b_16_tv-normal"]
    assert (gn.arch, gn.weights, gn.layout) == ("googlenet", "googlenet-1378be20.pth", "")
    assert (vit.arch, vit.weights, vit.layout) == ("vit_base", "vit_b_16-c867db91.pth",
                                                   "torchvision")
    for spec in (gn, vit):   # torchvision's ImageClassification(crop_size=224) transforms
        assert spec.normalization == IMAGENET_NORMALIZATION
        assert (spec.input_size, spec.resize, spec.interpolation) == ((224, 224, 3), 256,
                                                                      "bilinear")
    assert gn.build().module.transform_input is True
    assert rules_for(gn.build().module, gn.layout) is GOOGLENET
    assert rules_for(vit.build().module, vit.layout) is VIT_TORCHVISION
    with pytest.raises(FileNotFoundError, match="`lst-jax convert googlenet-normal "
                                                "googlenet-1378be20.pth`"):
        load_model("googlenet-normal", checkpoint="/nonexistent")


# ----------------------------------------------------------------------------- bad input
def test_state_dict_of_another_architecture_lists_every_problem():
    module, shape = TINY["resnet_basic"]
    wrn_sd = export_state_dict(_tiny_variables("wrn"), WRNTiny())
    with pytest.raises(ConversionError) as e:
        convert_state_dict(wrn_sd, module, shape)
    msg = str(e.value)
    assert "PyTorch key layer1.0.conv1.weight (8, 8, 3, 3)" in msg     # names what is missing
    assert "block1.layer.0.convShortcut.weight" in msg                 # no rule for it
    assert "fc.weight: file has (10, 128), model expects (10, 64)" in msg
    for section in ("missing from the file", "mis-shaped", "unexpected (no rule"):
        assert section in msg


def test_wrong_shaped_tensor_is_named():
    module, shape = TINY["vit"]
    sd = export_state_dict(_tiny_variables("vit"), module)
    sd["blocks.0.mlp.fc1.weight"] = sd["blocks.0.mlp.fc1.weight"][:100]
    with pytest.raises(ConversionError, match=r"mis-shaped \(1\):\n    blocks\.0\.mlp\.fc1"
                       r"\.weight: file has \(100, 32\), model expects \(128, 32\)"):
        convert_state_dict(sd, module, shape)


def test_truncated_and_foreign_safetensors_files(tmp_path):
    sd = export_state_dict(_tiny_variables("vit"), ViTTiny())
    path = tmp_path / "w.safetensors"
    save_file(sd, str(path))
    assert set(read_state_dict(path)[0]) == set(sd)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated or not a safetensors file"):
        read_state_dict(path)
    path.write_bytes(b"this is not a weights file")
    with pytest.raises(ValueError, match="cannot read"):
        read_state_dict(path)
    with pytest.raises(FileNotFoundError):
        read_state_dict(tmp_path / "absent.safetensors")


def test_clean_state_dict_strips_wrappers_and_splits_normalisers():
    w = np.ones((2, 2), np.float32)
    sd = {"module.model.fc.weight": w, "module.attacker.model.fc.weight": w,
          "module.normalizer.new_mean": np.array([0.5, 0.5, 0.5]),
          "module.normalizer.new_std": np.array([0.25, 0.25, 0.25])}
    out, notes, norm = clean_state_dict(sd)
    assert list(out) == ["fc.weight"]
    np.testing.assert_array_equal(norm["std"], [0.25] * 3)
    assert len(notes) == 4
    with pytest.raises(ValueError, match="collide"):
        clean_state_dict({"module.fc.weight": w, "fc.weight": w})


# ----------------------------------------------------------------------------- registry + CLI
TINY_SPEC = ModelSpec(
    name="tiny_resnet-normal", arch="resnet18",
    arch_kwargs=(("layers", (1, 2, 1, 1)), ("width", 8), ("num_classes", 10)),
    normalization=IMAGENET_NORMALIZATION, input_size=(64, 64, 3), dataset="imagenet",
    num_classes=10, checkpoint="tiny_resnet-normal", resize=72, interpolation="bilinear",
    source="a test model", weights="tiny.safetensors")


@pytest.fixture
def tiny_registry(monkeypatch, tmp_path):
    monkeypatch.setitem(REGISTRY, TINY_SPEC.name, TINY_SPEC)
    monkeypatch.setenv("LST_JAX_CHECKPOINTS", str(tmp_path / "ckpts"))
    return tmp_path


def test_unknown_name_and_missing_checkpoint_messages(tiny_registry, capsys):
    with pytest.raises(ValueError, match="unknown model 'resnet51-normal'.*lst-jax models"):
        load_model("resnet51-normal")
    with pytest.raises(FileNotFoundError) as e:
        load_model("resnet50-linf")
    msg = str(e.value)
    assert "Salman2020Do_R50.pt" in msg
    assert ("`lst-jax convert resnet50-linf models/imagenet/Linf/Salman2020Do_R50.pt`"
            in msg)
    assert cli.main(["convert", "resnet51-normal", "x.pth"]) == 2
    assert "unknown model" in capsys.readouterr().err


def test_cli_convert_models_and_load(tiny_registry, capsys):
    module = TINY_SPEC.build().module
    v = _tiny_variables("resnet_basic")       # the same architecture as TINY_SPEC
    weights = tiny_registry / "tiny.safetensors"
    save_file(export_state_dict(v, module), str(weights))

    assert cli.main(["convert", TINY_SPEC.name, str(weights)]) == 0
    out = capsys.readouterr().out
    assert f"parameters: {param_count(v):,}" in out
    assert "dropped 14 num_batches_tracked" in out
    assert "restored checkpoint reproduces these logits exactly" in out
    assert re.search(r"top-5 \d+ p=[01]\.\d{3}, \d+ p=", out)

    m = load_model(TINY_SPEC.name)
    jax.tree.map(np.testing.assert_array_equal, m.params, jax.tree.map(np.asarray, v))
    meta = json.loads((tiny_registry / "ckpts" / TINY_SPEC.name / "metadata.json").read_text())
    assert meta["arch"] == "resnet18" and meta["weights_file"] == "tiny.safetensors"
    assert meta["command"] == f"lst-jax convert {TINY_SPEC.name} {weights}"
    assert len(meta["weights_sha256"]) == 64
    x = jax.random.uniform(jax.random.key(0), (2, 64, 64, 3))
    fn = jax.jit(m.model_fn)
    np.testing.assert_array_equal(fn(m.params, x), fn(jax.tree.map(jnp.asarray, v), x))

    # An existing checkpoint is kept unless --overwrite is given.
    assert cli.main(["convert", TINY_SPEC.name, str(weights)]) == 2
    assert "already exists" in capsys.readouterr().err
    compiled = job._forward._cache_size()
    assert cli.main(["convert", TINY_SPEC.name, str(weights), "--overwrite"]) == 0
    assert job._forward._cache_size() == compiled          # converting again: no recompile
    capsys.readouterr()

    assert cli.main(["models"]) == 0
    table = capsys.readouterr().out
    assert re.search(rf"{TINY_SPEC.name}\s+resnet18\s+imagenet\s+64x64x3\s+yes", table)
    assert re.search(r"wrn28_10-linf\s+wrn28_10\s+cifar10\s+32x32x3\s+no", table)


def _nothing_written(root, name):
    return not (root / name).exists() and not list(root.glob(f".{name}.*"))


def test_failed_conversions_write_nothing(tiny_registry, monkeypatch, capsys):
    out = tiny_registry / "ckpts"
    module = TINY_SPEC.build().module
    sd = export_state_dict(_tiny_variables("resnet_basic"), module)
    bad = {
        "other_arch.safetensors": export_state_dict(_tiny_variables("wrn"), WRNTiny()),
        "wrong_shape.safetensors": {**sd, "fc.weight": np.zeros((10, 7), np.float32)},
    }
    for fname, state in bad.items():
        save_file(state, str(tiny_registry / fname))
    (tiny_registry / "truncated.safetensors").write_bytes(
        (tiny_registry / "wrong_shape.safetensors").read_bytes()[:1000])
    for fname in (*bad, "truncated.safetensors"):
        assert cli.main(["convert", TINY_SPEC.name, str(tiny_registry / fname)]) == 2, fname
        err = capsys.readouterr().err
        assert "error:" in err, fname
        assert _nothing_written(out, TINY_SPEC.name), fname

    # A failure while the checkpoint is being written leaves nothing behind either.
    good = tiny_registry / "good.safetensors"
    save_file(sd, str(good))

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr("lst_jax.models.checkpoint.tree_digest", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        cli.main(["convert", TINY_SPEC.name, str(good)])
    assert _nothing_written(out, TINY_SPEC.name)


def test_wrong_normaliser_in_the_file_is_refused(tiny_registry):
    from lst_jax.convert.job import convert_file

    sd = export_state_dict(_tiny_variables("resnet_basic"), TINY_SPEC.build().module)
    sd = {**{f"model.{k}": a for k, a in sd.items()},
          "normalize.mean": np.full((1, 3, 1, 1), 0.5, np.float32),
          "normalize.std": np.full((1, 3, 1, 1), 0.5, np.float32)}
    path = tiny_registry / "w.safetensors"
    save_file(sd, str(path))
    with pytest.raises(ValueError, match="normalises its inputs with mean"):
        convert_file(TINY_SPEC.name, path)
