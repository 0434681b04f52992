"""`examples`, `pool`, `full-eval` and `iaside` through the CLI on a model the registry does not
name (issue 18): a random-initialised 10-class torchvision ResNet-18 at 32x32, saved with
`torch.save(state_dict)` and converted with `lst-jax convert WEIGHTS --arch resnet18
--num-classes 10 --input-size 32 --normalization cifar10` (made confident first by centring
and scaling its output layer, `converted.centred_heads`), on tfds mock
CIFAR-10 and on a generated ImageFolder (two class subfolders, images of mixed sizes, each in
the folder of the class the model predicts for it, mapped by a `--class-index` JSON), and a
1000-class ResNet-18 at 224x224 through `iaside` on tfds mock ImageNet."""

from __future__ import annotations

import collections
import json

import jax
import numpy as np
import pytest

from conftest import HAVE_TORCH
from converted import centred_heads, convert_state_dict_file, torchvision_resnet18
from lst_jax import cli
from lst_jax.data.reference import DataRef, load_images, open_images, source_labels

tfds = pytest.importorskip("tensorflow_datasets")
pytestmark = pytest.mark.skipif(not HAVE_TORCH, reason="needs the optional torch extra")
PIL = pytest.importorskip("PIL.Image")

NUM_MOCK = 48             # mock CIFAR-10 images: enough that the random model gets 2+ right
MIN_CONF = 0.6            # the pool's confidence threshold (the CLI's default)
SIZES = [(32, 32), (40, 48), (64, 36), (50, 50), (36, 60), (33, 44)] * 3   # (H, W)
QUIET = ["--quiet"]


def _probs(path, images):
    from lst_jax.models.reference import resolve_model

    m = resolve_model(path).load()
    return np.asarray(jax.nn.softmax(jax.jit(m.model_fn)(m.params, images), -1))


@pytest.fixture(scope="module")
def cifar_setup(tmp_path_factory):
    """One checkpoint directory shared by every 32x32 test, the mock CIFAR-10 classes it
    classifies correctly (first image of each, confidence > MIN_CONF), and an ImageFolder of
    PNGs of mixed sizes in two class subfolders holding only images the model puts in those
    classes with confidence > MIN_CONF."""
    from lst_jax.data.folder import FolderSource

    tmp = tmp_path_factory.mktemp("any_model")
    rng = np.random.default_rng(1)
    staging = tmp / "staging"
    staging.mkdir()
    for i, (h, w) in enumerate(SIZES):
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        PIL.fromarray(img).save(staging / f"img{i:02d}.png")
    # the folder's images as every command reads them: short side to 32, centre crop
    folder_x, _ = FolderSource(staging, image_size=32, resize=32).get(np.arange(len(SIZES)))
    with tfds.testing.mock_data(num_examples=NUM_MOCK):
        mock_x, mock_y = load_images(DataRef("cifar10"), (32, 32, 3))
    sd, = centred_heads(torchvision_resnet18(10), np.concatenate([mock_x, folder_x]),
                        "cifar10", [4.0])
    ckpt = convert_state_dict_file(sd, tmp, "cifar_r18", num_classes=10, size=32,
                                   normalization="cifar10")

    p = _probs(ckpt, mock_x)
    ok = (p.argmax(-1) == mock_y) & (p.max(-1) > MIN_CONF)
    pool_classes = sorted({int(c) for c in mock_y[ok]})

    p = _probs(ckpt, folder_x)
    pred, conf = p.argmax(-1), p.max(-1)
    counts = collections.Counter(int(c) for c, q in zip(pred, conf) if q > MIN_CONF)
    (c0, n0), (c1, n1) = counts.most_common(2)
    assert n1 >= 2, counts          # the setup: two predicted classes of 2+ images each
    folder = tmp / "folder"
    names = {c0: "alpha", c1: "beta"}
    kept = collections.defaultdict(list)
    for i, (c, q) in enumerate(zip(pred, conf)):
        if int(c) in names and q > MIN_CONF:
            d = folder / names[int(c)]
            d.mkdir(parents=True, exist_ok=True)
            (staging / f"img{i:02d}.png").rename(d / f"img{i:02d}.png")
            kept[int(c)].append(i)
    kept_sizes = {PIL.open(f).size for f in folder.rglob("*.png")}
    assert len(kept_sizes) >= 2, kept_sizes      # the setup: images of mixed sizes
    index = tmp / "class_index.json"
    index.write_text(json.dumps({"alpha": c0, "beta": c1}))
    return {"model": ckpt, "pool_classes": pool_classes, "folder": str(folder),
            "class_index": str(index), "kept": dict(kept), "folder_x": folder_x,
            # the folder's labels in source order (subfolders alpha, beta; sorted files)
            "labels": [c0] * len(kept[c0]) + [c1] * len(kept[c1])}


