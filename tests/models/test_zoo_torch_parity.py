"""Converted zoo models reproduce independent PyTorch twins (tests/torch_reference.py).

For every family: a randomly initialised PyTorch model with randomised BatchNorm statistics
and norm parameters, converted, gives the same logits on random inputs (relative error <=
1e-4, float32), checked layer by layer so that a failure names the first differing tensor.
Real sizes are checked for keys and shapes (PyTorch models built on the `meta` device, no
memory). Plus `.pth` reading: checkpoint wrappers, truncated files and non-weights pickles.
"""

from __future__ import annotations

import argparse
import functools
import pickle

import jax
import numpy as np
import pytest

from conftest import HAVE_TORCH
from lst_jax import cli
from lst_jax.convert import clean_state_dict, convert_state_dict, export_state_dict, read_state_dict
from lst_jax.models import REGISTRY, resnet, vit, wide_resnet
from lst_jax.models.registry import load_model

pytestmark = pytest.mark.skipif(not HAVE_TORCH, reason="needs the optional torch extra")

if HAVE_TORCH:
    import torch

    import torch_reference as tr

RTOL = 1e-4

# name -> (PyTorch twin factory, Flax module, image size)
CASES = {
    "resnet_basic": (lambda: tr.TorchResNet("basic", (1, 2, 1, 1), 10, width=8),
                     resnet.ResNetTinyBasic(), 64),
    "resnet_bottleneck": (lambda: tr.TorchResNet("bottleneck", (1, 2, 1, 1), 10, width=8),
                          resnet.ResNetTinyBottleneck(), 64),
    "wide_resnet": (lambda: tr.TorchWideResNet(16, 2, 10, sub_block1=True),
                    wide_resnet.WRNTiny(), 32),
    "vit": (lambda: tr.TorchViT(32, 8, 32, 2, 4, 4.0, 10), vit.ViTTiny(), 32),
    "vit_convstem": (lambda: tr.TorchViT(32, 16, 64, 2, 4, 4.0, 10, convstem=True,
                                         stem_width=8), vit.ViTTinyConvStem(), 32),
}


