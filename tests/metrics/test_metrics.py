"""Table-1 image distances: RMSE/L2/L-inf, SSIM (vs scikit-image and a float64 numpy version of
the 2023 torchmetrics algorithm), LPIPS (shipped weights, published example values), the
PyTorch-weight converter and the batched evaluator. No torch needed."""

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lst_jax import metrics as M
from lst_jax.metrics import batched, perceptual, structural
from tolerances import EPS32, reduction_atol

DATA = Path(__file__).resolve().parents[1] / "data" / "lpips_examples"
CIFAR = (32, 32, 3)


def _rand(seed, n, shape=CIFAR):
    return np.random.default_rng(seed).uniform(size=(n,) + shape).astype(np.float32)


@pytest.fixture(scope="module")
def photos():
    """Three skimage photos at 224x224 and noisy / different partners."""
    from lst_jax.data.photos import load_photos

    imgs, _ = load_photos(("chelsea", "coffee", "rocket"), size=224)
    rng = np.random.default_rng(3)
    noisy = np.clip(imgs + rng.normal(0, 0.05, imgs.shape), 0, 1).astype(np.float32)
    a = np.concatenate([imgs, imgs[:2]])
    b = np.concatenate([noisy, imgs[[2, 0]]])
    return a, b


def _png(name):
    from PIL import Image

    with Image.open(DATA / f"{name}.png") as im:
        return np.asarray(im.convert("RGB"), np.float32)[None] / 255.0


# --- pixel distances ------------------------------------------------------------------------

def test_pixel_distances_match_numpy():
    a, b = _rand(0, 4), _rand(1, 4)
    d = (a - b).reshape(4, -1).astype(np.float64)
    ss = np.sum(d ** 2, axis=1)              # exact to float64 round-off
    # float32 sum of n squares: within gamma_(n-1) * sum of the exact value in any order, and
    # sqrt halves a relative error (plus the square and the sqrt's own roundings, 2 eps)
    rtol = reduction_atol(1.0, d.shape[1], orders=1) / 2 + 2 * EPS32
    np.testing.assert_allclose(M.l2(a, b), np.sqrt(ss), rtol=rtol)
    np.testing.assert_allclose(M.rmse(a, b), np.sqrt(ss / d.shape[1]), rtol=rtol + EPS32)
    np.testing.assert_allclose(M.linf(a, b), np.abs(d).max(axis=1), rtol=0)


@pytest.mark.parametrize("shape", [(32, 32, 3), (224, 224, 3), (20, 12, 1)])
def test_rmse_divides_by_the_actual_image_size(shape):
    """Reference bug #12: the divisor is sqrt(H*W*C) of these images, not sqrt(224*224*3)."""
    zeros, ones = np.zeros((1,) + shape, np.float32), np.ones((1,) + shape, np.float32)
    np.testing.assert_allclose(M.rmse(zeros, ones), [1.0], rtol=1e-6)
    np.testing.assert_allclose(M.l2(zeros, ones), [np.sqrt(np.prod(shape))], rtol=1e-6)
    np.testing.assert_allclose(M.linf(zeros, ones * 0.25), [0.25])


def _bad_inputs():
    a = _rand(0, 2)
    nan = a.copy()
    nan[0, 0, 0, 0] = np.nan
    return [
        ("shape", a, _rand(1, 2, (32, 30, 3)), "same shape"),
        ("batch", a, _rand(1, 3), "same shape"),
        ("rank", a[0], a[0], "rank 4"),
        ("range", a, a + 0.5, "[0, 1]"),
        ("nan", a, nan, "NaN"),
        ("nchw", a.transpose(0, 3, 1, 2), a.transpose(0, 3, 1, 2), "NCHW"),
        ("dtype", (a * 255).astype(np.uint8), (a * 255).astype(np.uint8), "floating point"),
    ]


@pytest.mark.parametrize("fn", [M.rmse, M.l2, M.linf, M.ssim, M.lpips],
                         ids=lambda f: f.__name__)
@pytest.mark.parametrize("case", _bad_inputs(), ids=lambda c: c[0])
def test_bad_inputs_raise_value_error_naming_the_argument(fn, case):
    _, a, b, msg = case
    with pytest.raises(ValueError, match=msg) as e:
        fn(a, b)
    assert str(e.value).split()[0] in ("a", "b")


@pytest.mark.parametrize("case", _bad_inputs(), ids=lambda c: c[0])
def test_image_distances_bad_inputs(case):
    _, a, b, msg = case
    with pytest.raises(ValueError, match=msg) as e:
        M.image_distances(a, b)
    assert str(e.value).split()[0] in ("outputs", "targets")


