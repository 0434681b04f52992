"""`lst-jax profile` beyond the digits (issue 18 item 4): three tiny random-initialised
32x32 models of 10 classes (checkpoint directories written with the project's checkpoint
writer) through the quick preset on tfds mock CIFAR-10 (robustness and I-ASIDE: the LST
pool and the connectivity pairs need correctly classified images, which random models on
random mock images do not give), with the CIFAR-10-C table and the 8/255 PGD radius named
in the report, per-analysis image counts; models of different label sets refused in one
line before any work."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

from lst_jax import cli
from lst_jax.models.checkpoint import save_checkpoint
from lst_jax.models.registry import ModelSpec
from lst_jax.models.wrapper import Normalization
from lst_jax.profile import profile_job, profile_preset
from lst_jax.profile.config import data_suite
from lst_jax.robustness.corruptions import IMAGENET_PARAMS, TABLES

tfds = pytest.importorskip("tensorflow_datasets")
WIDTHS = (4, 8, 8)


def _write(path, variables, name, label_set="cifar10"):
    meta = {"name": name, "arch": "digits_resnet", "arch_kwargs": {"widths": list(WIDTHS)},
            "num_classes": 10, "dataset": "cifar10", "input_size": [32, 32, 3],
            "normalization": Normalization().to_dict(), "label_set": label_set}
    return str(save_checkpoint(path, variables, meta))


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    """Three checkpoint directories of random-initialised digits_resnets (widths 4, 8, 8),
    label set cifar10."""
    root = tmp_path_factory.mktemp("tiny")
    spec = ModelSpec(name="tiny", arch="digits_resnet", arch_kwargs=(("widths", WIDTHS),))
    clf = spec.build()
    return [_write(root / f"tiny{i}", clf.init(jax.random.key(i), (32, 32, 3)), f"tiny{i}")
            for i in range(3)]


@pytest.fixture
def mock_cifar10():
    with tfds.testing.mock_data(num_examples=48):
        yield


def test_quick_profile_of_three_cifar_shaped_models(tiny_models, mock_cifar10, tmp_path):
    out = tmp_path / "p"
    cfg = profile_preset("quick")
    assert cli.main(["profile", "--models", *tiny_models, "--preset", "quick", "--data",
                     "cifar10", "--analyses", "robustness", "iaside", "--out", str(out),
                     "--quiet"]) == 0
    prof = json.loads((out / "profile.json").read_text())
    assert prof["models"] == ["tiny0", "tiny1", "tiny2"] and prof["baseline"] == "tiny0"
    rob = prof["config"]["robustness"]
    assert rob["table"] == "cifar10" and rob["headline_radius"] == 8
    assert rob["pgd_radii"] == [8] and prof["pgd_radius"] == 8
    assert prof["corruption_table"] == "cifar10"
    n = min(cfg.robustness.num_images, prof["num_images"])
    k = min(cfg.iaside.k, prof["num_images"])
    assert prof["images_per_analysis"] == {"robustness": {"images": n},
                                           "iaside": {"images": k}}
    r0 = prof["results"]["robustness"]["tiny0"]
    assert set(r0["pgd_accuracy"]) == {"8/255"} and r0["num_images"] == n
    assert prof["metrics"]["tiny0"]["mce"] == pytest.approx(1.0)
    md = (out / "report.md").read_text()
    assert "PGD robust accuracy at 8/255" in md
    assert "CIFAR-10-C's severities" in md and f"robustness {n} images; I-ASIDE {k} images" in md


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
