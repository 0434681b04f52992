"""The input-space mode connectivity paper's torchvision models against torchvision itself.

torchvision's own classes are the reference here (imported next to the CPU torch by
`lst_jax.convert.torchvision_import.import_torchvision`): `googlenet` (full size, random
init with randomised BatchNorm statistics, `transform_input=True`, the auxiliary heads present
in the state dict as in the pretrained file) and a tiny `VisionTransformer` (the `vit_b_16`
layout at 32x32). Converted, both give torchvision's eval-mode logits layer by layer
(relative error <= 1e-4, float32); the export loads into torchvision with
`load_state_dict(strict=True)`; `lst-jax convert` of a saved `.pth` reproduces torchvision
behind the registry's [0, 1] -> ImageNet normalisation; the full-size `vit_b_16` keys map
onto `ViTBase`.
"""

from __future__ import annotations

import functools
import warnings

import jax
import numpy as np
import pytest

from conftest import HAVE_TORCH
from lst_jax import cli
from lst_jax.convert import ConversionError, convert_state_dict, export_state_dict, job
from lst_jax.models import REGISTRY, ModelSpec, load_model
from lst_jax.models.googlenet import GoogLeNet, googlenet_transform_input, max_pool_ceil
from lst_jax.models.vit import ViTBase, ViTTiny
from lst_jax.models.wrapper import IMAGENET_NORMALIZATION
from tolerances import reduction_atol

pytestmark = pytest.mark.skipif(not HAVE_TORCH, reason="needs the optional torch extra")

if HAVE_TORCH:
    import torch

    import torch_reference as tr

RTOL = 1e-4
GN_SIZE = 80     # odd maps after maxpool3 (5x5): maxpool4's ceil mode really pads
TINY_VIT = dict(image_size=32, patch_size=8, num_layers=2, num_heads=4, hidden_dim=32,
                mlp_dim=128, num_classes=10)   # = lst_jax.models.vit.ViTTiny


