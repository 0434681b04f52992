"""PyTorch state dicts -> LPIPS-AlexNet parameters (pure numpy; torch only to read .pth).

Accepted layouts:
- torchvision `alexnet().state_dict()`: `features.{0,3,6,8,10}.{weight,bias}` (the
  `classifier.*` entries are ignored);
- the `lpips.LPIPS(net='alex')` module's own state dict: `net.slice{1..5}.{0,3,6,8,10}.{weight,
  bias}` plus the heads `lin{0..4}.model.1.weight`;
- the `lpips` package's head file `weights/v0.1/alex.pth`: `lin{0..4}.model.1.weight`
  (`model.0` when the heads were built without dropout), each (1, C, 1, 1).

Convolution kernels are transposed OIHW -> HWIO; heads are flattened to (C,). Missing or
unexpected keys and wrong shapes raise `ValueError` naming them.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from lst_jax.metrics.perceptual import CHANNELS, CONVS, check_params

# torchvision `features` index of each conv, and lpips' slice holding it
_FEATURE_INDEX = (0, 3, 6, 8, 10)


def _np(v) -> np.ndarray:
    if hasattr(v, "detach"):  # torch tensor
        v = v.detach().cpu().numpy()
    return np.asarray(v, np.float32)


def _backbone_keys(sd: dict):
    """(layout name, {conv name: (weight key, bias key)}) for the keys present in `sd`."""
    tv = {n: (f"features.{j}.weight", f"features.{j}.bias")
          for (n, *_), j in zip(CONVS, _FEATURE_INDEX)}
    lp = {n: (f"net.slice{i}.{j}.weight", f"net.slice{i}.{j}.bias")
          for i, ((n, *_), j) in enumerate(zip(CONVS, _FEATURE_INDEX), start=1)}
    if any(k.startswith("features.") for k in sd):
        return "torchvision", tv
    if any(k.startswith("net.slice") for k in sd):
        return "lpips", lp
    raise ValueError("alexnet_state_dict has neither torchvision AlexNet keys ('features.0."
                     "weight', ...) nor lpips module keys ('net.slice1.0.weight', ...); got "
                     f"{sorted(sd)[:6]}...")


def _head_key(sd: dict, i: int) -> str | None:
    for k in (f"lin{i}.model.1.weight", f"lin{i}.model.0.weight"):
        if k in sd:
            return k
    return None


def lpips_params_from_torch(alexnet_state_dict: dict, heads_state_dict: dict | None = None
                            ) -> dict:
    """Converts PyTorch AlexNet + LPIPS head weights to the `lst_jax.metrics` LPIPS pytree.

    Args:
        alexnet_state_dict: torchvision AlexNet state dict, or a full `lpips.LPIPS` state dict
            (then the heads may come from it too). Values: torch tensors or numpy arrays.
        heads_state_dict: the `lpips` `alex.pth` heads; default: taken from
            `alexnet_state_dict`.

    Returns:
        Parameter pytree of float32 numpy arrays (see `load_lpips_params`).

    Raises:
        ValueError: missing/unexpected keys or wrong shapes (names listed).
    """
    sd = dict(alexnet_state_dict)
    layout, keys = _backbone_keys(sd)
    used = set()
    alexnet = {}
    for name, (wk, bk) in keys.items():
        missing = [k for k in (wk, bk) if k not in sd]
        if missing:
            raise ValueError(f"alexnet_state_dict ({layout} layout) is missing {missing}")
        w, b = _np(sd[wk]), _np(sd[bk])
        if w.ndim != 4:
            raise ValueError(f"alexnet_state_dict[{wk!r}] must be a 4-D OIHW conv weight, got "
                             f"shape {w.shape}")
        alexnet[name] = {"kernel": w.transpose(2, 3, 1, 0), "bias": b}
        used.update((wk, bk))
    heads_sd = sd if heads_state_dict is None else dict(heads_state_dict)
    heads_name = "alexnet_state_dict" if heads_state_dict is None else "heads_state_dict"
    lin = {}
    for i, c in enumerate(CHANNELS):
        k = _head_key(heads_sd, i)
        if k is None:
            raise ValueError(f"{heads_name} is missing the LPIPS head 'lin{i}.model.1.weight' "
                             "(pass the lpips package's weights/v0.1/alex.pth as heads)")
        w = _np(heads_sd[k])
        if w.size != c:
            raise ValueError(f"{heads_name}[{k!r}] has shape {w.shape}, expected (1, {c}, 1, 1)")
        lin[f"lin{i + 1}"] = w.reshape(c)
        if heads_state_dict is None:
            used.add(k)
    ignored = ("classifier.",) if layout == "torchvision" else ()
    extra = sorted(k for k in sd if k not in used and not k.startswith(ignored)
                   and not k.startswith("scaling_layer."))
    if extra:
        raise ValueError(f"alexnet_state_dict has unexpected entries {extra[:8]}")
    if heads_state_dict is not None:
        hused = {_head_key(heads_sd, i) for i in range(len(CHANNELS))}
        hextra = sorted(k for k in heads_sd if k not in hused)
        if hextra:
            raise ValueError(f"heads_state_dict has unexpected entries {hextra[:8]}")
    return check_params({"alexnet": alexnet, "lin": lin})


def lpips_params_to_torch(params) -> dict:
    """The inverse: an `lpips.LPIPS(net='alex')` state dict (numpy values, NCHW/OIHW).

    Keys `net.slice{i}.{j}.weight/bias` and `lin{i}.model.1.weight`; load with
    `{k: torch.from_numpy(v) for k, v in ...}` and `load_state_dict(..., strict=False)` (the
    module also has the scaling-layer buffers).
    """
    params = check_params(params)
    out = {}
    for i, ((name, *_), j) in enumerate(zip(CONVS, _FEATURE_INDEX), start=1):
        p = params["alexnet"][name]
        out[f"net.slice{i}.{j}.weight"] = np.ascontiguousarray(p["kernel"].transpose(3, 2, 0, 1))
        out[f"net.slice{i}.{j}.bias"] = p["bias"].copy()
    for i, c in enumerate(CHANNELS):
        out[f"lin{i}.model.1.weight"] = params["lin"][f"lin{i + 1}"].reshape(1, c, 1, 1).copy()
    return out


def load_torch_state_dict(path) -> dict:
    """Reads a state dict without unpickling code: `.safetensors` (no torch needed) or `.pth`
    / `.pt` with `torch.load(weights_only=True)`, through `lst_jax.convert.read_state_dict`;
    returns float32 numpy arrays.

    Raises:
        ValueError: missing file, unknown suffix, torch not installed for a .pth, or a file
            that holds no tensors.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"path: state dict file {str(path)!r} does not exist")
    if path.suffix not in (".safetensors", ".pth", ".pt", ".bin"):
        raise ValueError(f"path must be a .pth/.pt/.bin or .safetensors file, got {str(path)!r}")
    from lst_jax.convert.io import read_state_dict

    return {k: _np(v) for k, v in read_state_dict(path)[0].items()}


