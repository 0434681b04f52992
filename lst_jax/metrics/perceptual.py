"""LPIPS v0.1 with the AlexNet trunk (Zhang et al., CVPR 2018, arXiv 1801.03924) in jax.numpy.

The same computation as `lpips.LPIPS(net='alex', version='0.1')` of the PyTorch `lpips`
package, as called by LST (images in [0, 1] mapped to `2x - 1`):

1. ScalingLayer `(x - shift) / scale`, shift `(-.030, -.088, -.188)`, scale `(.458, .448, .450)`;
2. torchvision AlexNet `features` up to relu1 ... relu5 (64, 192, 384, 256, 256 channels):
   conv 11x11/4 pad 2, ReLU | maxpool 3/2, conv 5x5 pad 2, ReLU | maxpool 3/2, conv 3x3 pad 1,
   ReLU | conv 3x3 pad 1, ReLU | conv 3x3 pad 1, ReLU;
3. each feature map unit-normalised over channels, `z / (||z||_2 + 1e-10)`;
4. squared difference, a learned non-negative 1x1 linear head (no bias), spatial mean;
5. sum over the five layers.

Parameters are a plain pytree (see `load_lpips_params`); the shipped file
`weights/lpips_alexnet_v0.1.npz` holds torchvision's ImageNet AlexNet features and the `lpips`
v0.1 linear heads, converted once by `experiments/convert_lpips_weights.py`.
"""

from __future__ import annotations

import functools
import hashlib
import json
from importlib import resources
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from lst_jax.metrics._validate import check_pair
from lst_jax.utils.trees import flatten_dict, unflatten_dict

SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)
EPS = 1e-10
CHANNELS = (64, 192, 384, 256, 256)
# (name, kernel size, stride, padding, max-pool before the conv)
CONVS = (("conv1", 11, 4, 2, False), ("conv2", 5, 1, 2, True), ("conv3", 3, 1, 1, True),
         ("conv4", 3, 1, 1, False), ("conv5", 3, 1, 1, False))
MIN_SIZE = 31  # smallest H, W for which relu5 is non-empty (e.g. CIFAR's 32x32 works)
WEIGHTS_FILE = "lpips_alexnet_v0.1.npz"


def param_shapes() -> dict:
    """Expected parameter tree, as shapes: `{"alexnet": {convK: {kernel (HWIO), bias}},
    "lin": {linK: (C,)}}`."""
    shapes = {"alexnet": {}, "lin": {}}
    cin = 3
    for (name, k, _, _, _), cout in zip(CONVS, CHANNELS):
        shapes["alexnet"][name] = {"kernel": (k, k, cin, cout), "bias": (cout,)}
        cin = cout
    for i, c in enumerate(CHANNELS, start=1):
        shapes["lin"][f"lin{i}"] = (c,)
    return shapes


def check_params(params, name: str = "params", *, values: bool = True) -> dict:
    """Checks an LPIPS parameter tree against `param_shapes()`.

    With `values=True` also checks the values (finite, non-negative heads) and returns float32
    numpy leaves; with `values=False` only the layout and shapes are checked (works on tracers)
    and `params` is returned unchanged.

    Raises:
        ValueError: missing or unexpected entries, wrong shapes, non-finite values, or negative
            linear-head weights (LPIPS heads are non-negative by construction).
    """
    if not isinstance(params, dict):
        raise ValueError(f"{name} must be a dict pytree as returned by load_lpips_params, got "
                         f"{type(params).__name__}")
    want = flatten_dict(param_shapes())
    got = flatten_dict(params)
    missing, extra = sorted(set(want) - set(got)), sorted(set(got) - set(want))
    if missing or extra:
        raise ValueError(f"{name} does not match the LPIPS-AlexNet layout: missing {missing}, "
                         f"unexpected {extra}")
    for k, shape in want.items():
        if tuple(np.shape(got[k])) != tuple(shape):
            raise ValueError(f"{name}[{k!r}] has shape {tuple(np.shape(got[k]))}, expected "
                             f"{tuple(shape)}")
    if not values:
        return params
    out = {}
    for k in want:
        v = np.asarray(got[k], np.float32)
        if not np.isfinite(v).all():
            raise ValueError(f"{name}[{k!r}] contains NaN or infinite values")
        if k.startswith("lin/") and (v < 0).any():
            raise ValueError(f"{name}[{k!r}] has negative weights; LPIPS linear heads are "
                             "non-negative")
        out[k] = v
    return unflatten_dict(out)