def rel_err(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


def _nchw(x):
    return torch.from_numpy(np.ascontiguousarray(np.asarray(x).transpose(0, 3, 1, 2)))


@functools.lru_cache(maxsize=None)
def _tv():
    try:
        return tr.import_torchvision()
    except Exception as e:  # pragma: no cover - depends on the installed extras
        pytest.skip(f"torchvision is not importable: {type(e).__name__}: {e}")


def _googlenet(aux_logits=True):
    torch.manual_seed(0)
    return _tv().models.googlenet(weights=None, aux_logits=aux_logits, transform_input=True,
                                  init_weights=True)


@functools.lru_cache(maxsize=None)
def _googlenet_twin():
    """Random torchvision GoogLeNet with auxiliary heads (as in the pretrained file), eval."""
    return tr.randomize_(_googlenet(), seed=0)


def _tiny_vit():
    torch.manual_seed(0)
    return _tv().models.vision_transformer.VisionTransformer(**TINY_VIT)


@functools.lru_cache(maxsize=None)
def _vit_twin():
    return tr.randomize_(_tiny_vit(), seed=1)


def _capture(model, names):
    """Forward hooks storing the outputs of the named submodules in forward order."""
    feats, handles = {}, []
    for name, fn in names.items():
        mod = model.get_submodule(name)
        handles.append(mod.register_forward_hook(
            lambda m, i, o, fn=fn, key=name: feats.__setitem__(key, fn(o))))
    return feats, handles


def _compare(name, out, feats, keymap):
    for tkey, fkey in keymap.items():
        t = feats[tkey].detach().numpy()
        t = t.transpose(0, 2, 3, 1) if t.ndim == 4 else t
        err = rel_err(out[fkey], t)
        assert err <= RTOL, f"{name}: first difference at {fkey!r} ({tkey}): {err:.2e}"


# ----------------------------------------------------------------------------- GoogLeNet
def test_googlenet_matches_torchvision_layer_by_layer():
    torch.set_num_threads(2)
    twin = _googlenet_twin()
    sd = tr.state_dict_numpy(twin)
    conv = convert_state_dict(sd, GoogLeNet(), (GN_SIZE, GN_SIZE, 3))
    aux = sorted(k for k in sd if k.startswith(("aux1.", "aux2.")))
    assert len(aux) == 20 and set(aux) <= set(conv.report["dropped"])
    assert conv.report["notes"] == ["dropped aux1.*, aux2.*: GoogLeNet's auxiliary "
                                    "classifiers, used only in training (eval mode returns "
                                    "the main logits)"]

    # ImageNet-normalised input, as the registry's wrapper produces it
    x = np.random.default_rng(1).normal(size=(3, GN_SIZE, GN_SIZE, 3)).astype(np.float32)
    blocks = [f"inception{b}" for b in ("3a", "3b", "4a", "4b", "4c", "4d", "4e", "5a", "5b")]
    keymap = {"maxpool2": "stem", **{b: b for b in blocks}, "avgpool": "pre_logits"}
    feats, handles = _capture(twin, {k: (lambda o: o.flatten(1)) if k == "avgpool"
                                     else (lambda o: o) for k in keymap})
    with torch.no_grad():
        ref = twin(_nchw(x))
    for h in handles:
        h.remove()
    assert isinstance(ref, torch.Tensor)          # eval mode: main logits only
    logits, out = jax.jit(lambda v, x: GoogLeNet().apply(v, x))(conv.variables, x)
    assert list(feats) == list(keymap)            # hooks fired in forward order
    assert feats["inception4e"].shape[-1] == 5    # the 5x5 map that maxpool4 pads (ceil mode)
    _compare("googlenet", out, feats, keymap)
    ref = ref.numpy()
    assert rel_err(logits, ref) <= RTOL
    assert np.array_equal(np.argmax(logits, -1), np.argmax(ref, -1))
    assert np.std(ref) > 1e-3


def test_googlenet_transform_input_is_torchvision_s():
    """The re-mapping equals torchvision's `_transform_input` (float32), and composed with
    the registry's ImageNet normalisation it is (pixel - 0.5) / 0.5."""
    twin = _googlenet_twin()
    p = np.random.default_rng(3).uniform(size=(2, 9, 7, 3)).astype(np.float32)
    x = np.asarray(IMAGENET_NORMALIZATION(p))
    with torch.no_grad():
        want = twin._transform_input(_nchw(x)).numpy().transpose(0, 2, 3, 1)
    got = np.asarray(googlenet_transform_input(x))
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-7)
    np.testing.assert_allclose(got, (p - 0.5) / 0.5, rtol=0, atol=1e-6)


@pytest.mark.parametrize("n,k,s,p", [(10, 3, 2, 0), (11, 3, 2, 0), (5, 2, 2, 0), (4, 2, 2, 0),
                                     (7, 3, 1, 1), (5, 3, 3, 1), (8, 3, 3, 1), (9, 1, 2, 0)])