def installed_lpips_heads_path(version: str = "0.1") -> Path | None:
    """`weights/v{version}/alex.pth` of an installed `lpips` package (not imported), or None."""
    spec = importlib.util.find_spec("lpips")
    if spec is None or not spec.submodule_search_locations:
        return None
    p = Path(list(spec.submodule_search_locations)[0]) / "weights" / f"v{version}" / "alex.pth"
    return p if p.is_file() else None


def lpips_params_from_torch_files(alexnet_path, heads_path=None) -> dict:
    """Converts a torchvision AlexNet checkpoint (+ `lpips` heads) read from disk.

    Args:
        alexnet_path: torchvision `alexnet` weights (e.g. `alexnet-owt-7be5be79.pth`) or a
            saved `lpips.LPIPS` state dict; `.pth` or `.safetensors`.
        heads_path: `lpips`' `weights/v0.1/alex.pth`; default: the file inside an installed
            `lpips` package, if `alexnet_path` does not contain the heads itself.

    Returns:
        Parameter pytree (save it with `save_lpips_params`, load with `load_lpips_params`).
    """
    sd = load_torch_state_dict(alexnet_path)
    if heads_path is None and _head_key(sd, 0) is None:
        heads_path = installed_lpips_heads_path()
        if heads_path is None:
            raise ValueError("heads_path: no LPIPS heads given and no installed lpips package "
                             "found (pip install lpips==0.1.4, or pass weights/v0.1/alex.pth)")
    heads = None if heads_path is None else load_torch_state_dict(heads_path)
    return lpips_params_from_torch(sd, heads)


__all__ = ["lpips_params_from_torch", "lpips_params_to_torch", "load_torch_state_dict",
           "lpips_params_from_torch_files", "installed_lpips_heads_path"]
