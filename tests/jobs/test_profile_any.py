"""`lst-jax profile` beyond the digits (issue 18 item 4): three tiny random-initialised
32x32 models of 10 classes (checkpoint directories written with the project's checkpoint
writer) through every analysis of the quick preset (at its smallest settings) on tfds mock
CIFAR-10, labelled by the models' predictions so that the LST pool and the connectivity pairs
find correctly classified images; the CIFAR-10-C table and the 8/255 PGD radius named in the
report, per-analysis image counts; models of different label sets refused in one line before
any work."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

from lst_jax import cli
from lst_jax.connectivity.config import AttackConfig
from lst_jax.jobs.connectivity.job import BarrierRunConfig, DetectRunConfig
from lst_jax.jobs.iaside.job import IasideConfig
from lst_jax.jobs.lst.full_eval import FullEvalConfig
from lst_jax.jobs.profile import profile_job, profile_preset
from lst_jax.jobs.profile.config import data_suite
from lst_jax.models.checkpoint import save_checkpoint
from lst_jax.models.registry import ModelSpec
from lst_jax.models.wrapper import Normalization
from lst_jax.robustness import RobustnessConfig
from lst_jax.robustness.corruptions import IMAGENET_PARAMS, TABLES
from lst_jax.traversal import preset as lst_preset

tfds = pytest.importorskip("tensorflow_datasets")
WIDTHS = (4, 8, 8)
HEAD_SCALES = (300.0, 600.0, 1200.0)
NUM_EXAMPLES = 48


def _write(path, variables, name, label_set="cifar10"):
    meta = {"name": name, "arch": "digits_resnet", "arch_kwargs": {"widths": list(WIDTHS)},
            "num_classes": 10, "dataset": "cifar10", "input_size": [32, 32, 3],
            "normalization": Normalization().to_dict(), "label_set": label_set}
    return str(save_checkpoint(path, variables, meta))


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    """Three checkpoint directories: one random-initialised digits_resnet (widths 4, 8, 8)
    whose head is centred on the mock images (a random net gives nearly the same logits to
    every image) and scaled by 300, 600 and 1200: the three predict the same varied classes
    with different confidences."""
    from lst_jax.data.reference import DataRef, load_images

    root = tmp_path_factory.mktemp("tiny")
    spec = ModelSpec(name="tiny", arch="digits_resnet", arch_kwargs=(("widths", WIDTHS),))
    clf = spec.build()
    v = clf.init(jax.random.key(0), (32, 32, 3))
    with tfds.testing.mock_data(num_examples=NUM_EXAMPLES):
        x, _ = load_images(DataRef("cifar10"), (32, 32, 3))
    mean = np.asarray(clf(v, x)).mean(0)
    paths = []
    for i, s in enumerate(HEAD_SCALES):
        head = {"kernel": v["params"]["head"]["kernel"] * s,
                "bias": (v["params"]["head"]["bias"] - mean) * s}
        vi = {**v, "params": {**v["params"], "head": head}}
        paths.append(_write(root / f"tiny{i}", vi, f"tiny{i}"))
    return paths


@pytest.fixture
def mock_cifar10(tiny_models, monkeypatch):
    """tfds mock CIFAR-10 (random images) labelled by the tiny models' own predictions, so
    that the pool, the barrier pairs and the detector find correctly classified images."""
    from lst_jax.data import tfds as tfds_source
    from lst_jax.models.reference import resolve_model

    m = resolve_model(tiny_models[0]).load()
    get = tfds_source.TfdsSource.get

    def labelled(self, indices):
        x, _ = get(self, indices)
        logits = m.model_fn(m.params, x)
        return x, np.asarray(np.argmax(np.asarray(logits), -1), np.int32)

    monkeypatch.setattr(tfds_source.TfdsSource, "get", labelled)
    with tfds.testing.mock_data(num_examples=NUM_EXAMPLES):
        yield


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


def test_quick_profile_of_three_cifar_shaped_models(tiny_models, mock_cifar10, tmp_path):
    out = tmp_path / "p"
    cfg = _smallest_quick()
    profile_job(tiny_models, cfg, out, progress=False, preset_name="quick", data="cifar10")
    prof = json.loads((out / "profile.json").read_text())
    assert prof["models"] == ["tiny0", "tiny1", "tiny2"] and prof["baseline"] == "tiny0"
    rob = prof["config"]["robustness"]       # the CIFAR-10 suite replaced the digits one
    assert rob["table"] == "cifar10" and rob["headline_radius"] == 8
    assert rob["pgd_radii"] == [8] and prof["pgd_radius"] == 8
    assert prof["corruption_table"] == "cifar10"
    r0 = prof["results"]["robustness"]["tiny0"]
    assert set(r0["pgd_accuracy"]) == {"8/255"} and r0["num_images"] == 16
    # labels are the models' own predictions: every model is right on the clean images
    assert all(prof["metrics"][m]["clean_accuracy"] == 1.0 for m in prof["models"])
    assert prof["metrics"]["tiny0"]["mce"] == pytest.approx(1.0)
    used = prof["images_per_analysis"]
    pairs = prof["results"]["connectivity"]["tiny0"]["barrier"]["real"]["n"]
    sources = prof["results"]["lst"]["tiny0"]["num_sources"]
    assert used == {"robustness": {"images": 16}, "lst": {"source images": sources},
                    "iaside": {"images": 8},
                    "connectivity": {"barrier pairs": pairs, "detector images": 10}}
    assert sources == 2 and pairs >= 1
    md = (out / "report.md").read_text()
    assert "| PGD robust accuracy at 8/255 |" in md
    assert (f"Data: cifar10 ({prof['num_images']} test images loaded; used: robustness 16 "
            f"images; LST 2 source images; I-ASIDE 8 images; connectivity {pairs} barrier "
            f"pairs, 10 detector images); corruptions: CIFAR-10-C's severities (32x32); PGD "
            f"radius 8/255") in md


def test_models_of_different_label_sets_are_refused_before_any_work(tiny_models, tmp_path,
                                                                    capsys):
    import shutil

    other = tmp_path / "other"
    shutil.copytree(tiny_models[0], other)
    meta = json.loads((other / "metadata.json").read_text())
    meta.update(name="other", label_set="custom:0123")
    (other / "metadata.json").write_text(json.dumps(meta))
    out = tmp_path / "out"
    assert cli.main(["profile", "--models", tiny_models[0], str(other), "--data", "cifar10",
                     "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "label set cifar10" in err and "label set custom:0123" in err
    assert tiny_models[0] in err and str(other) in err
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
