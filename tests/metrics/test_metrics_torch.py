"""Image distances against PyTorch: the `lpips` 0.1.4 package, a hand-written torch LPIPS
forward (for converted torchvision-format weights) and torchmetrics' 2023 SSIM."""

import warnings

import jax
import numpy as np
import pytest

from conftest import HAVE_TORCH
from lst_jax import metrics as M

pytestmark = pytest.mark.skipif(not HAVE_TORCH, reason="needs the optional torch extra")

CHANNELS = (64, 192, 384, 256, 256)
TV_CONVS = ((0, 3, 64, 11, 4, 2), (3, 64, 192, 5, 1, 2), (6, 192, 384, 3, 1, 1),
            (8, 384, 256, 3, 1, 1), (10, 256, 256, 3, 1, 1))  # features idx, cin, cout, k, s, p


def _rand(seed, n, shape):
    return np.random.default_rng(seed).uniform(size=(n,) + shape).astype(np.float32)


def _nchw(x, dtype=None):
    import torch

    t = torch.from_numpy(np.ascontiguousarray(np.asarray(x).transpose(0, 3, 1, 2)))
    return t if dtype is None else t.to(dtype)


@pytest.fixture(scope="module")
def pairs():
    """(a, b) batches at CIFAR size, 64x64 and 224x224 (photos vs noisy / other photos)."""
    from lst_jax.data.photos import load_photos

    imgs, _ = load_photos(("chelsea", "coffee"), size=224)
    noisy = np.clip(imgs + np.random.default_rng(0).normal(0, 0.05, imgs.shape), 0, 1)
    return {
        "cifar": (_rand(0, 3, (32, 32, 3)), _rand(1, 3, (32, 32, 3))),
        "64": (_rand(2, 2, (64, 64, 3)), _rand(3, 2, (64, 64, 3))),
        "photos224": (np.concatenate([imgs, imgs[:1]]),
                      np.concatenate([noisy, imgs[1:]]).astype(np.float32)),
    }


def _import_lpips():
    """The `lpips` package imports torchvision, which needs importing next to the
    CPU torch (`lst_jax.convert.torchvision_import.import_torchvision`; AlexNet is unaffected)."""
    from torch_reference import import_torchvision

    try:
        import_torchvision()
        import lpips
    except Exception as e:  # pragma: no cover - depends on the installed extras
        pytest.skip(f"the lpips package is not importable: {type(e).__name__}: {e}")
    return lpips


def _lpips_module(lpips, params):
    """`lpips.LPIPS(net='alex')` with its own shipped v0.1 heads and our AlexNet weights."""
    import torch

    with warnings.catch_warnings():  # torchvision: "'pretrained' is deprecated"
        warnings.simplefilter("ignore", UserWarning)
        model = lpips.LPIPS(net="alex", version="0.1", pnet_rand=True, verbose=False)
    sd = {k: torch.from_numpy(v) for k, v in M.lpips_params_to_torch(params).items()
          if k.startswith("net.")}
    res = model.load_state_dict(sd, strict=False)
    assert not res.unexpected_keys
    assert all(k.startswith(("lin", "scaling_layer")) for k in res.missing_keys)
    return model.eval()


def test_shipped_heads_equal_the_lpips_package_heads():
    lpips = _import_lpips()
    from lst_jax.metrics.convert import installed_lpips_heads_path, load_torch_state_dict

    heads = load_torch_state_dict(installed_lpips_heads_path())
    ours = M.load_lpips_params()["lin"]
    for i, c in enumerate(CHANNELS):
        np.testing.assert_array_equal(heads[f"lin{i}.model.1.weight"].reshape(c),
                                      np.asarray(ours[f"lin{i + 1}"]))
    assert lpips is not None


@pytest.mark.parametrize("case", ["cifar", "64", "photos224"])
def test_lpips_matches_the_pytorch_lpips_package(pairs, case):
    import torch

    lpips = _import_lpips()
    model = _lpips_module(lpips, jax.tree.map(np.asarray, M.load_lpips_params()))
    a, b = pairs[case]
    with torch.no_grad():
        # normalize=True maps [0, 1] to [-1, 1], what LST does before calling LPIPS
        want = model(_nchw(a), _nchw(b), normalize=True).reshape(-1).numpy()
        same = model(_nchw(a), _nchw(a), normalize=True).reshape(-1).numpy()
    got = np.asarray(M.lpips(a, b))
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
    np.testing.assert_allclose(np.asarray(M.lpips(a, a)), same, atol=1e-6)
    assert np.all(np.asarray(M.lpips(a, a)) == 0.0)