def test_max_pool_ceil_matches_torch(n, k, s, p):
    """Values and input gradient of torch's MaxPool2d(ceil_mode=True) (tie-free input)."""
    x = np.random.default_rng(n + k).normal(size=(2, n, n + 1, 3)).astype(np.float32)
    xt = _nchw(x).requires_grad_(True)
    yt = torch.nn.MaxPool2d(k, s, p, ceil_mode=True)(xt)
    g = np.random.default_rng(1).normal(size=yt.shape).astype(np.float32)
    yt.backward(torch.from_numpy(g))
    got, vjp = jax.vjp(lambda x: max_pool_ceil(x, k, s, p), x)
    assert got.shape == tuple(yt.shape[i] for i in (0, 2, 3, 1))
    np.testing.assert_array_equal(got, yt.detach().numpy().transpose(0, 2, 3, 1))
    grad = vjp(g.transpose(0, 2, 3, 1))[0]
    shared = -(-k // s) ** 2            # windows that share an input pixel, summed in any order
    np.testing.assert_allclose(grad, xt.grad.numpy().transpose(0, 2, 3, 1), rtol=0,
                               atol=max(reduction_atol(shared * np.abs(g).max(), shared), 1e-7))


def test_googlenet_export_loads_strictly_into_torchvision():
    sd = tr.state_dict_numpy(_googlenet_twin())
    v = convert_state_dict(sd, GoogLeNet(), (GN_SIZE, GN_SIZE, 3)).variables
    back = export_state_dict(v, GoogLeNet())
    fresh = _googlenet(aux_logits=False)          # what torchvision builds for the weights
    fresh.load_state_dict({k: torch.from_numpy(a) for k, a in back.items()}, strict=True)
    for k, a in fresh.state_dict().items():
        if not k.endswith("num_batches_tracked"):
            np.testing.assert_array_equal(a.numpy(), sd[k])


def test_googlenet_with_a_real_5x5_branch_is_refused():
    """A GoogLeNet whose "5x5" branch really is 5x5 (not torchvision's) is named exactly."""
    sd = tr.state_dict_numpy(_googlenet_twin())
    sd["inception3a.branch3.1.conv.weight"] = np.zeros((32, 16, 5, 5), np.float32)
    with pytest.raises(ConversionError, match=r"inception3a\.branch3\.1\.conv\.weight: file "
                       r"has \(32, 16, 5, 5\), model expects \(32, 16, 3, 3\)"):
        convert_state_dict(sd, GoogLeNet(), (GN_SIZE, GN_SIZE, 3))


def test_cli_convert_googlenet_pth_matches_torchvision_on_pixels(tmp_path, monkeypatch,
                                                                 capsys):
    """`lst-jax convert` of a saved torchvision .pth (with aux heads) -> load_model: on [0, 1]
    pixels the registry model equals torchvision's googlenet on Normalize(pixels)."""
    spec = ModelSpec(name="googlenet_test-normal", arch="googlenet",
                     normalization=IMAGENET_NORMALIZATION, input_size=(GN_SIZE, GN_SIZE, 3),
                     dataset="imagenet", num_classes=1000, checkpoint="googlenet_test-normal",
                     resize=88, interpolation="bilinear", source="test", weights="g.pth")
    monkeypatch.setitem(REGISTRY, spec.name, spec)
    monkeypatch.setenv("LST_JAX_CHECKPOINTS", str(tmp_path / "ckpts"))
    twin = _googlenet_twin()
    path = tmp_path / "g.pth"
    torch.save(twin.state_dict(), path)
    assert cli.main(["convert", spec.name, str(path)]) == 0
    out = capsys.readouterr().out
    assert "dropped 9 aux1.*, 9 aux2.*, 59 num_batches_tracked" in out
    assert "note: dropped aux1.*, aux2.*: GoogLeNet's auxiliary classifiers" in out
    assert "parameters: 6,624,904" in out

    m = load_model(spec.name)
    assert sum(k.startswith("aux") for k in m.metadata["dropped_keys"]) == 20
    p = np.random.default_rng(2).uniform(size=(1, GN_SIZE, GN_SIZE, 3)).astype(np.float32)
    mean = torch.tensor(IMAGENET_NORMALIZATION.mean).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_NORMALIZATION.std).view(1, 3, 1, 1)
    with torch.no_grad():
        ref = twin((_nchw(p) - mean) / std).numpy()
    got = job._forward(m.model_fn, m.params, p)     # the program the CLI compiled
    assert rel_err(got, ref) <= RTOL


