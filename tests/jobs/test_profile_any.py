"""`lst-jax profile` beyond the digits (issue 18 item 4): three random-initialised torchvision
ResNet-18s of 10 classes, saved with `torch.save(state_dict)` and converted with `lst-jax
convert WEIGHTS --arch resnet18 --num-classes 10 --input-size 32 --normalization cifar10`
(their logits checked against PyTorch), through every analysis of the quick preset (at its
smallest settings) on tfds mock CIFAR-10 and on a generated ImageFolder (two classes, mixed
sizes). The images are labelled by the models' predictions, so that the LST pool and the
connectivity pairs find correctly classified images. Checked: the CIFAR-10-C table and the
8/255 PGD radius named in the report, per-analysis image counts; models of different label
sets refused in one line before any work."""

from __future__ import annotations

import collections
import json

import jax
import numpy as np
import pytest

from conftest import HAVE_TORCH
from lst_jax import cli
from lst_jax.connectivity.config import AttackConfig
from lst_jax.data.reference import DataRef, load_images
from lst_jax.jobs.connectivity.job import BarrierRunConfig, DetectRunConfig
from lst_jax.jobs.iaside.job import IasideConfig
from lst_jax.jobs.lst.full_eval import FullEvalConfig
from lst_jax.jobs.profile import profile_job, profile_preset
from lst_jax.jobs.profile.config import data_suite
from lst_jax.robustness import RobustnessConfig
from lst_jax.robustness.corruptions import IMAGENET_PARAMS, TABLES
from lst_jax.traversal import preset as lst_preset
from tolerances import assert_close_to_float64

tfds = pytest.importorskip("tensorflow_datasets")
PIL = pytest.importorskip("PIL.Image")
SPREADS = (6.0, 9.0, 12.0)       # std of the three models' centred logits: same argmax
NUM_MOCK = 48
SIZES = [(32, 32), (40, 48), (64, 36), (50, 50), (36, 60), (33, 44)] * 10   # (H, W)


@pytest.fixture(scope="module")
def r18(tmp_path_factory):
    """Three converted checkpoint directories of one random-initialised torchvision
    ResNet-18 (10 classes) whose `fc` is centred on the test images and scaled to the
    spreads `SPREADS` (`converted.centred_heads`): the three predict the same varied
    classes with different confidences. Also: a staging folder of PNGs of mixed sizes, and
    the models' predicted class of each."""
    if not HAVE_TORCH:
        pytest.skip("needs the optional torch extra")
    import torch

    from converted import (
        centred_heads,
        convert_state_dict_file,
        load_twin,
        torch_input,
        torchvision_resnet18,
    )
    from lst_jax.data.folder import FolderSource
    from lst_jax.models.reference import resolve_model

    tmp = tmp_path_factory.mktemp("r18")
    rng = np.random.default_rng(1)
    staging = tmp / "staging"
    staging.mkdir()
    for i, (h, w) in enumerate(SIZES):
        PIL.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(
            staging / f"img{i:02d}.png")
    # the folder's images as every command reads them: short side to 32, centre crop
    folder_x, _ = FolderSource(staging, image_size=32, resize=32).get(np.arange(len(SIZES)))
    with tfds.testing.mock_data(num_examples=NUM_MOCK):
        mock_x, _ = load_images(DataRef("cifar10"), (32, 32, 3))
    x = np.concatenate([mock_x, folder_x])

    net = torchvision_resnet18(10)
    paths = []
    for i, sd in enumerate(centred_heads(net, x, "cifar10", SPREADS)):
        paths.append(convert_state_dict_file(sd, tmp, f"cifar_r18_{i}", num_classes=10,
                                             size=32, normalization="cifar10"))
        # the converted model's logits against PyTorch's (float32 and float64)
        twin, probe = load_twin(sd, 10), x[:8]
        m = resolve_model(paths[-1]).load()
        ours = np.asarray(jax.jit(m.model_fn)(m.params, probe))
        with torch.no_grad():
            ref32 = twin(torch_input(probe, "cifar10")).numpy()
            ref64 = twin.double()(torch_input(probe, "cifar10").double()).numpy()
        assert_close_to_float64(ref32, ref64, ours, what=f"{paths[-1]} logits")
    m = resolve_model(paths[0]).load()
    pred = np.asarray(jax.jit(m.model_fn)(m.params, folder_x)).argmax(-1)
    return {"models": paths, "staging": staging, "folder_pred": pred}


