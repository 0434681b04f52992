"""Reading PyTorch weight files without executing pickled code.

- `.safetensors`: `safetensors.numpy.load_file` (no torch needed).
- anything else (`.pth`, `.pt`, `.bin`, `.pth.tar`, ...): `torch.load(weights_only=True)`, which
  refuses any pickle that holds more than tensors and plain containers.

`clean_state_dict` then removes the usual wrappers: `module.` (DataParallel), the
robustness-library `attacker.` copy, input normalisers (`normalize.mean/std`,
`normalizer.new_mean/new_std`, `mu`/`sigma`; returned separately so that they can be checked
against the registry's normalisation) and RobustBench's `model.` prefix.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Mapping

import numpy as np

WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "net", "module")
_NORMALIZER = re.compile(r"^(normalize\.(mean|std)|normalizer\.new_(mean|std)|mu|sigma)$")


def _is_tensor(v) -> bool:
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is present whenever torch.load ran
        return isinstance(v, np.ndarray)
    return isinstance(v, (torch.Tensor, np.ndarray))


def _to_numpy(v) -> np.ndarray:
    if isinstance(v, np.ndarray):
        return v
    import torch

    t = v.detach().cpu()
    if t.is_floating_point() and t.dtype != torch.float32:
        t = t.to(torch.float32)
    return t.numpy()


def _find_tensors(obj, trail=()):
    """(tensor dict, the wrapper keys leading to it) or None."""
    if not isinstance(obj, Mapping) or not obj:
        return None
    if all(isinstance(k, str) and _is_tensor(v) for k, v in obj.items()):
        return dict(obj), trail
    for k in WRAPPER_KEYS:
        if isinstance(obj.get(k), Mapping):
            found = _find_tensors(obj[k], trail + (k,))
            if found:
                return found
    tensors = {k: v for k, v in obj.items() if isinstance(k, str) and _is_tensor(v)}
    return (tensors, trail) if tensors else None


def read_state_dict(path) -> tuple[dict[str, np.ndarray], list[str]]:
    """Reads a PyTorch weights file into `{key: numpy array}` (float tensors as float32).

    Args:
        path: a `.safetensors` file, or a file written by `torch.save` (state dict, possibly
            wrapped in a checkpoint dict under `state_dict` / `model` / ...).

    Returns:
        (state dict, notes): the notes say which wrapper key was unpacked, if any.

    Raises:
        FileNotFoundError: no such file.
        ValueError: unreadable, truncated, not a weights file, no tensors, or (for a non-
            safetensors file) torch is not installed.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} does not exist")
    if path.suffix.lower() == ".safetensors":
        from safetensors.numpy import load_file

        try:
            sd = load_file(str(path))
        except TypeError as e:  # bfloat16: numpy has no such dtype; torch reads it
            try:
                from safetensors.torch import load_file as load_torch
            except ImportError:
                raise ValueError(f"{path} holds tensors numpy cannot represent ({e}); "
                                 "install torch (the [torch] extra) to read it") from None
            sd = {k: _to_numpy(v) for k, v in load_torch(str(path)).items()}
        except Exception as e:  # safetensors raises its own error types
            raise ValueError(f"cannot read {path} as safetensors (truncated or not a "
                             f"safetensors file): {type(e).__name__}: {e}") from None
        if not sd:
            raise ValueError(f"{path} holds no tensors")
        # floats (incl. float16 and ml_dtypes' bfloat16, kind "V") -> float32; ints kept
        return {k: (v if v.dtype.kind in "iub" else v.astype(np.float32))
                for k, v in sd.items()}, []
    try:
        import torch
    except ImportError:
        raise ValueError(f"reading {path.name} needs PyTorch (`pip install torch==2.13.0`, "
                         "the [torch] extra); a .safetensors file needs no torch") from None
    import pickle

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(
            f"{path} is not a plain weights file: torch.load(weights_only=True) refused it "
            f"({first}). lst_jax never unpickles arbitrary objects; re-save the weights with "
            "torch.save(model.state_dict(), path) or as .safetensors") from None
    except Exception as e:  # truncated zip, not a torch file, ...
        raise ValueError(f"cannot read {path} with torch.load (truncated or not a PyTorch "
                         f"file): {type(e).__name__}: {e}") from None
    found = _find_tensors(obj)
    if found is None:
        top = sorted(map(str, obj))[:20] if isinstance(obj, Mapping) else type(obj).__name__
        raise ValueError(f"{path} holds no tensors (top level: {top})")
    tensors, trail = found
    notes = [f"unpacked checkpoint[{']['.join(map(repr, trail))}]"] if trail else []
    return {k: _to_numpy(v) for k, v in tensors.items()}, notes


def clean_state_dict(sd: Mapping[str, np.ndarray]):
    """Strips wrapper prefixes and splits off input normalisers.

    Returns:
        (state dict, notes, normaliser {"mean": (3,), "std": (3,)} or None).

    Raises:
        ValueError: two keys collide after stripping a prefix.
    """
    notes: list[str] = []
    sd = dict(sd)

    def strip(prefix: str):
        nonlocal sd
        hits = [k for k in sd if k.startswith(prefix)]
        if not hits:
            return
        new = {}
        for k, v in sd.items():
            nk = k[len(prefix):] if k.startswith(prefix) else k
            if nk in new:
                raise ValueError(f"keys collide after removing the prefix {prefix!r}: {nk}")
            new[nk] = v
        sd = new
        notes.append(f"removed prefix {prefix!r} from {len(hits)} keys")

    strip("module.")
    attacker = [k for k in sd if k.startswith("attacker.")]
    if attacker:
        for k in attacker:
            del sd[k]
        notes.append(f"dropped {len(attacker)} keys of the robustness-library attacker copy")
    norm = {k: np.asarray(sd.pop(k), np.float64).reshape(-1)
            for k in [k for k in sd if _NORMALIZER.match(k)]}
    normalizer = None
    if norm:
        mean = next((v for k, v in norm.items() if k.endswith("mean") or k == "mu"), None)
        std = next((v for k, v in norm.items() if k.endswith("std") or k == "sigma"), None)
        normalizer = {"mean": mean, "std": std}
        notes.append(f"input normaliser in the file: {sorted(norm)}")
    strip("model.")
    return sd, notes, normalizer


def file_sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