def _conv(x, kernel, bias, stride: int, pad: int):
    y = lax.conv_general_dilated(x, kernel, (stride, stride), ((pad, pad), (pad, pad)),
                                 dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                 precision=lax.Precision.HIGHEST)
    return y + bias.reshape(1, 1, 1, -1)


def _max_pool(x):
    return lax.reduce_window(x, -jnp.inf, lax.max, (1, 3, 3, 1), (1, 2, 2, 1), "VALID")


def alexnet_features(params, x: jax.Array) -> list[jax.Array]:
    """torchvision AlexNet `features` at relu1 ... relu5 (no input scaling).

    Args:
        params: the `"alexnet"` subtree of the LPIPS parameters.
        x: network input (already shifted and scaled).

    Shape:
        x: (N, H, W, 3) -> [(N, H1, W1, 64), (N, H2, W2, 192), (N, H3, W3, 384),
        (N, H3, W3, 256), (N, H3, W3, 256)]; 224 -> 55, 27, 13; 32 -> 7, 3, 1.
    """
    feats = []
    for name, _, stride, pad, pool in CONVS:
        if pool:
            x = _max_pool(x)
        p = params[name]
        x = jax.nn.relu(_conv(x, p["kernel"], p["bias"], stride, pad))
        feats.append(x)
    return feats


def _unit_normalize(z: jax.Array) -> jax.Array:
    s = jnp.sum(z * z, axis=-1, keepdims=True)
    # sqrt has an infinite derivative at 0 (ReLU features are often all zero at a location);
    # the double `where` keeps the value z / (0 + eps) = 0 and makes the gradient finite.
    pos = s > 0
    norm = jnp.where(pos, jnp.sqrt(jnp.where(pos, s, 1.0)), 0.0)
    return z / (norm + EPS)


def lpips_distance(params, a: jax.Array, b: jax.Array) -> jax.Array:
    """Unvalidated LPIPS (pure, jittable, differentiable); see `lpips`.

    Shape:
        a, b: (B, H, W, 3) float32 in [0, 1] -> (B,) float32.
    """
    shift = jnp.asarray(SHIFT, jnp.float32).reshape(1, 1, 1, 3)
    scale = jnp.asarray(SCALE, jnp.float32).reshape(1, 1, 1, 3)
    n = a.shape[0]
    feats_a, feats_b = (alexnet_features(params["alexnet"], (2.0 * x - 1.0 - shift) / scale)
                        for x in (a, b))
    total = jnp.zeros((n,), jnp.float32)
    for i, (fa, fb) in enumerate(zip(feats_a, feats_b), start=1):
        # Where both feature vectors are identical the difference is exactly 0; computing it
        # would give ~1e-8 instead, because XLA may fuse the two normalisations differently
        # (e.g. with fused multiply-adds). So lpips(a, a) == 0 exactly; the gradient there is
        # 0 either way.
        same = jnp.all(fa == fb, axis=-1, keepdims=True)
        d = jnp.where(same, 0.0, (_unit_normalize(fa) - _unit_normalize(fb)) ** 2)
        w = params["lin"][f"lin{i}"]
        per_pixel = jnp.einsum("bhwc,c->bhw", d, w, precision=lax.Precision.HIGHEST)
        total = total + jnp.mean(per_pixel, axis=(1, 2))
    return total


_lpips_jit = jax.jit(lpips_distance)


def lpips(a, b, *, params=None) -> jax.Array:
    """LPIPS-AlexNet v0.1 perceptual distance per image pair (LST Table 1).

    Inputs are images in [0, 1]; they are mapped to `2x - 1` inside, as LST does before calling
    `lpips.LPIPS(net='alex')`. Jittable (pass `params` explicitly inside your own `jit`) and
    differentiable; `lpips(a, a) == 0`.

    Args:
        a, b: image batches.
        params: LPIPS parameters (`load_lpips_params(...)`); default: the shipped weights.

    Returns:
        Distance per image pair, >= 0.

    Shape:
        a, b: (B, H, W, 3) float in [0, 1], NHWC, same shape, H, W >= 31 -> (B,) float32.

    Raises:
        ValueError: shape mismatch, not 3 channels, smaller than 31x31, wrong rank or dtype,
            values outside [0, 1] or non-finite; malformed `params`.
    """
    a, b = check_pair(a, b, min_size=MIN_SIZE)
    if a.shape[-1] != 3:
        raise ValueError(f"a must have 3 (RGB) channels for LPIPS, got shape {tuple(a.shape)}")
    if params is None:
        params = load_lpips_params()
    else:
        check_params(params, values=False)
    return _lpips_jit(params, a, b)


