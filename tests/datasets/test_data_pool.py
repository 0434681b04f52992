"""Data sources (tfds via mock data, image folders, preprocessing) and the PNG target pool."""

import json

import jax
import numpy as np
import pytest
from PIL import Image

from lst_jax.data.folder import FolderSource
from lst_jax.data.pool import TargetPool, build_target_pool, load_pool, pixel_scale, save_pool
from lst_jax.data.preprocess import resize_center_crop_uint8
from lst_jax.data.sources import ArraySource, open_source


def test_tfds_cifar10_and_imagenet_with_mock_data():
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=6):
        src = open_source("cifar10")
        assert len(src) == 6 and src.num_classes == 10 and src.name == "cifar10-test"
        x, y = src.get([0, 3])
        assert x.shape == (2, 32, 32, 3) and x.dtype == np.float32 and y.dtype == np.int32
        assert 0 <= x.min() and x.max() <= 1 and np.all((x * 255) % 1 == 0)
        inet = open_source("imagenet2012")            # random-size images -> 256 -> 224 crop
        x, y = inet.get([0, 1, 2])
        assert x.shape == (3, 224, 224, 3) and inet.num_classes == 1000
        assert np.all((0 <= y) & (y < 1000))
        with pytest.raises(ValueError, match="out of range"):
            src.get([6])


def test_tfds_missing_data_message(tmp_path):
    pytest.importorskip("tensorflow_datasets")
    with pytest.raises(FileNotFoundError, match="not available in .*never downloads.*tfds "
                                                "build cifar10"):
        open_source("cifar10", data_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match="tfds build imagenet2012 --file_format="
                                                "array_record --manual_dir=DIR` \\(DIR holds "
                                                "the ILSVRC2012 tar files"):
        open_source("imagenet2012", data_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match="--data-dir .*nowhere does not exist"):
        open_source("cifar10", data_dir=tmp_path / "nowhere")
    with pytest.raises(ValueError, match="unknown data source"):
        open_source("mnist")


def test_resize_center_crop_matches_torchvision_geometry():
    img = (np.arange(300 * 400 * 3) % 251).astype(np.uint8).reshape(300, 400, 3)
    out = resize_center_crop_uint8(img, 224, 256)
    assert out.shape == (224, 224, 3) and out.dtype == np.uint8
    # Short side 300 -> 256, long side int(256 * 400 / 300) = 341; crop offsets round(.5 x).
    same = resize_center_crop_uint8(img, None, None)
    np.testing.assert_array_equal(same, img)
    crop = resize_center_crop_uint8(img, 100, None)
    np.testing.assert_array_equal(crop, img[100:200, 150:250])
    with pytest.raises(ValueError, match="smaller than the crop"):
        resize_center_crop_uint8(img, 500, None)
    with pytest.raises(ValueError, match="uint8"):
        resize_center_crop_uint8(img.astype(np.float32), 10, None)


def _write(path, arr):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def test_folder_source_layouts_and_errors(tmp_path):
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)
    b = rng.integers(0, 256, (20, 24), dtype=np.uint8)              # grey -> RGB
    _write(tmp_path / "cls" / "3" / "x.png", a)
    _write(tmp_path / "cls" / "7" / "y.png", b)
    src = FolderSource(tmp_path / "cls")
    x, y = src.get([0, 1])
    assert x.shape == (2, 20, 24, 3) and list(y) == [3, 7] and src.num_classes == 8
    np.testing.assert_array_equal(np.round(x[0] * 255).astype(np.uint8), a)
    np.testing.assert_array_equal(x[1, ..., 0], x[1, ..., 2])
    _write(tmp_path / "flat" / "a.png", a)
    _write(tmp_path / "flat" / "b.jpg", rng.integers(0, 256, (30, 30, 3), dtype=np.uint8))
    flat = FolderSource(tmp_path / "flat")
    assert list(flat.labels) == [-1, -1] and flat.num_classes is None
    with pytest.raises(ValueError, match="different sizes"):
        flat.get([0, 1])
    x, _ = FolderSource(tmp_path / "flat", image_size=16, resize=16).get([0, 1])
    assert x.shape == (2, 16, 16, 3)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="cannot read image"):
        FolderSource(tmp_path / "bad").get([0])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no image files"):
        FolderSource(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        FolderSource(tmp_path / "missing")


def test_folder_and_tfds_share_index_and_size_checks(tmp_path):
    """Both sources validate indices and stack through `check_indices` / `stack_images`."""
    rng = np.random.default_rng(0)
    _write(tmp_path / "flat" / "a.png", rng.integers(0, 256, (20, 24, 3), dtype=np.uint8))
    _write(tmp_path / "flat" / "b.png", rng.integers(0, 256, (30, 30, 3), dtype=np.uint8))
    flat = FolderSource(tmp_path / "flat")
    for bad in ([2], [-1]):
        with pytest.raises(ValueError, match=r"indices \[-?\d\] out of range for folder:.*"
                                             r"\(2 images\)"):
            flat.get(bad)
    with pytest.raises(ValueError, match=r"images in .*flat have different sizes "
                                         r"\[\(20, 24, 3\), \(30, 30, 3\)\]; pass an image size"):
        flat.get([0, 1])
    x, y = flat.get(np.zeros((0,), np.int64))
    assert x.shape == (0, 1, 1, 3) and x.dtype == np.float32 and y.shape == (0,)
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=4):
        inet = open_source("imagenet2012")
        with pytest.raises(ValueError, match=r"indices \[4, -1\] out of range for "
                                             r"imagenet2012-validation \(4 images\)"):
            inet.get([0, 4, -1])
        inet.image_size = inet.resize = None                      # random-size mock images
        with pytest.raises(ValueError, match="imagenet2012-validation images have different "
                                             "sizes .*; pass an image size"):
            inet.get([0, 1, 2, 3])
        x, y = inet.get([])
        assert x.shape == (0, 1, 1, 3) and y.dtype == np.int32


