"""Models described by their checkpoint (issue 18 item 1).

- `lst-jax convert WEIGHTS --arch resnet18 --num-classes 10 --input-size 32 --normalization
  cifar10`: a random-initialised torchvision-layout ResNet-18 with 10 classes (the PyTorch
  twin of `lst_jax.bench.torch_models`, torchvision's key names), saved with
  `torch.save(state_dict)`, matches PyTorch's logits; its metadata describes the model.
- One model reference: a checkpoint directory as `--model` gives the same numbers (and the
  same cached runs) as the registry name; metadata without the architecture, an unknown name
  and a `--num-classes` that disagrees with the weights are refused in one line.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from conftest import HAVE_TORCH
from lst_jax import cli
from lst_jax.convert import job
from lst_jax.convert.io import file_sha256
from lst_jax.convert.shapes import CIFAR10_MEAN, CIFAR10_STD
from lst_jax.models.checkpoint import CheckpointError
from lst_jax.models.reference import resolve_model
from lst_jax.models.registry import checkpoint_root
from tolerances import assert_close_to_float64

DIGITS = "digits_resnet-normal"
CONVERT = ["--arch", "resnet18", "--num-classes", "10", "--input-size", "32",
           "--normalization", "cifar10"]


def _one_line_error(capsys, command: str) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"lst-jax {command}: error: ") and "\n" not in err, err
    return err


@pytest.fixture(scope="module")
def cifar_r18(tmp_path_factory):
    """(PyTorch twin, weights file, converted checkpoint directory)."""
    if not HAVE_TORCH:
        pytest.skip("needs the optional torch extra")
    import torch

    import torch_reference as tr

    torch.manual_seed(0)
    twin = tr.randomize_(tr.TorchResNet("basic", (2, 2, 2, 2), num_classes=10), seed=0)
    tmp = tmp_path_factory.mktemp("cifar_r18")
    weights = tmp / "r18.pth"
    torch.save(twin.state_dict(), weights)
    out = tmp / "cifar_r18"
    assert cli.main(["convert", str(weights), *CONVERT, "--name", "cifar_r18",
                     "--out", str(out)]) == 0
    return twin, weights, out


def test_converted_resnet18_matches_pytorch_and_metadata_describes_it(cifar_r18):
    import torch

    twin, weights, out = cifar_r18
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["arch"] == "resnet18" and meta["arch_kwargs"] == {"num_classes": 10}
    assert meta["arch_config"] == {"block": "basic", "layers": [2, 2, 2, 2], "num_classes": 10,
                                   "width": 64, "width_per_group": 64}
    assert meta["num_classes"] == 10 and meta["input_size"] == [32, 32, 3]
    assert meta["normalization"] == {"mean": list(CIFAR10_MEAN), "std": list(CIFAR10_STD)}
    assert meta["label_set"] == "cifar10" and meta["labels"][0] == "airplane"
    assert meta["weights_sha256"] == file_sha256(weights) and meta["name"] == "cifar_r18"

    loaded = resolve_model(str(out)).load()
    assert loaded.spec.name == "cifar_r18" and loaded.spec.num_classes == 10
    x = np.random.default_rng(1).uniform(size=(4, 32, 32, 3)).astype(np.float32)
    # image by image through the program `convert` compiled for its (1, 32, 32, 3) check
    # (the restored model is equal to the converted one, so no second compilation)
    ours = np.concatenate([np.asarray(job._forward(loaded.model_fn, loaded.params, x[i:i + 1]))
                           for i in range(len(x))])
    z = (x - np.asarray(CIFAR10_MEAN, np.float32)) / np.asarray(CIFAR10_STD, np.float32)
    nchw = torch.from_numpy(z.transpose(0, 3, 1, 2).copy())
    with torch.no_grad():
        ref32 = twin(nchw).numpy()
        ref64 = twin.double()(nchw.double()).numpy()
        twin.float()
    assert np.std(ref32) > 1e-3                  # a non-degenerate random model
    assert_close_to_float64(ref32, ref64, ours, what="converted ResNet-18 logits")
    assert np.array_equal(ours.argmax(-1), ref32.argmax(-1))


def test_wrong_num_classes_is_refused_in_one_line(cifar_r18, tmp_path, capsys):
    _, weights, _ = cifar_r18
    out = tmp_path / "never"
    args = ["convert", str(weights), "--arch", "resnet18", "--num-classes", "1000",
            "--input-size", "32", "--out", str(out)]
    assert cli.main(args) == 2
    err = _one_line_error(capsys, "convert")
    assert "fc.bias" in err and "(10,)" in err and "(1000,)" in err
    assert not out.exists()


def test_checkpoint_directory_metadata_fills_the_spec(tmp_path):
    """The shipped digits checkpoint as a directory: the same spec as the registry name
    (only where the checkpoint lies differs), the same verified digest."""
    by_name = resolve_model(DIGITS)
    by_path = resolve_model(str(checkpoint_root() / DIGITS))
    assert not by_path.registry and by_path.name == DIGITS
    assert by_path.spec.build() == by_name.spec.build()
    assert by_path.spec.input_size == by_name.spec.input_size
    assert by_path.spec.dataset == "digits" and by_path.spec.label_set == "digits"
    assert by_path.digest() == by_name.digest()


def test_checkpoint_directory_as_model_gives_the_registry_numbers(tmp_path, capsys):
    path = str(checkpoint_root() / DIGITS)
    outs = []
    for ref in (DIGITS, path):
        out = tmp_path / f"pool_{len(outs)}"
        assert cli.main(["pool", "--models", ref, "--out", str(out), "--quiet"]) == 0
        outs.append(out)
    a, b = (json.loads((o / "manifest.json").read_text()) for o in outs)
    assert a["models"] == b["models"] == [DIGITS]
    assert a["files"] == b["files"] and a["checkpoint_digests"] == b["checkpoint_digests"]
    for f in a["files"]:
        assert (outs[0] / f).read_bytes() == (outs[1] / f).read_bytes()

    # iaside: the per-model run is keyed by name + digest: the path reuses the name's run
    results = []
    for ref in (DIGITS, path):
        assert cli.main(["iaside", "--models", ref, "--k", "20", "--bands", "3",
                         "--out", str(tmp_path / "ia"),
                         "--quiet"]) == 0
        results.append(json.loads((tmp_path / "ia" / "summary.json").read_text())["results"])
    assert results[0] == results[1]
    capsys.readouterr()


def test_metadata_without_architecture_is_refused(tmp_path, capsys):
    ckpt = tmp_path / "no_arch"
    shutil.copytree(checkpoint_root() / DIGITS, ckpt)
    meta = json.loads((ckpt / "metadata.json").read_text())
    del meta["arch"]
    (ckpt / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="does not name the architecture"):
        resolve_model(str(ckpt))
    assert cli.main(["examples", "--model", str(ckpt), "--out", str(tmp_path / "ex")]) == 2
    assert "does not name the architecture" in _one_line_error(capsys, "examples")
    assert not (tmp_path / "ex").exists()


def test_unknown_names_and_directories(tmp_path):
    with pytest.raises(ValueError, match="did you mean digits_resnet-normal"):
        resolve_model("digits_resnet-normall")
    with pytest.raises(ValueError, match="no such checkpoint directory"):
        resolve_model(str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="has no metadata.json"):
        resolve_model(str(tmp_path))


def test_convert_option_combinations_are_refused(capsys):
    assert cli.main(["convert", "resnet18-normal", "r18.pth", "--num-classes", "10"]) == 2
    assert "--num-classes describes a model of your own" in _one_line_error(capsys, "convert")
    assert cli.main(["convert", "r18.pth"]) == 2
    assert "--arch" in _one_line_error(capsys, "convert")
    assert cli.main(["convert", "r18.pth", "--arch", "resnet18", "--mean", "0.5,0.5,0.5"]) == 2
    assert "--mean and --std go together" in _one_line_error(capsys, "convert")


def test_registry_name_with_other_weights_points_to_arch(cifar_r18, tmp_path, capsys):
    """The issue's first symptom: a 10-class ResNet-18 under the 1000-class registry name."""
    _, weights, _ = cifar_r18
    assert cli.main(["convert", "resnet18-normal", str(weights), "--out",
                     str(tmp_path / "never")]) == 2
    err = capsys.readouterr().err
    assert "fc.bias: file has (10,), model expects (1000,)" in err
    assert f"lst-jax convert {weights} --arch resnet18 --num-classes N" in err
    assert not (tmp_path / "never").exists()