def _torch_lpips_reference(tv_sd, heads_sd, x0, x1):
    """LPIPS v0.1-AlexNet written from the paper/spec with torch.nn.functional (independent of
    the lpips package): inputs NCHW in [0, 1]."""
    import torch
    import torch.nn.functional as F

    shift = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)
    scale = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)

    def feats(x):
        x = ((2 * x - 1) - shift) / scale
        out = []
        for n, (j, _, _, _, s, p) in enumerate(TV_CONVS):
            if n in (1, 2):
                x = F.max_pool2d(x, 3, 2)
            x = F.relu(F.conv2d(x, tv_sd[f"features.{j}.weight"], tv_sd[f"features.{j}.bias"],
                                stride=s, padding=p))
            out.append(x)
        return out

    total = 0
    for i, (f0, f1) in enumerate(zip(feats(x0), feats(x1))):
        n0 = f0 / (torch.sqrt((f0 ** 2).sum(1, keepdim=True)) + 1e-10)
        n1 = f1 / (torch.sqrt((f1 ** 2).sum(1, keepdim=True)) + 1e-10)
        d = F.conv2d((n0 - n1) ** 2, heads_sd[f"lin{i}.model.1.weight"])
        total = total + d.mean((2, 3))
    return total.reshape(-1)


def test_converted_torchvision_checkpoint_matches_torch_reference(tmp_path, pairs):
    """A random torchvision-format AlexNet .pth + lpips-format heads .pth, converted with
    torch.load(weights_only=True), gives the same distances as a torch forward pass."""
    import torch

    g = torch.Generator().manual_seed(0)
    tv = {}
    for j, cin, cout, k, _, _ in TV_CONVS:
        tv[f"features.{j}.weight"] = torch.randn(cout, cin, k, k, generator=g) * (
            2.0 / (cin * k * k)) ** 0.5
        tv[f"features.{j}.bias"] = 0.1 * torch.randn(cout, generator=g)
    tv["classifier.1.weight"] = torch.randn(16, 8, generator=g)   # ignored by the converter
    tv["classifier.1.bias"] = torch.randn(16, generator=g)
    heads = {f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1, generator=g) * 0.1
             for i, c in enumerate(CHANNELS)}
    torch.save(tv, tmp_path / "alexnet.pth")
    torch.save(heads, tmp_path / "alex_heads.pth")
    params = M.lpips_params_from_torch_files(tmp_path / "alexnet.pth", tmp_path / "alex_heads.pth")
    a, b = pairs["64"]
    with torch.no_grad():
        want = _torch_lpips_reference(tv, heads, _nchw(a), _nchw(b)).numpy()
    np.testing.assert_allclose(np.asarray(M.lpips(a, b, params=params)), want, atol=1e-5,
                               rtol=1e-5)
    # and through a weights file, as a user would load it
    path = M.save_lpips_params(tmp_path / "mine.npz", params)
    np.testing.assert_allclose(np.asarray(M.lpips(a, b, params=M.load_lpips_params(path))),
                               want, atol=1e-5, rtol=1e-5)


def _torchmetrics_ssim():
    tm = pytest.importorskip("torchmetrics")
    from packaging.version import Version

    if Version(tm.__version__) > Version("1.4.1"):
        pytest.skip(f"torchmetrics {tm.__version__} averages the uncropped SSIM map (changed in "
                    "1.4.2, Lightning-AI/torchmetrics#2721); the LST semantics are 1.2.x's")
    from torchmetrics.functional.image import structural_similarity_index_measure

    return structural_similarity_index_measure


@pytest.mark.parametrize("case", ["cifar", "photos224"])
def test_ssim_matches_torchmetrics_2023(pairs, case):
    """torchmetrics <= 1.4.1 reflect-pads by 5 and crops 5 per side; in float64 it is exact, in
    float32 it carries its own E[x^2] - E[x]^2 rounding (~1e-6 here)."""
    import torch

    tm_ssim = _torchmetrics_ssim()
    a, b = pairs[case]
    ours = np.asarray(M.ssim(a, b))
    for dtype, tol in ((torch.float64, 1e-5), (torch.float32, 2e-5)):
        want = tm_ssim(_nchw(a, dtype), _nchw(b, dtype), data_range=1.0,
                       reduction="none").numpy()
        np.testing.assert_allclose(ours, want, atol=tol, rtol=0, err_msg=str(dtype))
