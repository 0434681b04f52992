"""`lst-jax connectivity barrier|detect|bypass` on models other than the digits ones: a
random-initialised torchvision ResNet-18 converted by `lst-jax convert` (10 classes, 32x32)
on tfds mock CIFAR-10, a 1000-class one at 224x224 on tfds mock ImageNet, class flags
checked against the model's class count before any work, and `--memory-budget` planning the
batches."""

import collections
import json

import numpy as np
import pytest

from conftest import HAVE_TORCH
from converted import convert_state_dict_file, torchvision_resnet18
from lst_jax import cli
from lst_jax.data.reference import DataRef, open_images, source_labels

tfds = pytest.importorskip("tensorflow_datasets")
pytestmark = pytest.mark.skipif(not HAVE_TORCH, reason="needs the optional torch extra")


def _random_resnet18(path, *, num_classes, size, normalization):
    """A checkpoint directory of a random-initialised torchvision ResNet-18, saved with
    `torch.save(state_dict)` and converted with `lst-jax convert WEIGHTS --arch resnet18
    --num-classes N --input-size S --normalization cifar10|imagenet`."""
    return convert_state_dict_file(torchvision_resnet18(num_classes).state_dict(),
                                   path.parent, path.name, num_classes=num_classes,
                                   size=size, normalization=normalization)


@pytest.fixture(scope="module")
def cifar_r18(tmp_path_factory):
    return _random_resnet18(tmp_path_factory.mktemp("ck") / "cifar_r18", num_classes=10,
                            size=32, normalization="cifar10")


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("lst-jax connectivity: error: ") and "\n" not in err, err
    return err


TINY = ["--quiet", "--attack-steps", "3", "--points", "5", "--data", "cifar10"]


def test_barrier_and_detect_on_a_converted_cifar_resnet18(cifar_r18, tmp_path):
    root = tmp_path / "runs"
    with tfds.testing.mock_data(num_examples=24):
        assert cli.main(["connectivity", "barrier", "--models", cifar_r18, "--classes", "2",
                         "3", "--pairs-per-class", "1", "--drop-per-class", "0",
                         "--root", str(root), *TINY]) == 0
        s = json.loads((root / "barrier.json").read_text())["cifar_r18"]
        assert s["real"]["n"] == 2 and s["adversarial"]["n"] == 2
        assert s["config"]["data"] == "cifar10" and s["config"]["split"] == "test"
        for g in ("real", "adversarial"):
            assert np.isfinite(s[g]["max_mean"]) and s[g]["gap_mean"] >= 0
        # detect: PGD on the random model's correctly classified test images
        rc = cli.main(["connectivity", "detect", "--models", cifar_r18, "--attacks", "pgd",
                       "--pgd-steps", "2", "--folds", "2", "--root", str(root), *TINY])
    d = json.loads((root / "detect.json").read_text())["cifar_r18"]
    # the random model gets few test images right: the job runs, reports the attack and says
    # why no detector could be trained (exit 1) when the examples are too few for 2 folds
    e = d["attacks"]["pgd"]
    assert d["n_clean"] >= 1 and set(d["attacks"]) == {"pgd"} and 0 <= e["attack_success"] <= 1
    assert rc == (0 if e["auroc"] is not None else 1)
    assert e["auroc"] is not None or "2-fold CV" in e["note"]


