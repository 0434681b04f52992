"""digits-C corruptions against independent references (scikit-image, Pillow, analytic
moments), their determinism, and the accuracy / mCE measurements."""

import io

import jax
import numpy as np
import pytest
from PIL import Image

from lst_jax.data.digits import load_digits32
from lst_jax.models import load_model
from lst_jax.robustness import (
    CORRUPTIONS,
    CorruptionConfig,
    PGDAttackConfig,
    accuracy,
    corrupt,
    corruption_accuracy,
    corruption_errors,
    corruption_key,
    mean_corruption_error,
    pgd_accuracy,
    pgd_examples,
    relative_mean_corruption_error,
)
from lst_jax.robustness.corruptions import (
    DIGITS_PARAMS,
    PARAMS,
    box_resize_matrix,
    quantisation_table,
)


def _photos(n=3, size=32):
    from skimage import data

    ims = [data.astronaut(), data.chelsea(), data.coffee()][:n]
    return np.stack([np.asarray(Image.fromarray(im).resize((size, size), Image.BILINEAR))
                     for im in ims]).astype(np.float32) / 255


def test_deterministic_in_range_and_batching_independent():
    x, _ = load_digits32("test")
    x = x[:12]
    for name in CORRUPTIONS:
        np.testing.assert_array_equal(
            np.asarray(corrupt(x, name=name, severity=0, key=jax.random.key(0))), x)
        for table, s in (("cifar10", 1), ("digits", 5)):
            k = corruption_key(key=jax.random.key(7), name=name, severity=s)
            a = np.asarray(corrupt(x, name=name, severity=s, key=k, table=table))
            assert a.dtype == np.float32 and a.min() >= 0 and a.max() <= 1
            np.testing.assert_array_equal(
                a, np.asarray(corrupt(x, name=name, severity=s, key=k, table=table)))
            # a slice with its offset gives the rows of the whole set
            part = np.asarray(corrupt(x[5:9], name=name, severity=s, key=k, offset=5,
                                      table=table))
            np.testing.assert_array_equal(part, a[5:9])
    # different seeds give different noise
    k1 = corruption_key(key=jax.random.key(0), name="gaussian_noise", severity=3)
    k2 = corruption_key(key=jax.random.key(1), name="gaussian_noise", severity=3)
    assert not np.array_equal(np.asarray(corrupt(x, name="gaussian_noise", severity=3, key=k1)),
                              np.asarray(corrupt(x, name="gaussian_noise", severity=3, key=k2)))


@pytest.mark.parametrize("severity", [1, 3, 5])
def test_blur_and_brightness_equal_scikit_image(severity):
    from skimage import color
    from skimage.filters import gaussian

    x = _photos()
    sigma = PARAMS["gaussian_blur"][severity - 1]
    ours = np.asarray(corrupt(x, name="gaussian_blur", severity=severity, key=jax.random.key(0)))
    ref = np.stack([gaussian(im, sigma=sigma, channel_axis=-1, mode="nearest", truncate=4.0)
                    for im in x])
    np.testing.assert_allclose(ours, np.clip(ref, 0, 1), atol=1e-6)
    c = PARAMS["brightness"][severity - 1]
    ours = np.asarray(corrupt(x, name="brightness", severity=severity, key=jax.random.key(0)))
    hsv = color.rgb2hsv(x)
    hsv[..., 2] = np.clip(hsv[..., 2] + c, 0, 1)
    np.testing.assert_allclose(ours, color.hsv2rgb(hsv), atol=1e-5)


def test_pixelate_equals_pillow_box_and_jpeg_is_close_to_pillow():
    rng = np.random.default_rng(0)
    for n_in, n_out in [(32, 30), (32, 20), (20, 32), (32, 4), (4, 32), (17, 9)]:
        r = rng.uniform(0, 255, (2, n_in)).astype(np.float32)
        pil = np.asarray(Image.fromarray(r).resize((n_out, 2), Image.BOX))
        np.testing.assert_allclose(r @ box_resize_matrix(n_in, n_out).T, pil, atol=1e-3)
    x = _photos()
    for table in ("cifar10", "digits"):
        for s in (1, 5):
            c = (PARAMS if table == "cifar10" else DIGITS_PARAMS)["pixelate"][s - 1]
            ours = np.asarray(corrupt(x, name="pixelate", severity=s, key=jax.random.key(0),
                                      table=table))
            side = int(32 * c)
            ref = np.stack([np.asarray(Image.fromarray(np.round(im * 255).astype(np.uint8))
                                       .resize((side, side), Image.BOX)
                                       .resize((32, 32), Image.BOX)) for im in x]) / 255
            assert np.abs(ours - ref).max() <= 1.01 / 255   # Pillow rounds to uint8
    for q in (80, 50, 40):
        buf = io.BytesIO()
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(buf, "JPEG", quality=q)
        tables = Image.open(buf).quantization
        np.testing.assert_array_equal(quantisation_table(q).ravel(), tables[0])
        np.testing.assert_array_equal(quantisation_table(q, chroma=True).ravel(), tables[1])
    for s in (1, 5):
        q = PARAMS["jpeg"][s - 1]
        ours = np.asarray(corrupt(x, name="jpeg", severity=s, key=jax.random.key(0)))
        ref = []
        for im in x:
            buf = io.BytesIO()
            Image.fromarray(np.round(im * 255).astype(np.uint8)).save(buf, "JPEG", quality=q,
                                                                       subsampling=0)
            ref.append(np.asarray(Image.open(buf), np.float32) / 255)
        ref = np.stack(ref)
        # our float round trip vs libjpeg's integer one: far closer to each other than to
        # the clean image (the JPEG error itself is ~5-8 grey levels here)
        assert np.abs(ours - ref).mean() < 2 / 255
        assert np.abs(ours - ref).mean() < 0.4 * np.abs(x - ref).mean()