# --- SSIM -----------------------------------------------------------------------------------

def test_ssim_kernel_is_the_torchmetrics_window():
    taps = structural.gaussian_taps(1.5)
    assert taps.shape == (11,) and abs(taps.sum() - 1) < 1e-15
    np.testing.assert_allclose(taps, np.exp(-np.arange(-5, 6) ** 2 / 4.5) /
                               np.exp(-np.arange(-5, 6) ** 2 / 4.5).sum())


def test_ssim_identity_symmetry_and_map_size():
    a, b = _rand(0, 3), _rand(1, 3)
    np.testing.assert_allclose(M.ssim(a, a), np.ones(3), atol=1e-6)
    np.testing.assert_allclose(M.ssim(a, b), M.ssim(b, a), atol=1e-7)
    assert M.ssim_map(a, b).shape == (3, 22, 22, 3)   # only fully interior 11x11 windows
    with pytest.raises(ValueError, match="at least 11x11"):
        M.ssim(_rand(0, 1, (10, 32, 3)), _rand(1, 1, (10, 32, 3)))


def _skimage_ssim(a, b):
    from skimage.metrics import structural_similarity

    return np.array([structural_similarity(
        x.astype(np.float64), y.astype(np.float64), gaussian_weights=True, sigma=1.5,
        use_sample_covariance=False, data_range=1.0, channel_axis=-1) for x, y in zip(a, b)])


def _torchmetrics2023_ssim_f64(a, b):
    """torchmetrics' 2023 SSIM written out in float64 numpy: reflect pad 5, full 11x11 window
    (outer product of the 1-D taps), biased moments, crop 5 per side, mean per image."""
    g = np.exp(-0.5 * (np.arange(-5, 6) / 1.5) ** 2)
    g /= g.sum()
    win = np.outer(g, g)
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    out = []
    for x, y in zip(a.astype(np.float64), b.astype(np.float64)):
        pad = lambda z: np.pad(z, ((5, 5), (5, 5), (0, 0)), mode="reflect")  # noqa: E731
        x, y = pad(x), pad(y)

        def conv(z):   # "valid" correlation per channel
            v = np.lib.stride_tricks.sliding_window_view(z, (11, 11), axis=(0, 1))
            return np.einsum("hwcij,ij->hwc", v, win)

        mx, my = conv(x), conv(y)
        vx, vy, cxy = conv(x * x) - mx ** 2, conv(y * y) - my ** 2, conv(x * y) - mx * my
        s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2))
        out.append(s[5:-5, 5:-5].mean())   # crop the (padding-affected) border
    return np.array(out)


def test_ssim_matches_skimage_on_random_images():
    a, b = _rand(0, 3), _rand(1, 3)
    b[0] = np.clip(a[0] + 0.02 * (b[0] - 0.5), 0, 1)   # a near-identical pair too
    np.testing.assert_allclose(M.ssim(a, b), _skimage_ssim(a, b), atol=1e-5, rtol=0)


def test_ssim_matches_skimage_on_photos(photos):
    a, b = photos
    ours = np.asarray(M.ssim(a, b))
    np.testing.assert_allclose(ours, _skimage_ssim(a, b), atol=1e-5, rtol=0)
    assert ours[0] < 1.0 and ours[3] < ours[0]  # different photos are less similar


def test_ssim_matches_float64_torchmetrics2023_algorithm(photos):
    a, b = photos
    crop = (slice(None), slice(40, 120), slice(60, 160))    # 80x100 crops keep numpy fast
    a, b = a[crop], b[crop]
    a2, b2 = np.concatenate([a[:2], _rand(0, 2, a.shape[1:])]), np.concatenate(
        [b[:2], _rand(1, 2, a.shape[1:])])
    np.testing.assert_allclose(M.ssim(a2, b2), _torchmetrics2023_ssim_f64(a2, b2), atol=1e-5,
                               rtol=0)


def test_ssim_near_flat_images_stay_accurate():
    """Low-variance images stress E[x^2] - E[x]^2 in float32 (the reason for centring)."""
    rng = np.random.default_rng(0)
    a = np.full((1,) + CIFAR, 0.9, np.float32)
    b = np.clip(a + rng.normal(0, 1e-3, a.shape), 0, 1).astype(np.float32)
    np.testing.assert_allclose(M.ssim(a, b), _skimage_ssim(a, b), atol=1e-6, rtol=0)