def _folder_args(s):
    return ["--data", "folder", "--folder", s["folder"], "--class-index", s["class_index"]]


TINY_LST = ["--iters", "3", "--log-step", "3"]
TINY_GEOMETRY = ["--plane-grid", "2", "--path-points", "3"]


def _check_examples(out, classes):
    z = np.load(out / "examples.npz")
    assert z["outputs"].shape == (2, 2, 32, 32, 3) and z["valid"].tolist() == [True, True]
    assert np.all(np.isfinite(z["outputs"]))
    assert 0 <= z["outputs"].min() and z["outputs"].max() <= 1
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["labels"] == classes and manifest["model"] == "cifar_r18"
    agg = json.loads((out / "summary.json").read_text())["aggregate"]
    assert agg["pairs"] == agg["valid_pairs"] == 2
    assert agg["mean_clean_conf"] > MIN_CONF and np.isfinite(agg["mean_rmse_final"])
    assert (out / "figures" / "examples_grid.png").stat().st_size > 1000


def test_pool_and_examples_on_mock_cifar10(cifar_setup, tmp_path):
    """The mock's own labels: the pool holds the first image of every class the random model
    gets right (confidently), and `examples` traverses between two of those classes."""
    s = cifar_setup
    classes = s["pool_classes"]
    assert len(classes) >= 2, classes          # the setup: 2+ classes classified correctly
    with tfds.testing.mock_data(num_examples=NUM_MOCK):
        assert cli.main(["pool", "--models", s["model"], "--data", "cifar10", "--out",
                         str(tmp_path / "pool"), *QUIET]) == 0
        manifest = json.loads((tmp_path / "pool" / "manifest.json").read_text())
        assert sorted(manifest["classes"]) == classes
        assert len(list((tmp_path / "pool").glob("target_*.png"))) == len(classes)
        out = tmp_path / "ex"
        assert cli.main(["examples", "--model", s["model"], "--data", "cifar10", "--k", "2",
                         "--classes", *map(str, classes[:2]), *TINY_LST, *TINY_GEOMETRY,
                         "--out", str(out), *QUIET]) == 0
    _check_examples(out, classes[:2])


