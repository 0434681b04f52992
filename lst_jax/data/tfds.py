"""tensorflow-datasets inputs without TensorFlow: `tfds.data_source` (random access).

The data must have been prepared by the user (array_record or parquet format), e.g. on a
machine with internet access:

    tfds build cifar10 --file_format=array_record          # ~/tensorflow_datasets/cifar10
    tfds build imagenet2012 --file_format=array_record --manual_dir=DIR_WITH_THE_TARS

then copied to `data_dir` (default `~/tensorflow_datasets` or `$TFDS_DATA_DIR`). lst_jax never
downloads data. CIFAR-10 images are used as they are (32x32, `x / 255`); ImageNet validation
images get torchvision's `Resize(256)` + `CenterCrop(224)` (bilinear by default).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lst_jax.data.preprocess import resize_center_crop_uint8
from lst_jax.data.sources import check_indices, stack_images

DEFAULTS = {
    # name: (default split, crop size, resize)
    "cifar10": ("test", None, None),
    "imagenet2012": ("validation", 224, 256),
}


def missing_data_message(name: str, split: str, data_dir, err: Exception) -> str:
    where = data_dir or "the tensorflow-datasets default data directory ($TFDS_DATA_DIR or " \
                        "~/tensorflow_datasets)"
    manual = name == "imagenet2012"          # the only dataset whose files tfds cannot fetch
    build = f"tfds build {name} --file_format=array_record" + (" --manual_dir=DIR" * manual)
    note = " (DIR holds the ILSVRC2012 tar files, which tfds cannot download)" * manual
    reason = str(err).splitlines()[0].rstrip(" :") if str(err) else ""
    return (f"tensorflow-datasets split {name}/{split} is not available in {where}: lst_jax "
            f"reads prepared data only and never downloads it. Prepare it where internet is "
            f"available with `{build}`{note}, then copy the prepared folder to the data "
            f"directory (pass it with --data-dir). [{type(err).__name__}: {reason}]")


class TfdsSource:
    """Random access to a prepared tfds split, as float32 NHWC images in [0, 1].

    Shape:
        get(indices) -> images (n, S, S, 3) float32, labels (n,) int32.
    """

    def __init__(self, name: str, split: str | None = None, data_dir=None,
                 image_size: int | None = None, resize: int | None = None,
                 interpolation: str = "bilinear"):
        if name not in DEFAULTS:
            raise ValueError(f"unsupported tfds dataset {name!r}; supported: {sorted(DEFAULTS)}")
        try:
            import tensorflow_datasets as tfds  # optional: only these data sources use it
        except ImportError as e:
            raise ImportError(f"--data {name} reads prepared tensorflow-datasets splits; install "
                              "the optional extra: pip install 'lst_jax[tfds]'") from e

        dsplit, dsize, dresize = DEFAULTS[name]
        self.split = split or dsplit
        self.image_size = image_size if image_size is not None else dsize
        self.resize = resize if resize is not None else dresize
        self.interpolation = interpolation
        self.name = f"{name}-{self.split}"
        if data_dir is not None:
            data_dir = Path(data_dir).expanduser()      # as tfds reads it
            if not data_dir.is_dir():
                raise FileNotFoundError(f"--data-dir {data_dir} does not exist (the directory "
                                        f"that holds the prepared tensorflow-datasets folder "
                                        f"{name}/)")
        try:
            self._ds = tfds.data_source(name, split=self.split, data_dir=data_dir,
                                        download=False)
            n = len(self._ds)
        except Exception as e:  # tfds raises several types for missing / unprepared data
            raise FileNotFoundError(missing_data_message(name, self.split, data_dir, e)) from e
        if n == 0:
            raise FileNotFoundError(missing_data_message(name, self.split, data_dir,
                                                         ValueError("empty split")))
        try:
            self.num_classes = int(self._ds.dataset_info.features["label"].num_classes)
        except Exception:  # pragma: no cover - every supported dataset has class labels
            self.num_classes = None

    def __len__(self) -> int:
        return len(self._ds)

    def _image(self, record) -> np.ndarray:
        return resize_center_crop_uint8(np.asarray(record["image"]), self.image_size,
                                        self.resize, self.interpolation)

    def get(self, indices):
        records = [self._ds[i] for i in check_indices(indices, len(self), self.name)]
        images = stack_images([self._image(r) for r in records], f"{self.name} images")
        labels = np.asarray([int(r["label"]) for r in records], np.int32)
        return images, labels