def test_ssim_is_jittable_and_differentiable():
    a, b = _rand(0, 2), _rand(1, 2)
    np.testing.assert_allclose(jax.jit(M.ssim)(a, b), M.ssim(a, b), atol=1e-7)
    g = jax.grad(lambda x: M.ssim(x, b).sum())(jnp.asarray(a))
    assert g.shape == a.shape and bool(jnp.all(jnp.isfinite(g)))
    # one gradient step toward b raises SSIM
    assert float(M.ssim(jnp.clip(a + 0.5 * g, 0, 1), b).sum()) > float(M.ssim(a, b).sum())


# --- LPIPS ----------------------------------------------------------------------------------

def test_shipped_lpips_weights_layout_and_provenance():
    params = M.load_lpips_params()
    shapes = jax.tree.map(lambda x: x.shape, params)
    assert shapes == jax.tree.map(tuple, perceptual.param_shapes(),
                                  is_leaf=lambda x: isinstance(x, tuple))
    assert all(bool((w >= 0).all()) for w in params["lin"].values())
    _, meta = perceptual.read_weights_file(perceptual.default_weights_path())
    assert meta["params_sha256"] == M.params_digest(params)
    assert M.load_lpips_params() is params    # cached


def test_lpips_reproduces_published_example_distances():
    """LPIPS' own example (imgs/ex_ref.png vs ex_p0 / ex_p1, v0.1 AlexNet with torchvision's
    ImageNet weights) prints (0.722, 0.138): the shipped backbone is torchvision's AlexNet."""
    ref, p0, p1 = _png("ex_ref"), _png("ex_p0"), _png("ex_p1")
    d = np.asarray(M.lpips(np.concatenate([ref, ref]), np.concatenate([p0, p1])))
    np.testing.assert_allclose(d, [0.722, 0.138], atol=6e-4)


def test_lpips_identity_symmetry_and_sizes():
    a, b = _rand(0, 2), _rand(1, 2)
    assert np.all(np.asarray(M.lpips(a, a)) == 0.0)   # exactly
    d = np.asarray(M.lpips(a, b))
    assert np.all(d > 0.05)
    np.testing.assert_allclose(M.lpips(b, a), d, rtol=1e-6)
    with pytest.raises(ValueError, match="at least 31x31"):
        M.lpips(_rand(0, 1, (30, 40, 3)), _rand(1, 1, (30, 40, 3)))
    with pytest.raises(ValueError, match="3 .RGB. channels"):
        M.lpips(_rand(0, 1, (32, 32, 1)), _rand(1, 1, (32, 32, 1)))


def test_lpips_features_have_alexnet_shapes():
    p = M.load_lpips_params()
    shapes = [f.shape for f in M.alexnet_features(p["alexnet"], jnp.zeros((1, 224, 224, 3)))]
    assert shapes == [(1, 55, 55, 64), (1, 27, 27, 192), (1, 13, 13, 384), (1, 13, 13, 256),
                      (1, 13, 13, 256)]


def test_lpips_is_jittable_and_differentiable():
    a, b = _rand(0, 2), _rand(1, 2)
    p = M.load_lpips_params()
    grad = jax.jit(jax.value_and_grad(lambda x, y: M.lpips(x, y, params=p).sum()))
    v, g = grad(a, b)                                   # validation is skipped on tracers
    np.testing.assert_allclose(v, np.asarray(M.lpips(a, b)).sum(), rtol=1e-6)
    assert bool(jnp.all(jnp.isfinite(g))) and float(jnp.abs(g).max()) > 0
    v0, g0 = grad(a, a)
    assert float(v0) == 0.0 and bool(jnp.all(g0 == 0))  # minimum at a == b; no sqrt(0) NaN


def test_bad_lpips_params_raise():
    p = jax.tree.map(np.asarray, M.load_lpips_params())
    a = _rand(0, 1)
    with pytest.raises(ValueError, match="missing"):
        M.lpips(a, a, params={"alexnet": p["alexnet"], "lin": {}})
    bad = {"alexnet": p["alexnet"], "lin": dict(p["lin"], lin1=-p["lin"]["lin1"] - 1)}
    with pytest.raises(ValueError, match="negative"):
        M.image_distances(a, a, lpips_params=bad)


# --- converter and weight files -------------------------------------------------------------

def _torchvision_alexnet_sd(params, seed=0):
    """A torchvision-keyed AlexNet state dict (numpy) holding `params`' backbone."""
    sd = M.lpips_params_to_torch(params)
    tv = {}
    for k, v in sd.items():
        if k.startswith("net.slice"):
            _, _, j, t = k.split(".")
            tv[f"features.{j}.{t}"] = v
    rng = np.random.default_rng(seed)
    tv["classifier.1.weight"] = rng.normal(size=(8, 4)).astype(np.float32)  # ignored
    heads = {k: v for k, v in sd.items() if k.startswith("lin")}
    return tv, heads