def test_examples_pool_and_full_eval_on_an_image_folder(cifar_setup, tmp_path):
    s = cifar_setup
    c0, c1 = sorted(s["kept"])
    out = tmp_path / "ex"
    assert cli.main(["examples", "--model", s["model"], *_folder_args(s), "--k", "2",
                     "--classes", str(c0), str(c1), *TINY_LST, *TINY_GEOMETRY,
                     "--out", str(out), *QUIET]) == 0
    _check_examples(out, [c0, c1])
    # the examples are the first image of each class folder (sorted file names)
    z = np.load(out / "examples.npz")
    firsts = [s["folder_x"][s["kept"][c][0]] for c in (c0, c1)]
    np.testing.assert_array_equal(z["outputs"][1, 1], firsts[1])     # diagonal: clean image

    pool = tmp_path / "pool"
    assert cli.main(["pool", "--models", s["model"], *_folder_args(s), "--out", str(pool),
                     *QUIET]) == 0
    manifest = json.loads((pool / "manifest.json").read_text())
    assert sorted(manifest["classes"]) == [c0, c1]

    # full-eval selects its own pool from the same --data options
    run = tmp_path / "fe"
    assert cli.main(["full-eval", "--model", s["model"], *_folder_args(s),
                     "--num-samples", "2", "--rounds", "2", "--batch-size", "2", *TINY_LST,
                     "--metrics", "basic", "--grid-n", "2", "--out", str(run), *QUIET]) == 0
    assert json.loads((run / "pool" / "manifest.json").read_text())["classes"] == \
        manifest["classes"]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["model"] == "cifar_r18" and summary["pool_size"] == 2
    assert summary["num_sources"] == 2 and summary["valid_fraction"] == 1.0
    z = np.load(run / "results.npz")
    assert sorted(z["labels"].tolist()) == [c0, c1] and z["final_conf"].shape == (2, 2)
    assert np.all(np.isfinite(z["dist_rmse"])) and np.all(z["dist_rmse"] > 0)
    assert np.all(z["final_conf"] > 0)
    for name in ("rmse", "linf"):            # Table 1: (mean, standard error, count)
        mean, se, count = summary["table1"][name]
        assert np.isfinite(mean) and mean > 0 and np.isfinite(se) and count == 4
    assert 0 <= summary["table2"]["mean"][0] <= 1


def test_iaside_on_an_image_folder(cifar_setup, tmp_path):
    """Zero fill: with a handful of images the random fill's pairing makes a coalition and
    its complement give the same composites, hence equal Shapley values (a degenerate game)."""
    s = cifar_setup
    out = tmp_path / "ia"
    assert cli.main(["iaside", "--models", s["model"], *_folder_args(s), "--bands", "3",
                     "--k", "4", "--fill", "zero", "--out", str(out), *QUIET]) == 0
    r, = json.loads((out / "summary.json").read_text())["results"]
    assert r["model"] == "cifar_r18" and r["K"] == 4 and r["M"] == 3
    assert len(r["distribution"]) == 3 and np.all(np.isfinite(r["shapley"]))
    assert np.isfinite(r["score"]) and abs(sum(r["distribution"]) - 1) < 1e-6
    z = np.load(next((out / "models").glob("cifar_r18-*")) / "values.npz")
    # labels: the --class-index classes of the images' subfolders
    assert len(z["image_index"]) == 4 and len(set(z["image_index"].tolist())) == 4
    assert z["labels"].tolist() == [s["labels"][i] for i in z["image_index"]]


def test_iaside_at_224_on_mock_imagenet(tmp_path):
    """A 1000-class ResNet-18 at 224x224 on two mock ImageNet validation images (random
    labels: I-ASIDE scores the log-probability of whatever class the data give)."""
    model = convert_state_dict_file(torchvision_resnet18(1000).state_dict(), tmp_path,
                                    "inet_r18", num_classes=1000, size=224,
                                    normalization="imagenet")
    out = tmp_path / "ia"
    with tfds.testing.mock_data(num_examples=2):
        labels = source_labels(open_images(DataRef("imagenet2012"), (224, 224, 3)))
        assert cli.main(["iaside", "--models", model, "--data", "imagenet2012", "--bands",
                         "2", "--k", "2", "--fill", "zero", "--out", str(out), *QUIET]) == 0
    r, = json.loads((out / "summary.json").read_text())["results"]
    assert r["K"] == 2 and len(r["distribution"]) == 2 and np.all(np.isfinite(r["shapley"]))
    z = np.load(next((out / "models").glob("inet_r18-*")) / "values.npz")
    assert z["labels"].tolist() == labels[z["image_index"]].tolist()
    assert np.all((0 <= z["labels"]) & (z["labels"] < 1000))
    assert len(z["log_probs"]) == len(z["coalitions"]) == 4    # 2^M coalitions
    assert np.all(np.isfinite(z["log_probs"])) and np.all(z["log_probs"] <= 0)