@pytest.fixture
def mock_cifar10(r18, monkeypatch):
    """tfds mock CIFAR-10 (random images) labelled by the models' own predictions, so
    that the pool, the barrier pairs and the detector find correctly classified images."""
    from lst_jax.data import tfds as tfds_source
    from lst_jax.models.reference import resolve_model

    m = resolve_model(r18["models"][0]).load()
    get = tfds_source.TfdsSource.get

    def labelled(self, indices):
        x, _ = get(self, indices)
        logits = m.model_fn(m.params, x)
        return x, np.asarray(np.argmax(np.asarray(logits), -1), np.int32)

    monkeypatch.setattr(tfds_source.TfdsSource, "get", labelled)
    with tfds.testing.mock_data(num_examples=NUM_MOCK):
        yield


@pytest.fixture(scope="module")
def image_folder(r18, tmp_path_factory):
    """An ImageFolder of the images of the models' two most predicted classes, each in the
    subfolder of its class (mapped by a `--class-index` JSON), of mixed sizes."""
    import shutil

    pred = r18["folder_pred"]
    (c0, n0), (c1, n1) = collections.Counter(pred.tolist()).most_common(2)
    assert n1 >= 6, (n0, n1)          # the setup: enough images of the second class
    root = tmp_path_factory.mktemp("folder")
    names = {c0: "alpha", c1: "beta"}
    for i, c in enumerate(pred.tolist()):
        if c in names:
            d = root / "images" / names[c]
            d.mkdir(parents=True, exist_ok=True)
            shutil.copy(r18["staging"] / f"img{i:02d}.png", d)
    sizes = {PIL.open(f).size for f in (root / "images").rglob("*.png")}
    assert len(sizes) >= 2, sizes      # the setup: images of mixed sizes
    (root / "index.json").write_text(json.dumps({"alpha": c0, "beta": c1}))
    return DataRef("folder", folder=str(root / "images"),
                   class_index=str(root / "index.json")), n0 + n1


def _smallest_quick():
    """The quick preset at the smallest settings that still run every analysis."""
    cfg = profile_preset("quick")
    return cfg.replace(
        robustness=RobustnessConfig(num_images=16, pgd_radii=(16,), pgd_steps=2,
                                    headline_radius=16, corruptions=("gaussian_noise", "jpeg"),
                                    severities=(5,)),
        lst=FullEvalConfig(lst=lst_preset("paper", iters=4), num_samples=2, rounds=2,
                           batch_size=2, grid_n=2),
        iaside=IasideConfig(num_bands=2, k=8),
        barrier=BarrierRunConfig(pairs_per_class=1, drop_per_class=0, points=5,
                                 attack=AttackConfig(steps=4)),
        detect=DetectRunConfig(num_samples=10, points=5, attacks=("optimization",),
                               attack=AttackConfig(steps=4)))


def _check_report(out, *, data, num_robust, detector):
    prof = json.loads((out / "profile.json").read_text())
    names = ["cifar_r18_0", "cifar_r18_1", "cifar_r18_2"]
    assert prof["models"] == names and prof["baseline"] == names[0]
    rob = prof["config"]["robustness"]       # the CIFAR-10 suite replaced the digits one
    assert rob["table"] == "cifar10" and rob["headline_radius"] == 8
    assert rob["pgd_radii"] == [8] and prof["pgd_radius"] == 8
    assert prof["corruption_table"] == "cifar10"
    r0 = prof["results"]["robustness"][names[0]]
    assert set(r0["pgd_accuracy"]) == {"8/255"} and r0["num_images"] == num_robust
    # labels are the models' own predictions: every model is right on the clean images
    assert all(prof["metrics"][m]["clean_accuracy"] == 1.0 for m in names)
    assert prof["metrics"][names[0]]["mce"] == pytest.approx(1.0)
    used = prof["images_per_analysis"]
    pairs = prof["results"]["connectivity"][names[0]]["barrier"]["real"]["n"]
    sources = prof["results"]["lst"][names[0]]["num_sources"]
    assert used == {"robustness": {"images": num_robust}, "lst": {"source images": sources},
                    "iaside": {"images": 8},
                    "connectivity": {"barrier pairs": pairs, "detector images": detector}}
    assert sources == 2 and pairs >= 1
    md = (out / "report.md").read_text()
    assert "| PGD robust accuracy at 8/255 |" in md
    assert f"--data {data.split()[0]}" in prof["command"]     # the regenerate line
    split = "" if data.startswith("folder") else "test "
    assert (f"Data: {data} ({prof['num_images']} {split}images; used: robustness "
            f"{num_robust} images; LST 2 source images; I-ASIDE 8 images; connectivity "
            f"{pairs} barrier pairs, {detector} detector images); corruptions: CIFAR-10-C's "
            f"severities (32x32); PGD radius 8/255") in md
    return prof