def _assert_trees_equal(x, y):
    jax.tree.map(lambda u, v: np.testing.assert_array_equal(np.asarray(u), np.asarray(v)), x, y)


def test_converter_round_trips_both_torch_layouts():
    params = jax.tree.map(np.asarray, M.load_lpips_params())
    _assert_trees_equal(M.lpips_params_from_torch(M.lpips_params_to_torch(params)), params)
    tv, heads = _torchvision_alexnet_sd(params)
    _assert_trees_equal(M.lpips_params_from_torch(tv, heads), params)
    # dropout-free heads are named model.0
    heads0 = {k.replace("model.1", "model.0"): v for k, v in heads.items()}
    _assert_trees_equal(M.lpips_params_from_torch(tv, heads0), params)


def test_converter_rejects_bad_state_dicts():
    params = jax.tree.map(np.asarray, M.load_lpips_params())
    tv, heads = _torchvision_alexnet_sd(params)
    with pytest.raises(ValueError, match="missing .'features.3.bias'"):
        M.lpips_params_from_torch({k: v for k, v in tv.items() if k != "features.3.bias"},
                                  heads)
    with pytest.raises(ValueError, match="unexpected entries .'features.99.weight'"):
        M.lpips_params_from_torch(dict(tv, **{"features.99.weight": np.zeros(1)}), heads)
    with pytest.raises(ValueError, match="heads_state_dict is missing"):
        M.lpips_params_from_torch(tv, {})
    with pytest.raises(ValueError, match="expected .1, 64, 1, 1."):
        M.lpips_params_from_torch(tv, dict(heads, **{"lin0.model.1.weight": np.ones(3)}))
    with pytest.raises(ValueError, match="conv1.*shape"):
        M.lpips_params_from_torch(dict(tv, **{"features.0.weight": np.zeros((64, 3, 5, 5))}),
                                  heads)
    with pytest.raises(ValueError, match="neither torchvision"):
        M.lpips_params_from_torch({"foo": np.zeros(1)})


@pytest.mark.parametrize("suffix", [".npz", ".safetensors"])
def test_weight_files_round_trip(tmp_path, suffix):
    pytest.importorskip("safetensors") if suffix == ".safetensors" else None
    params = jax.tree.map(np.asarray, M.load_lpips_params())
    path = M.save_lpips_params(tmp_path / f"w{suffix}", params, {"note": "test"})
    _assert_trees_equal(M.load_lpips_params(path), params)
    with pytest.raises(ValueError, match="does not exist"):
        M.load_lpips_params(tmp_path / "missing.npz")
    with pytest.raises(ValueError, match=".npz or .safetensors"):
        M.save_lpips_params(tmp_path / "w.pkl", params)


# --- batched evaluator ----------------------------------------------------------------------

def test_image_distances_equals_the_single_metrics_and_compiles_once():
    a, b = _rand(0, 7), _rand(1, 7)
    b[0] = a[0]
    before = batched._distances_batch._cache_size()
    d = M.image_distances(a, b, batch_size=4)          # 2 batches, the last one padded
    assert list(d) == ["rmse", "linf", "ssim", "lpips"]
    assert all(v.shape == (7,) and v.dtype == np.float32 for v in d.values())
    for k in ("rmse", "linf", "ssim", "lpips"):   # batch 2: programs shared with other tests
        for s in (slice(0, 2), slice(5, 7)):
            np.testing.assert_allclose(d[k][s], getattr(M, k)(a[s], b[s]), rtol=1e-5,
                                       atol=1e-6, err_msg=k)
    assert d["lpips"][0] == 0.0 and d["ssim"][0] == pytest.approx(1.0, abs=1e-6)
    M.image_distances(a[:3], b[:3], batch_size=4)      # ragged sizes reuse the program
    M.image_distances(jnp.asarray(a[:5]), jnp.asarray(b[:5]), batch_size=4)
    assert batched._distances_batch._cache_size() == before + 1


def test_image_distances_options():
    a, b = _rand(0, 3, (12, 12, 1)), _rand(1, 3, (12, 12, 1))
    d = M.image_distances(a, b, metrics=("l2", "ssim"), batch_size=2, progress=False)
    assert list(d) == ["l2", "ssim"]
    np.testing.assert_allclose(d["l2"], M.l2(a, b), rtol=1e-6)
    with pytest.raises(ValueError, match="lpips"):
        M.image_distances(a, b, metrics=("lpips",))      # too small / 1 channel
    with pytest.raises(ValueError, match="metrics must be"):
        M.image_distances(a, b, metrics=("psnr",))
    with pytest.raises(ValueError, match="batch_size"):
        M.image_distances(a, b, batch_size=0)