# ---------------------------------------------------------------------------------------------
# Weights on disk: .npz (np.load with allow_pickle=False) or .safetensors; keys "alexnet/conv1/
# kernel", ..., "lin/lin1"; an optional "__meta__" string entry (JSON provenance) in .npz.


def default_weights_path() -> Path:
    """Path of the shipped `lpips_alexnet_v0.1.npz` inside the installed package."""
    return Path(str(resources.files("lst_jax.metrics") / "weights" / WEIGHTS_FILE))


def read_weights_file(path) -> tuple[dict, dict]:
    """Reads an LPIPS weights file without pickle; returns (flat numpy dict, metadata).

    Raises:
        ValueError: missing file or unknown suffix.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"path: LPIPS weights file {str(path)!r} does not exist")
    meta: dict = {}
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as z:
            flat = {k: z[k] for k in z.files if k != "__meta__"}
            if "__meta__" in z.files:
                meta = json.loads(str(z["__meta__"]))
    elif path.suffix == ".safetensors":
        from safetensors.numpy import load_file

        flat = load_file(str(path))
    else:
        raise ValueError(f"path must be a .npz or .safetensors file, got {str(path)!r}")
    return flat, meta


def save_lpips_params(path, params, meta: dict | None = None) -> Path:
    """Writes LPIPS parameters as .npz (with JSON `meta`) or .safetensors; returns the path.

    The .npz is written to a temporary name and renamed (no half-written file).
    """
    params = check_params(params)
    flat = flatten_dict(params)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".safetensors":
        from safetensors.numpy import save_file

        save_file(flat, str(path), metadata={k: str(v) for k, v in (meta or {}).items()})
        return path
    if path.suffix != ".npz":
        raise ValueError(f"path must end in .npz or .safetensors, got {str(path)!r}")
    tmp = path.with_name(path.name + ".tmp.npz")
    extra = {"__meta__": np.asarray(json.dumps(meta or {}, sort_keys=True))}
    np.savez(tmp, **flat, **extra)
    tmp.replace(path)
    return path


def params_digest(params) -> str:
    """sha256 over the parameter arrays (sorted keys, float32 little-endian bytes)."""
    h = hashlib.sha256()
    for k, v in sorted(flatten_dict(check_params(params)).items()):
        h.update(k.encode())
        h.update(np.ascontiguousarray(v, "<f4").tobytes())
    return h.hexdigest()


@functools.lru_cache(maxsize=4)
def _load_cached(path: str):
    flat, _ = read_weights_file(path)
    params = check_params(unflatten_dict(flat), name=f"weights in {path}")
    return jax.tree.map(jnp.asarray, params)


def load_lpips_params(path=None) -> dict:
    """LPIPS-AlexNet v0.1 parameters as a pytree of float32 jax arrays (cached per path).

    Args:
        path: a `.npz` / `.safetensors` file written by `save_lpips_params` (e.g. converted
            from your own torchvision `alexnet` .pth and `lpips` `alex.pth` with
            `lst_jax.metrics.lpips_params_from_torch_files`); default: the shipped weights
            (torchvision ImageNet AlexNet features + `lpips` 0.1.4 v0.1 heads).

    Returns:
        `{"alexnet": {"conv1".."conv5": {"kernel": HWIO, "bias"}}, "lin": {"lin1".."lin5": (C,)}}`.

    Raises:
        ValueError: missing file, unknown format, or a tree that does not match the layout.
    """
    path = default_weights_path() if path is None else Path(path)
    return _load_cached(str(Path(path).resolve()))


__all__ = ["lpips", "lpips_distance", "load_lpips_params", "save_lpips_params",
           "alexnet_features", "check_params", "param_shapes", "params_digest",
           "default_weights_path", "read_weights_file"]