def test_bare_name_under_the_checkpoint_root_and_models_listing(cifar_r18, monkeypatch,
                                                                 capsys):
    _, _, out = cifar_r18
    monkeypatch.setenv("LST_JAX_CHECKPOINTS", str(out.parent))
    ref = resolve_model("cifar_r18")
    assert ref.path == out.absolute() and not ref.registry
    assert ref.spec == resolve_model(str(out)).spec
    with pytest.raises(ValueError, match="did you mean cifar_r18"):
        resolve_model("cifar_r81")
    assert cli.main(["models"]) == 0
    assert "cifar_r18  resnet18  10 classes (cifar10)  32x32x3" in capsys.readouterr().out


@pytest.mark.parametrize("edit, match", [
    ({"arch": "digits_resnett"}, "unknown architecture 'digits_resnett' \\(did you mean "
                                 "digits_resnet"),
    ({"num_classes": 7}, "records num_classes 7, but digits_resnet"),
    ({"name": "mine", "input_size": None}, "does not record 'input_size'"),
])
def test_metadata_that_does_not_describe_the_model_is_refused(tmp_path, edit, match):
    ckpt = tmp_path / "edited"
    shutil.copytree(checkpoint_root() / DIGITS, ckpt)
    meta = {**json.loads((ckpt / "metadata.json").read_text()), **edit}
    (ckpt / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=match) as e:
        resolve_model(str(ckpt))
    assert "\n" not in str(e.value)


def test_labels_must_fit_the_class_count(tmp_path):
    from lst_jax.convert.shapes import resolve_labels

    names = tmp_path / "names.txt"
    names.write_text("cat\ndog\n")
    assert resolve_labels(str(names), 2, 32)[0].startswith("custom:")
    with pytest.raises(ValueError, match="names 2 classes, but the model has 10"):
        resolve_labels(str(names), 10, 32)
    assert resolve_labels(None, 1000, 224) == ("imagenet", None)
    assert resolve_labels(None, 7, 64) == ("indices:7", None)