def test_pool_png_round_trip_is_exact_for_8bit_and_digits(tmp_path):
    x8 = np.random.default_rng(1).integers(0, 256, (3, 8, 8, 3)).astype(np.float32) / 255
    assert pixel_scale(x8) == 255
    from lst_jax.data.digits import load_digits32

    xd, yd = load_digits32("test")
    assert pixel_scale(xd[:20]) == 240                   # the digits' k/16 levels
    for name, imgs in (("u8", x8), ("digits", xd[:3])):
        pool = TargetPool(imgs, [5, 1, 9], [10, 11, 12], {"dataset": name})
        save_pool(pool, tmp_path / name, models=["m"])
        back = load_pool(tmp_path / name)
        np.testing.assert_array_equal(back.labels, [1, 5, 9])       # sorted by class
        np.testing.assert_array_equal(back.source_index, [11, 10, 12])
        np.testing.assert_array_equal(back.images, pool.images)      # bit-exact
        assert back.digest() == pool.digest() and back.meta["models"] == ["m"]
        assert sorted(p.name for p in (tmp_path / name).glob("*.png")) == [
            "target_0001.png", "target_0005.png", "target_0009.png"]
    with pytest.raises(ValueError, match="not exactly representable"):
        pixel_scale(np.full((1, 2, 2, 3), 0.123456, np.float32))
    with pytest.raises(ValueError, match="one image per class"):
        TargetPool(x8, [1, 1, 2], [0, 1, 2])


def test_load_pool_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_pool(tmp_path / "none")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no manifest.json"):
        load_pool(tmp_path / "empty")
    x = np.random.default_rng(2).integers(0, 256, (2, 4, 4, 3)).astype(np.float32) / 255
    save_pool(TargetPool(x, [0, 1], [0, 1]), tmp_path / "p")
    m = json.loads((tmp_path / "p" / "manifest.json").read_text())
    (tmp_path / "p" / "manifest.json").write_text("{not json")
    with pytest.raises(ValueError, match="malformed target pool manifest"):
        load_pool(tmp_path / "p")
    (tmp_path / "p" / "manifest.json").write_text(json.dumps(m))
    _write(tmp_path / "p" / "target_0001.png", np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(ValueError, match="digest"):
        load_pool(tmp_path / "p")
    (tmp_path / "p" / "target_0001.png").unlink()
    with pytest.raises(FileNotFoundError, match="target_0001.png"):
        load_pool(tmp_path / "p")


def _linear(params, x):
    return (x - 0.5).reshape(x.shape[0], -1) @ params


def test_build_target_pool_first_confident_image_per_class():
    rng = np.random.default_rng(3)
    x = rng.random((60, 4, 4, 3), dtype=np.float32)
    w1 = jax.random.normal(jax.random.key(0), (48, 4)) * 2.0
    pred = np.asarray((x - 0.5).reshape(60, -1) @ np.asarray(w1)).argmax(-1)
    labels = pred.copy()
    labels[::7] = (labels[::7] + 1) % 4                     # some wrong labels
    src = ArraySource(x, labels, num_classes=4)
    pool = build_target_pool([(_linear, w1)], src, min_conf=0.6, batch=16)
    probs = np.asarray(jax.nn.softmax(_linear(w1, x), -1))
    ok = (probs.argmax(-1) == labels) & (probs[np.arange(60), labels] > 0.6)
    for c, i in zip(pool.labels, pool.source_index):
        assert i == np.flatnonzero(ok & (labels == c))[0]
    np.testing.assert_array_equal(pool.images, x[pool.source_index])
    # A second model that disagrees everywhere leaves no qualifying image.
    with pytest.raises(ValueError, match="no image of class"):
        build_target_pool([(_linear, w1), (_linear, -w1)], src, classes=[0, 1])
    # Without explicit classes (every class wanted) a class without images can be skipped.
    keep = labels != 3
    part = ArraySource(x[keep], labels[keep], num_classes=4)
    pool = build_target_pool([(_linear, w1)], part, skip_missing=True)
    assert 3 not in pool.labels and pool.meta["missing_classes"] == [3]
    with pytest.raises(ValueError, match="only 0 class"):
        build_target_pool([(_linear, w1), (_linear, -w1)], src, skip_missing=True)
