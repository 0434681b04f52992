"""One data reference (`DataRef`), one loader (`load_images`), the same `--data` options on
every command that reads images, and the bad-input errors of image folders."""

import json

import numpy as np
import pytest
from PIL import Image

from lst_jax import cli
from lst_jax.data.reference import DATA_KINDS, DataRef, check_data_shape, load_images, open_images

# every command that reads images, as its argv prefix
COMMANDS = {
    "examples": ["examples"], "pool": ["pool"], "full-eval": ["full-eval"],
    "iaside": ["iaside", "--models", "digits_resnet-normal"],
    "barrier": ["connectivity", "barrier"], "detect": ["connectivity", "detect"],
    "bypass": ["connectivity", "bypass"], "profile": ["profile"],
}
DATA_FLAGS = {"--data", "--folder", "--data-dir", "--split", "--interpolation",
              "--class-index", "--label"}


def _subparser(argv):
    p = cli.build_parser()
    for word in argv:
        subs = [a for a in p._actions if a.__class__.__name__ == "_SubParsersAction"]
        if not subs or word not in subs[0].choices:
            break
        p = subs[0].choices[word]
    return p


def _png(path, shape, value):
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(value)
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(path)


@pytest.fixture
def image_folder(tmp_path):
    """An ImageFolder of two classes (cat, dog), images of mixed sizes and modes."""
    root = tmp_path / "images"
    _png(root / "cat" / "a.png", (40, 52, 3), 1)
    _png(root / "cat" / "b.png", (33, 33), 2)            # grey
    _png(root / "dog" / "c.png", (64, 48, 3), 3)
    _png(root / "dog" / "d.png", (32, 90, 3), 4)
    _png(root / "dog" / "e.png", (50, 50, 3), 5)
    return root


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_takes_the_same_data_options(command, tmp_path):
    p = _subparser(COMMANDS[command])
    actions = {a.option_strings[0]: a for a in p._actions if a.option_strings}
    assert DATA_FLAGS <= set(actions), (command, DATA_FLAGS - set(actions))
    assert set(DATA_KINDS) <= set(actions["--data"].choices)
    assert actions["--interpolation"].choices == ["bilinear", "bicubic"]
    argv = COMMANDS[command] + ["--data", "folder", "--folder", str(tmp_path),
                                "--class-index", "idx.json", "--interpolation", "bicubic"]
    args = cli.build_parser().parse_args(argv)
    assert args.data_ref == DataRef("folder", folder=str(tmp_path), class_index="idx.json",
                                    interpolation="bicubic")
    args = cli.build_parser().parse_args(COMMANDS[command] + ["--data", "cifar10", "--split",
                                                              "train", "--data-dir", "d"])
    assert args.data_ref == DataRef("cifar10", split="train", data_dir="d")
    assert cli.build_parser().parse_args(COMMANDS[command]).data_ref == DataRef()


@pytest.mark.parametrize("extra, match", [
    (["--data", "folder"], "needs --folder"),
    (["--folder", "x"], "only apply to --data folder"),
    (["--data", "photos", "--split", "train"], "has no splits"),
    (["--data", "digits", "--data-dir", "x"], "--data-dir"),
    (["--data", "folder", "--folder", "x", "--label", "1", "--class-index", "c.json"],
     "exclude each other"),
    (["--data", "folder", "--folder", "x", "--label", "-1"], "--label must be"),
])
def test_inconsistent_data_options_are_refused_by_the_parser(extra, match, capsys):
    with pytest.raises(SystemExit) as e:
        cli.build_parser().parse_args(COMMANDS["pool"] + extra)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert match in err


def test_image_folder_loads_with_sorted_class_labels_at_the_model_size(image_folder):
    ref = DataRef("folder", folder=str(image_folder))
    x, y = load_images(ref, (32, 32, 3))
    assert x.shape == (5, 32, 32, 3) and x.dtype == np.float32
    assert y.tolist() == [0, 0, 1, 1, 1] and y.dtype == np.int32
    assert 0 <= x.min() and x.max() <= 1 and np.all((x * 255) % 1 == 0)
    np.testing.assert_array_equal(x[1, ..., 0], x[1, ..., 2])     # grey -> RGB
    x, y = load_images(ref, (24, 24, 3), per_class=1)
    assert x.shape == (2, 24, 24, 3) and y.tolist() == [0, 1]
    x, y = load_images(ref, (24, 24, 3), limit=3)
    assert y.tolist() == [0, 0, 1]
    # bicubic is another filter: other pixels, same shape
    xb, _ = load_images(DataRef("folder", folder=str(image_folder), interpolation="bicubic"),
                        (24, 24, 3), limit=3)
    assert xb.shape == x.shape and not np.array_equal(xb, x)