def rel_err(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


def _nhwc(t):
    a = t.detach().numpy()
    return a.transpose(0, 2, 3, 1) if a.ndim == 4 else a


@functools.lru_cache(maxsize=None)
def _twin(name, seed=0):
    torch.manual_seed(seed)
    return tr.randomize_(CASES[name][0](), seed)


@functools.lru_cache(maxsize=None)
def _apply(module):
    return jax.jit(lambda v, x: module.apply(v, x, train=False))


@pytest.mark.parametrize("name", sorted(CASES))
def test_converted_model_matches_pytorch_layer_by_layer(name):
    torch.set_num_threads(2)
    twin = _twin(name)
    _, module, size = CASES[name]
    conv = convert_state_dict(tr.state_dict_numpy(twin), module, (size, size, 3))
    x = np.random.default_rng(1).uniform(size=(4, size, size, 3)).astype(np.float32)
    with torch.no_grad():
        ref = twin(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).numpy()
    logits, out = _apply(module)(conv.variables, x)

    # Layer by layer, in forward order: the first differing tensor is the one reported.
    assert set(out) == set(twin.feats)   # (jit returns the dict sorted; twin order is forward)
    for key, t in twin.feats.items():
        err = rel_err(out[key], _nhwc(t))
        assert err <= RTOL, f"{name}: first difference at {key!r}: relative error {err:.2e}"
    assert rel_err(logits, ref) <= RTOL
    assert np.array_equal(np.argmax(logits, -1), np.argmax(ref, -1))
    assert np.std(ref) > 1e-3          # a non-degenerate random model


@pytest.mark.parametrize("name", sorted(CASES))
def test_export_loads_strictly_into_the_pytorch_twin(name):
    """Flax -> PyTorch names and layouts are exactly the twin's (strict load_state_dict)."""
    twin = _twin(name)
    _, module, size = CASES[name]
    sd = tr.state_dict_numpy(twin)
    v = convert_state_dict(sd, module, (size, size, 3)).variables
    back = export_state_dict(v, module)
    fresh = CASES[name][0]()
    if name == "wide_resnet":        # the unused sub_block1 is not converted
        del fresh.sub_block1
    fresh.load_state_dict({k: torch.from_numpy(a) for k, a in back.items()}, strict=True)
    for k, a in fresh.state_dict().items():
        if not k.endswith("num_batches_tracked"):
            np.testing.assert_array_equal(a.numpy(), sd[k])


REAL = {  # registry architecture -> PyTorch twin at the published size
    "resnet50": lambda: tr.TorchResNet("bottleneck", (3, 4, 6, 3)),
    "resnet18": lambda: tr.TorchResNet("basic", (2, 2, 2, 2)),
    "wrn28_10": lambda: tr.TorchWideResNet(28, 10, sub_block1=True),
    "wrn34_10": lambda: tr.TorchWideResNet(34, 10),
    "deit_small": lambda: tr.TorchViT(),
    "vit_small_convstem": lambda: tr.TorchViT(convstem=True, stem_width=48),
}


@pytest.mark.parametrize("arch", sorted(REAL))
def test_real_size_keys_and_shapes(arch):
    """Every key and shape of the full-size PyTorch models maps onto the Flax tree."""
    from lst_jax.models.registry import ARCHITECTURES

    with torch.device("meta"):
        twin = REAL[arch]()
    n_params = sum(p.numel() for n, p in twin.named_parameters()
                   if not n.startswith("sub_block1."))
    zero = np.zeros((), np.float32)
    sd = {k: np.broadcast_to(zero, tuple(t.shape)) for k, t in twin.state_dict().items()}
    size = 32 if arch.startswith("wrn") else 224
    conv = convert_state_dict(sd, ARCHITECTURES[arch](), (size, size, 3))
    n_flax = sum(a.size for a in jax.tree.leaves(conv.variables["params"]))
    assert n_flax == n_params


# ----------------------------------------------------------------------------- .pth files
def _save(obj, path):
    torch.save(obj, path)
    return path


def test_pth_wrappers_are_unpacked(tmp_path):
    twin = _twin("wide_resnet")
    sd = twin.state_dict()
    wrapped = {"epoch": 3, "state_dict": {f"module.{k}": v for k, v in sd.items()},
               "optimizer": {"lr": 0.1}}
    got, notes = read_state_dict(_save(wrapped, tmp_path / "ck.pth.tar"))
    got, more, norm = clean_state_dict(got)
    assert notes == ["unpacked checkpoint['state_dict']"] and norm is None
    assert set(got) == set(sd)
    np.testing.assert_array_equal(got["fc.weight"], sd["fc.weight"].numpy())
    half = {k: v.half() for k, v in sd.items()}
    got, _ = read_state_dict(_save({"model": half}, tmp_path / "half.pth"))
    assert got["fc.weight"].dtype == np.float32
    from safetensors.torch import save_file

    save_file({"w": torch.ones(2, 2, dtype=torch.bfloat16)}, str(tmp_path / "bf16.safetensors"))
    got, _ = read_state_dict(tmp_path / "bf16.safetensors")   # numpy has no bfloat16
    assert got["w"].dtype == np.float32 and got["w"].sum() == 4


def test_bad_pth_files_are_refused(tmp_path):
    good = _save(_twin("vit").state_dict(), tmp_path / "good.pth")
    data = good.read_bytes()
    (tmp_path / "truncated.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated or not a PyTorch file"):
        read_state_dict(tmp_path / "truncated.pth")
    # A pickle holding an arbitrary object is never unpickled.
    _save({"args": argparse.Namespace(lr=0.1)}, tmp_path / "namespace.pth")
    with pytest.raises(ValueError, match="not a plain weights file"):
        read_state_dict(tmp_path / "namespace.pth")
    (tmp_path / "plain.pkl").write_bytes(pickle.dumps(argparse.Namespace(lr=0.1)))
    with pytest.raises(ValueError, match="not a plain weights file|cannot read"):
        read_state_dict(tmp_path / "plain.pkl")
    _save({"epoch": 3, "best_acc": 0.9}, tmp_path / "no_tensors.pth")
    with pytest.raises(ValueError, match="holds no tensors"):
        read_state_dict(tmp_path / "no_tensors.pth")


def test_cli_convert_from_pth_matches_pytorch(tmp_path, monkeypatch, capsys):
    """End to end on a registry-shaped entry: wrapped .pth -> checkpoint -> load_model ->
    the same logits as the PyTorch model behind its normaliser; bad files write nothing."""
    from lst_jax.models import ModelSpec
    from lst_jax.models.wrapper import IMAGENET_NORMALIZATION

    spec = ModelSpec(name="tiny_vit-linf", arch="vit_small_convstem",
                     arch_kwargs=(("num_classes", 10), ("dim", 64), ("depth", 2),
                                  ("heads", 4), ("stem_width", 8)),
                     normalization=IMAGENET_NORMALIZATION, input_size=(32, 32, 3),
                     dataset="imagenet", num_classes=10, checkpoint="tiny_vit-linf",
                     resize=36, interpolation="bicubic", source="test", weights="t.pt")
    monkeypatch.setitem(REGISTRY, spec.name, spec)
    monkeypatch.setenv("LST_JAX_CHECKPOINTS", str(tmp_path / "ckpts"))
    twin = _twin("vit_convstem")
    mean = torch.tensor(IMAGENET_NORMALIZATION.mean).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_NORMALIZATION.std).view(1, 3, 1, 1)
    robustbench_style = {"normalize.mean": mean, "normalize.std": std,
                         **{f"model.{k}": v for k, v in twin.state_dict().items()}}
    path = _save(robustbench_style, tmp_path / "t.pt")
    bad = _save({"args": argparse.Namespace(lr=0.1)}, tmp_path / "bad.pt")

    assert cli.main(["convert", spec.name, str(bad)]) == 2
    assert "not a plain weights file" in capsys.readouterr().err
    assert not (tmp_path / "ckpts").exists()
    assert cli.main(["convert", spec.name, str(path)]) == 0
    out = capsys.readouterr().out
    assert "input normaliser equals the registry normalisation" in out

    m = load_model(spec.name)
    x = np.random.default_rng(2).uniform(size=(3, 32, 32, 3)).astype(np.float32)
    with torch.no_grad():
        ref = twin((torch.from_numpy(x.transpose(0, 3, 1, 2).copy()) - mean) / std).numpy()
    assert rel_err(jax.jit(m.model_fn)(m.params, x), ref) <= RTOL