def test_bypass_on_a_converted_cifar_resnet18(cifar_r18, tmp_path):
    out = tmp_path / "bypass"
    with tfds.testing.mock_data(num_examples=24):
        assert cli.main(["connectivity", "bypass", "--model", cifar_r18, "--target-class",
                         "2", "--source-class", "3", "--candidates", "3", "--bypass-steps",
                         "2", "--max-depth", "1", "--out", str(out), *TINY]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    # off the digits the pair is the authors' two lowest-loss candidates
    assert manifest["config"]["config"]["selection"] == "lowest_loss"
    z = np.load(out / "results.npz")
    labels = [1, 5, 4, 0, 2, 2, 1, 3, 3, 2]       # the mock's first labels (checked below)
    with tfds.testing.mock_data(num_examples=24):
        got = source_labels(open_images(DataRef("cifar10"), (32, 32, 3)))
    assert got[:10].tolist() == labels
    pair = z["pair_index"].tolist()
    assert len(set(pair)) == 2 and set(pair) <= {4, 5, 9}
    assert z["source_index"].tolist() == [7] and z["primary"].shape == (2, 5)


def test_class_flags_out_of_the_models_range_are_refused_before_work(cifar_r18, tmp_path,
                                                                      capsys, monkeypatch):
    from lst_jax.models import registry

    monkeypatch.setattr(registry, "load_checkpoint",
                        lambda *a, **k: pytest.fail("a model was loaded"))
    out = ["--out", str(tmp_path / "o")]
    cases = [
        (["bypass", "--model", cifar_r18, "--target-class", "10"] + out,
         "--target-class must lie in 0..9 (the model's 10 classes), got 10"),
        (["bypass", "--model", cifar_r18, "--source-class", "12"] + out,
         "--source-class must lie in 0..9"),
        (["barrier", "--models", cifar_r18, "--classes", "1", "10", "--root",
          str(tmp_path / "r")], "--classes must lie in 0..9 (the model's 10 classes), got 10"),
        (["bypass", "--model", cifar_r18, "--memory-budget", "lots"] + out,
         "--memory-budget must be bytes or a size like"),
        (["bypass", "--model", "resnet18-normal", "--data", "cifar10"] + out,
         "cifar10 images are 32x32x3 but the model expects 224x224x3"),
    ]
    for argv, match in cases:
        assert cli.main(["connectivity", *argv, "--data", "cifar10"]
                        if "--data" not in argv else ["connectivity", *argv]) == 2, argv
        assert match in _one_line(capsys), argv


class _Spy(ValueError):
    pass


@pytest.mark.parametrize("mode, fn, extra", [
    ("barrier", "path_losses", []), ("detect", "curve_features", ["--attacks", "pgd"])])
def test_memory_budget_reaches_the_library(cifar_r18, tmp_path, capsys, monkeypatch, mode,
                                           fn, extra):
    """`--memory-budget` is passed as `memory_budget=` to the path losses (the attack's:
    the 224x224 bypass below runs with one)."""
    from lst_jax.jobs.connectivity import job as jobs

    seen = []

    def spy(*a, **k):
        seen.append(k.get("memory_budget"))
        raise _Spy("spy called")

    monkeypatch.setattr(jobs, fn, spy)
    with tfds.testing.mock_data(num_examples=24):
        assert cli.main(["connectivity", mode, "--models", cifar_r18, "--root",
                         str(tmp_path), "--memory-budget", "256MiB", *extra,
                         *TINY]) == 2
    assert seen == ["256MiB"] and "spy called" in _one_line(capsys)


@pytest.mark.slow
def test_bypass_at_224_on_mock_imagenet(tmp_path):
    """A 1000-class ResNet-18 at 224x224 on tfds mock ImageNet: two images of one class, a
    five-point path, a few steps, batches planned from a memory budget."""
    model = _random_resnet18(tmp_path / "inet_r18", num_classes=1000, size=224,
                             normalization="imagenet")
    out = tmp_path / "bypass"
    with tfds.testing.mock_data(num_examples=100):
        labels = source_labels(open_images(DataRef("imagenet2012"), (224, 224, 3)))
        target = next(c for c, n in collections.Counter(labels.tolist()).items() if n >= 2)
        source = int(labels[0])
        assert cli.main(["connectivity", "bypass", "--model", model, "--data", "imagenet2012",
                         "--target-class", str(target), "--source-class", str(source),
                         "--candidates", "2", "--points", "4", "--segment-points", "3",
                         "--attack-steps", "2", "--bypass-steps", "2", "--max-depth", "1",
                         "--memory-budget", "1GiB", "--quiet", "--out", str(out)]) == 0
    z = np.load(out / "results.npz")
    assert sorted(z["pair_index"].tolist()) == np.flatnonzero(labels == target)[:2].tolist()
    assert z["adversarial"].shape == (1, 224, 224, 3) and z["primary"].shape == (2, 4)
    s = json.loads((out / "summary.json").read_text())
    assert all(np.isfinite(s[p]["linear_max"]) for p in ("real-real", "real-adversarial"))