def test_class_index_json_both_formats(image_folder, tmp_path):
    plain = tmp_path / "plain.json"
    plain.write_text(json.dumps({"dog": 207, "cat": 281, "fox": 277}))
    torchvision = tmp_path / "tv.json"
    torchvision.write_text(json.dumps({"281": ["cat", "tabby"], "207": ["dog", "retriever"]}))
    for idx in (plain, torchvision):
        src = open_images(DataRef("folder", folder=str(image_folder), class_index=str(idx)),
                          (32, 32, 3))
        assert src.labels.tolist() == [281, 281, 207, 207, 207]
        assert src.num_classes == 282 if idx == torchvision else 282
    a = open_images(DataRef("folder", folder=str(image_folder), class_index=str(plain)),
                    (32, 32, 3))
    b = open_images(DataRef("folder", folder=str(image_folder)), (32, 32, 3))
    assert a.name != b.name          # other labels: another source in every cache key


def test_flat_folder_needs_label(tmp_path):
    flat = tmp_path / "flat"
    _png(flat / "a.png", (40, 30, 3), 1)
    _png(flat / "b.jpg", (30, 40, 3), 2)
    with pytest.raises(ValueError, match=r"no class subfolders.*pass --label INT"):
        open_images(DataRef("folder", folder=str(flat)), (32, 32, 3))
    x, y = load_images(DataRef("folder", folder=str(flat), label=7), (32, 32, 3))
    assert x.shape == (2, 32, 32, 3) and y.tolist() == [7, 7]
    src = open_images(DataRef("folder", folder=str(flat)), (32, 32, 3), labelled=False)
    assert src.labels.tolist() == [-1, -1]


def test_bad_folders_are_refused_naming_the_culprit(image_folder, tmp_path):
    (image_folder / "dog" / "notes.txt").write_text("not an image")
    with pytest.raises(ValueError, match=r"dog/notes\.txt is not an image file") as e:
        open_images(DataRef("folder", folder=str(image_folder)), (32, 32, 3))
    assert "\n" not in str(e.value)
    (image_folder / "dog" / "notes.txt").unlink()
    (image_folder / "dog" / "broken.png").write_bytes(b"no png")
    src = open_images(DataRef("folder", folder=str(image_folder)), (32, 32, 3))
    with pytest.raises(ValueError, match=r"cannot read image .*dog/broken\.png") as e:
        src.get(np.arange(len(src)))
    assert "\n" not in str(e.value)
    idx = tmp_path / "idx.json"
    idx.write_text(json.dumps({"cat": 3}))
    with pytest.raises(ValueError, match=r"class subfolder .*images/dog is not in the "
                                         r"--class-index"):
        open_images(DataRef("folder", folder=str(image_folder), class_index=str(idx)),
                    (32, 32, 3))


def test_data_shape_must_match_the_model():
    with pytest.raises(ValueError, match=r"digits images are 32x32x3 but the model expects "
                                         r"224x224x3"):
        check_data_shape(DataRef(), (224, 224, 3))
    with pytest.raises(ValueError, match="cifar10 images are 32x32x3"):
        load_images(DataRef("cifar10"), (64, 64, 3))
    with pytest.raises(ValueError, match="square"):
        check_data_shape(DataRef("imagenet2012"), (224, 192, 3))
    with pytest.raises(ValueError, match="no class labels"):
        open_images(DataRef("photos"), (32, 32, 3))
    x, y = load_images(DataRef(), (32, 32, 3), limit=5)
    assert x.shape == (5, 32, 32, 3) and y.shape == (5,)