def test_noise_and_contrast_moments():
    x = np.full((64, 32, 32, 3), 0.5, np.float32)
    for s in (1, 5):
        c = PARAMS["gaussian_noise"][s - 1]
        d = np.asarray(corrupt(x, name="gaussian_noise", severity=s, key=jax.random.key(1))) - x
        assert abs(d.mean()) < 1e-3 and d.std() == pytest.approx(c, rel=0.02)
        c = PARAMS["shot_noise"][s - 1]
        y = np.asarray(corrupt(x, name="shot_noise", severity=s, key=jax.random.key(2)))
        assert y.mean() == pytest.approx(0.5, abs=2e-3)
        assert y.var() == pytest.approx(0.5 / c, rel=0.03)
        c = DIGITS_PARAMS["impulse_noise"][s - 1]
        y = np.asarray(corrupt(x, name="impulse_noise", severity=s, key=jax.random.key(3),
                               table="digits"))
        hit = y != 0.5
        assert hit.mean() == pytest.approx(c, rel=0.05)
        assert (y[hit] == 1).mean() == pytest.approx(0.5, abs=0.02)
    xs = _photos()
    for s in (1, 5):
        c = PARAMS["contrast"][s - 1]
        y = np.asarray(corrupt(xs, name="contrast", severity=s, key=jax.random.key(0)))
        m = xs.mean(axis=(1, 2), keepdims=True)
        np.testing.assert_allclose(y, np.clip((xs - m) * c + m, 0, 1), atol=1e-5)


def test_normal_resnet_falls_with_severity_and_mce():
    x, y = load_digits32("test")
    m = load_model("digits_resnet-normal")
    acc = np.asarray(corruption_accuracy(m.model_fn, m.params, x, y, key=jax.random.key(0),
                                         config=CorruptionConfig(table="digits")))
    assert acc.shape == (len(CORRUPTIONS), 5)
    clean = accuracy(m.model_fn, m.params, x, y)
    curve = [clean] + list(acc.mean(0))
    assert all(a > b for a, b in zip(curve, curve[1:])), curve
    assert curve[-1] < 0.6 < 0.95 < curve[1]
    err = 1 - acc
    assert mean_corruption_error(err, err) == pytest.approx(1.0)
    half = err / 2
    np.testing.assert_allclose(corruption_errors(half, err), 0.5)
    assert relative_mean_corruption_error(err, 1 - clean, err, 1 - clean) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="no error"):
        mean_corruption_error(err, np.zeros_like(err))


def test_accuracy_and_pgd_do_not_depend_on_the_chunking():
    x, y = load_digits32("test")
    x, y = x[:40], y[:40]
    m = load_model("digits_resnet-normal")
    assert accuracy(m.model_fn, m.params, x, y, batch_size=7) == accuracy(
        m.model_fn, m.params, x, y, batch_size=64)
    kw = dict(config=PGDAttackConfig(eps=8 / 255, steps=5))
    a = pgd_accuracy(m.model_fn, m.params, x, y, key=jax.random.key(0), batch_size=6, **kw)
    b = pgd_accuracy(m.model_fn, m.params, x, y, key=jax.random.key(0), batch_size=40, **kw)
    assert a == b < accuracy(m.model_fn, m.params, x, y)
    # the attack's images themselves: within the eps-ball and [0, 1], and the accuracy on them
    adv = np.asarray(pgd_examples(m.model_fn, m.params, x, y, key=jax.random.key(0),
                                  batch_size=16, **kw))
    assert np.abs(adv - x).max() <= 8 / 255 + 1e-6 and adv.min() >= 0 and adv.max() <= 1
    assert accuracy(m.model_fn, m.params, adv, y) == a


def test_bad_input():
    x, y = load_digits32("test")
    x, y = x[:4], y[:4]
    with pytest.raises(ValueError, match="unknown corruption 'fog'"):
        corrupt(x, name="fog", severity=1, key=jax.random.key(0))
    with pytest.raises(ValueError, match="severity must be an integer in 0..5"):
        corrupt(x, name="contrast", severity=6, key=jax.random.key(0))
    with pytest.raises(ValueError, match="unknown severity table"):
        corrupt(x, name="contrast", severity=1, key=jax.random.key(0), table="svhn")
    with pytest.raises(ValueError, match=r"images must lie in \[0, 1\]"):
        corrupt(x * 2, name="contrast", severity=1, key=jax.random.key(0))
    m = load_model("digits_resnet-normal")
    with pytest.raises(ValueError, match="eps must be in"):
        pgd_accuracy(m.model_fn, m.params, x, y, key=jax.random.key(0),
                     config=PGDAttackConfig(eps=8))
    with pytest.raises(ValueError, match="labels must have shape"):
        accuracy(m.model_fn, m.params, x, y[:3])