def test_quick_profile_of_three_converted_resnet18s_on_mock_cifar10(r18, mock_cifar10,
                                                                    tmp_path):
    out = tmp_path / "p"
    profile_job(r18["models"], _smallest_quick(), out, progress=False, preset_name="quick",
                data="cifar10")
    _check_report(out, data="cifar10", num_robust=16, detector=10)


def test_quick_profile_of_three_converted_resnet18s_on_an_image_folder(r18, image_folder,
                                                                       tmp_path):
    ref, n = image_folder
    out = tmp_path / "p"
    profile_job(r18["models"], _smallest_quick(), out, progress=False, preset_name="quick",
                data=ref)
    prof = _check_report(out, data=f"folder {ref.folder}", num_robust=min(16, n),
                         detector=10)
    assert prof["num_images"] == n


def test_models_of_different_label_sets_are_refused_before_any_work(r18, tmp_path, capsys):
    import shutil

    other = tmp_path / "other"
    shutil.copytree(r18["models"][0], other)
    meta = json.loads((other / "metadata.json").read_text())
    meta.update(name="other", label_set="custom:0123")
    (other / "metadata.json").write_text(json.dumps(meta))
    out = tmp_path / "out"
    assert cli.main(["profile", "--models", r18["models"][0], str(other), "--data", "cifar10",
                     "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "label set cifar10" in err and "label set custom:0123" in err
    assert r18["models"][0] in err and str(other) in err
    assert not out.exists()
    # digits models on CIFAR-10 data: the labels do not fit
    with pytest.raises(ValueError, match="digits labels, but --data cifar10"):
        profile_job(["digits_resnet-normal"], "quick", out, data="cifar10", progress=False)
    assert not out.exists()


def test_suite_by_data_and_the_imagenet_table():
    from lst_jax.data.reference import DataRef

    assert data_suite(DataRef("digits"), (32, 32, 3)) == "digits"
    assert data_suite(DataRef("cifar10"), (32, 32, 3)) == "cifar10"
    assert data_suite(DataRef("imagenet2012"), (224, 224, 3)) == "imagenet"
    assert set(TABLES["imagenet"]) == set(TABLES["cifar10"]) == set(TABLES["digits"])
    assert IMAGENET_PARAMS["jpeg"] == (25, 18, 15, 10, 7)
    quick = profile_preset("quick")
    assert quick.for_suite("digits") == quick          # the digits path is unchanged
    paper = profile_preset("paper").for_suite("imagenet").robustness
    assert paper.table == "imagenet" and paper.headline_radius == 4
    assert paper.pgd_radii == (2, 4, 8, 16)
    # a table chosen by the caller, or fit_data=False, stays as given
    own = quick.replace(robustness=RobustnessConfig(table="cifar10", pgd_radii=(2,),
                                                    headline_radius=2))
    assert own.for_suite("cifar10") == own
    assert quick.replace(fit_data=False).for_suite("imagenet").robustness == quick.robustness


def test_imagenet_table_on_a_224_image():
    """Every implemented corruption at ImageNet-C's severity 5 on one 224x224 image: values
    in [0, 1], the image changed; pixelation to int(224 * 0.25) = 56 pixels gives 4x4 blocks."""
    from lst_jax.robustness.corruptions import CORRUPTIONS, corrupt

    x = jax.random.uniform(jax.random.key(0), (1, 224, 224, 3))
    for c in CORRUPTIONS:
        y = np.asarray(corrupt(x, name=c, severity=5, key=jax.random.key(1), table="imagenet"))
        assert y.shape == x.shape and 0 <= y.min() and y.max() <= 1, c
        assert np.abs(y - np.asarray(x)).max() > 0.05, c
    y = np.asarray(corrupt(x, name="pixelate", severity=5, key=jax.random.key(1),
                           table="imagenet"))[0]
    blocks = y.reshape(56, 4, 56, 4, 3)
    assert np.array_equal(blocks, np.broadcast_to(blocks[:, :1, :, :1], blocks.shape))