def test_tfds_mock_cifar10_through_the_reference():
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=12):
        x, y = load_images(DataRef("cifar10"), (32, 32, 3), limit=5)
        assert x.shape == (5, 32, 32, 3) and y.dtype == np.int32
        assert np.all((0 <= y) & (y < 10))
        x2, y2 = load_images(DataRef("cifar10", split="train"), (32, 32, 3), per_class=1)
        assert len(np.unique(y2)) == len(y2) and x2.shape[1:] == (32, 32, 3)
        inet = open_images(DataRef("imagenet2012"), (64, 64, 3))    # resized 73 -> crop 64
        assert inet.get([0])[0].shape == (1, 64, 64, 3)


def test_cli_refuses_bad_data_before_any_model(tmp_path, image_folder, capsys, monkeypatch):
    """Each bad input: exit 2, one line on stderr, no checkpoint restored."""
    from lst_jax.models import registry

    monkeypatch.setattr(registry, "load_checkpoint",
                        lambda *a, **k: pytest.fail("a model was loaded"))
    flat = tmp_path / "flat"
    _png(flat / "a.png", (40, 30, 3), 1)
    junk = tmp_path / "junk"
    _png(junk / "0" / "a.png", (40, 30, 3), 1)
    (junk / "1").mkdir()
    (junk / "1" / "x.csv").write_text("1,2")
    idx = tmp_path / "idx.json"
    idx.write_text(json.dumps({"cat": 0}))
    out = ["--out", str(tmp_path / "run")]
    root = ["--root", str(tmp_path / "run")]
    cases = [
        (["pool", "--data", "folder", "--folder", str(flat)] + out, "pass --label"),
        (["full-eval", "--data", "folder", "--folder", str(flat)] + out, "pass --label"),
        (["connectivity", "barrier", "--data", "folder", "--folder", str(junk)] + root,
         "x.csv is not an image file"),
        (["connectivity", "detect", "--data", "folder", "--folder", str(flat)] + root,
         "pass --label"),
        (["iaside", "--models", "digits_resnet-normal", "--data", "folder", "--folder",
          str(junk)] + out, "x.csv is not an image file"),
        (["connectivity", "bypass", "--data", "folder", "--folder", str(image_folder),
          "--class-index", str(idx)] + out, "images/dog is not in the --class-index"),
        (["profile", "--preset", "quick", "--data", "folder", "--folder", str(flat)] + out,
         "pass --label"),
        (["examples", "--model", "resnet50-normal", "--data", "digits"] + out,
         "digits images are 32x32x3 but the model expects 224x224x3"),
        (["iaside", "--models", "resnet50-normal", "--data", "cifar10"] + out,
         "cifar10 images are 32x32x3"),
    ]
    for argv, match in cases:
        assert cli.main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and match in err, (argv, err)


def test_iaside_on_the_unlabelled_photos(tmp_path):
    """`iaside --data photos` (refused before): each model labels the photos itself."""
    out = tmp_path / "iaside"
    assert cli.main(["iaside", "--models", "digits_resnet-normal", "--data", "photos",
                     "--k", "4", "--bands", "4", "--group-size", "2", "--quiet",
                     "--out", str(out)]) == 0
    res = json.loads((out / "summary.json").read_text())["results"][0]
    assert res["K"] == 4 and np.isfinite(res["score"])


def test_bypass_on_a_generated_image_folder(tmp_path, image_folder):
    """The connectivity bypass (digits only before) on an ImageFolder of mixed sizes whose
    classes come from a --class-index JSON."""
    idx = tmp_path / "idx.json"
    idx.write_text(json.dumps({"cat": 0, "dog": 1}))
    out = tmp_path / "bypass"
    assert cli.main(["connectivity", "bypass", "--quick", "--data", "folder", "--folder",
                     str(image_folder), "--class-index", str(idx), "--target-class", "1",
                     "--source-class", "0", "--candidates", "2", "--bypass-steps", "2",
                     "--attack-steps", "3", "--points", "5", "--max-depth", "1", "--quiet",
                     "--out", str(out)]) == 0
    z = np.load(out / "results.npz")
    assert z["pair_index"].tolist() == [2, 3] and z["source_index"].tolist() == [0]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["data"]["kind"] == "folder"