# ----------------------------------------------------------------------------- ViT-B/16
def test_torchvision_vit_matches_layer_by_layer():
    twin = _vit_twin()
    sd = tr.state_dict_numpy(twin)
    assert "encoder.layers.encoder_layer_1.self_attention.in_proj_weight" in sd
    conv = convert_state_dict(sd, ViTTiny(), (32, 32, 3), layout="torchvision")
    assert conv.report["converted"] == len(sd) and conv.report["dropped"] == []
    x = np.random.default_rng(1).normal(size=(4, 32, 32, 3)).astype(np.float32)
    keymap = {"conv_proj": "tokens",
              **{f"encoder.layers.encoder_layer_{i}": f"blocks_{i}" for i in range(2)},
              "encoder.ln": "pre_logits"}
    feats, handles = _capture(twin, {
        "conv_proj": lambda o: o.flatten(2).transpose(1, 2),
        "encoder.layers.encoder_layer_0": lambda o: o,
        "encoder.layers.encoder_layer_1": lambda o: o,
        "encoder.ln": lambda o: o[:, 0]})
    with torch.no_grad():
        ref = twin(_nchw(x)).numpy()
    for h in handles:
        h.remove()
    logits, out = jax.jit(lambda v, x: ViTTiny().apply(v, x))(conv.variables, x)
    assert list(feats) == list(keymap)
    _compare("vit_torchvision", out, feats, keymap)
    assert rel_err(logits, ref) <= RTOL
    assert np.std(ref) > 1e-3


def test_torchvision_vit_export_loads_strictly():
    sd = tr.state_dict_numpy(_vit_twin())
    v = convert_state_dict(sd, ViTTiny(), (32, 32, 3), layout="torchvision").variables
    back = export_state_dict(v, ViTTiny(), layout="torchvision")
    fresh = _tiny_vit()
    fresh.load_state_dict({k: torch.from_numpy(a) for k, a in back.items()}, strict=True)
    for k, a in fresh.state_dict().items():
        np.testing.assert_array_equal(a.numpy(), sd[k])


def test_torchvision_vit_file_needs_the_torchvision_layout():
    sd = tr.state_dict_numpy(_vit_twin())
    with pytest.raises(ConversionError) as e:
        convert_state_dict(sd, ViTTiny(), (32, 32, 3))          # timm rules
    msg = str(e.value)
    assert "(vit rules" in msg and "PyTorch key blocks.0.attn.qkv.weight (96, 32)" in msg
    assert "encoder.layers.encoder_layer_0.self_attention.in_proj_weight (96, 32)" in msg


def test_full_size_torchvision_models_map_onto_the_zoo():
    """Every key and shape of torchvision's vit_b_16 and googlenet (with aux heads), built on
    the meta device (no memory), maps onto ViTBase / GoogLeNet; parameter counts agree."""
    tv = _tv()
    for build, module, layout, skip in (
            (lambda: tv.models.vit_b_16(), ViTBase(), "torchvision", ()),
            (lambda: tv.models.googlenet(aux_logits=True, init_weights=False), GoogLeNet(), "",
             ("aux1.", "aux2."))):
        with torch.device("meta"), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            model = build()
        zero = np.zeros((), np.float32)
        sd = {k: np.broadcast_to(zero, tuple(t.shape)) for k, t in model.state_dict().items()}
        conv = convert_state_dict(sd, module, (224, 224, 3), layout=layout)
        n_tv = sum(p.numel() for n, p in model.named_parameters() if not n.startswith(skip))
        assert sum(a.size for a in jax.tree.leaves(conv.variables["params"])) == n_tv


def test_import_torchvision_helper_gives_working_model_classes_in_a_fresh_process():
    """docs/models.md, "torchvision next to the CPU torch": in a fresh interpreter (nothing
    imported yet) the helper gives a torchvision whose model classes run, and `lpips`, which
    imports torchvision, imports after it."""
    import subprocess
    import sys

    from subproc import ROOT

    code = ("from lst_jax.convert.torchvision_import import import_torchvision\n"
            "import torch\n"
            "tv = import_torchvision()\n"
            "m = tv.models.resnet18(weights=None, num_classes=3).eval()\n"
            "print(tuple(m(torch.zeros(1, 3, 32, 32)).shape))\n"
            "import lpips\n"
            "print(import_torchvision() is tv)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split() == ["(1,", "3)", "True"], proc.stdout
