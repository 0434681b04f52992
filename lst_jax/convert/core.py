"""PyTorch state dict <-> Flax variables: explicit rename and transpose rules.

A PyTorch key is `<module path>.<leaf>`. A family's `Rules` renames module paths with
templates (`"layer{i}.{j}.downsample.0"` <-> `"layer{i}_{j}/downsample_conv"`, where `{i}`,
`{j}` stand for integers), and one leaf table covers every family:

| PyTorch leaf | tensor rank | Flax collection / name | transform |
|---|---|---|---|
| `weight` | 4 (conv, OIHW) | `params` / `kernel` | transpose (2, 3, 1, 0) -> HWIO |
| `weight` | 2 (linear, out x in) | `params` / `kernel` | transpose -> in x out |
| `weight` | 1 (BatchNorm / LayerNorm) | `params` / `scale` | - |
| `bias` | any | `params` / `bias` | - |
| `running_mean`, `running_var` | 1 | `batch_stats` / `mean`, `var` | - |
| `num_batches_tracked` | 0 | dropped | - |

plus a family's directly named parameters (`cls_token`, `pos_embed`) and keys it ignores on
purpose (e.g. RobustBench's unused `sub_block1`, GoogLeNet's training-only auxiliary heads).
A rename may own prefixed leaves (`Rename(..., leaf_prefix="in_proj_")`: torch's
`nn.MultiheadAttention` keeps its fused input projection as `in_proj_weight`/`in_proj_bias`
on the attention module itself). The result is checked against the module's
own shape tree from `jax.eval_shape`: every missing, unexpected (no rule, or a rule leading
to a parameter the model lacks) and mis-shaped key is collected and reported in one
`ConversionError`. The rules run both ways (`export_state_dict`), so a conversion can be
checked by a round trip.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from lst_jax.utils.trees import flatten_dict, unflatten_dict


class ConversionError(ValueError):
    """A state dict that does not fit the model; the message lists every problem."""


_PLACEHOLDER = re.compile(r"\{([a-z])\}")


def _pattern(template: str) -> re.Pattern:
    parts = _PLACEHOLDER.split(template)
    regex = "".join(re.escape(p) if n % 2 == 0 else rf"(?P<{p}>\d+)"
                    for n, p in enumerate(parts))
    return re.compile(f"^{regex}$")


@dataclasses.dataclass(frozen=True)
class Rename:
    """One module-path rule: PyTorch template <-> Flax template (`{i}`: an integer).

    `leaf_prefix`: the rule applies only to PyTorch leaves `<prefix><leaf>` (e.g.
    `in_proj_weight`), which map to the ordinary leaf (`weight`) of the Flax module.
    """

    torch: str
    flax: str
    leaf_prefix: str = ""

    def to_flax(self, module: str) -> str | None:
        m = _pattern(self.torch).match(module)
        return self.flax.format(**m.groupdict()) if m else None

    def to_torch(self, module: str) -> str | None:
        m = _pattern(self.flax).match(module)
        return self.torch.format(**m.groupdict()) if m else None


@dataclasses.dataclass(frozen=True)
class Rules:
    """The conversion rules of one architecture family.

    Attributes:
        family: a name for messages ("resnet", "wide_resnet", "vit").
        renames: module-path rules, tried in order.
        direct: PyTorch key -> Flax parameter name for parameters owned by no submodule.
        ignore: regexes of PyTorch keys dropped on purpose (reported, never an error).
        ignore_note: why they are dropped (added to the conversion report's notes when a
            file holds such keys).
    """

    family: str
    renames: tuple[Rename, ...]
    direct: tuple[tuple[str, str], ...] = ()
    ignore: tuple[str, ...] = ()
    ignore_note: str = ""

    def ignored(self, key: str) -> bool:
        return key.endswith("num_batches_tracked") or any(re.search(p, key) for p in self.ignore)

    def module_to_flax(self, module: str, leaf: str = "") -> tuple[str, str] | None:
        """(Flax module path, Flax-side leaf) of a PyTorch module and leaf, or None."""
        for r in self.renames:
            if leaf.startswith(r.leaf_prefix):
                out = r.to_flax(module)
                if out is not None:
                    return out, leaf[len(r.leaf_prefix):]
        return None

    def module_to_torch(self, module: str, leaf: str = "") -> tuple[str, str] | None:
        """(PyTorch module path, PyTorch leaf) of a Flax module path and leaf, or None."""
        for r in self.renames:
            out = r.to_torch(module)
            if out is not None:
                return out, r.leaf_prefix + leaf
        return None


# leaf name -> (collection, flax name, permutation or None), by tensor rank for `weight`
_CONV, _LINEAR = (2, 3, 1, 0), (1, 0)


def _leaf_to_flax(leaf: str, ndim: int):
    if leaf == "weight":
        return {4: ("params", "kernel", _CONV), 2: ("params", "kernel", _LINEAR),
                1: ("params", "scale", None)}.get(ndim)
    return {"bias": ("params", "bias", None),
            "running_mean": ("batch_stats", "mean", None),
            "running_var": ("batch_stats", "var", None)}.get(leaf)


def _leaf_to_torch(collection: str, name: str, ndim: int):
    if collection == "params":
        if name == "kernel":
            return {4: ("weight", _CONV), 2: ("weight", _LINEAR)}.get(ndim)
        return {"scale": ("weight", None), "bias": ("bias", None)}.get(name)
    if collection == "batch_stats":
        return {"mean": ("running_mean", None), "var": ("running_var", None)}.get(name)
    return None


def _inverse(perm):
    return tuple(int(i) for i in np.argsort(perm))


def torch_key_to_flax(rules: Rules, key: str, shape: tuple):
    """Maps one PyTorch key to `(flax path "col/a/b/leaf", permutation or None)`, or None."""
    direct = dict(rules.direct)
    if key in direct:
        return f"params/{direct[key]}", None
    module, _, leaf = key.rpartition(".")
    mapped = rules.module_to_flax(module, leaf) if module else None
    if mapped is None:
        return None
    fmod, leaf = mapped
    leaf_rule = _leaf_to_flax(leaf, len(shape))
    if leaf_rule is None:
        return None
    col, name, perm = leaf_rule
    return f"{col}/{fmod}/{name}", perm


def flax_path_to_torch(rules: Rules, path: str, shape: tuple):
    """Maps a Flax path "col/a/b/leaf" to `(PyTorch key, permutation or None)`, or None."""
    col, *mods, name = path.split("/")
    inv_direct = {v: k for k, v in rules.direct}
    if col == "params" and not mods and name in inv_direct:
        return inv_direct[name], None
    leaf_rule = _leaf_to_torch(col, name, len(shape))
    if leaf_rule is None:
        return None
    leaf, perm = leaf_rule
    mapped = rules.module_to_torch("/".join(mods), leaf)
    if mapped is None:
        return None
    tmod, leaf = mapped
    return f"{tmod}.{leaf}", perm


def abstract_variables(module, image_shape) -> dict:
    """The module's variable tree as `jax.ShapeDtypeStruct`s (no computation)."""
    x = jax.ShapeDtypeStruct((1,) + tuple(image_shape), jnp.float32)
    return jax.eval_shape(lambda x: module.init(jax.random.key(0), x, train=False), x)


def _shape(shape, perm):
    return tuple(shape[i] for i in perm) if perm else tuple(shape)


@dataclasses.dataclass
class Converted:
    """Result of `convert_state_dict`: Flax variables and what was done."""

    variables: dict
    report: dict


def convert_state_dict(state_dict: Mapping[str, np.ndarray], module, image_shape,
                       rules: Rules | None = None, layout: str = "") -> Converted:
    """Converts a PyTorch state dict (numpy arrays) to the Flax variables of `module`.

    Args:
        state_dict: PyTorch key -> array (see `lst_jax.convert.read_state_dict`).
        module: the Flax module (e.g. `ResNet50()`); its `jax.eval_shape` tree is the oracle.
        image_shape: (H, W, C) the module is initialised with (sets e.g. the ViT position
            embedding length).
        rules: conversion rules; default `rules_for(module, layout)`.
        layout: the file's layout when a family reads several ("" = the family's default;
            "torchvision" for torchvision's `vit_b_16` keys in a `VisionTransformer`).

    Returns:
        `Converted(variables={"params": ..., ["batch_stats": ...]}, report)`; arrays are
        float32 numpy arrays.

    Raises:
        ConversionError: listing every unmapped, missing, unexpected and mis-shaped key.
    """
    from lst_jax.convert.rules import rules_for

    rules = rules or rules_for(module, layout)
    abstract = abstract_variables(module, image_shape)
    want = {p: tuple(v.shape) for p, v in flatten_dict(abstract).items()}
    got: dict[str, np.ndarray] = {}
    origin: dict[str, tuple[str, tuple, tuple]] = {}   # flax path -> (torch key, shape, perm)
    dropped, no_rule, duplicates = [], [], []
    for key, value in state_dict.items():
        arr = np.asarray(value)
        if rules.ignored(key):
            dropped.append(key)
            continue
        mapped = torch_key_to_flax(rules, key, arr.shape)
        if mapped is None:
            no_rule.append(f"{key} {tuple(arr.shape)}")
            continue
        path, perm = mapped
        if path in got:
            duplicates.append(f"{key} and {origin[path][0]} -> {path}")
            continue
        got[path] = np.transpose(arr, perm) if perm else arr
        origin[path] = (key, tuple(arr.shape), perm)

    missing, unexpected, misshaped = [], [], []
    for path, shape in want.items():
        if path not in got:
            back = flax_path_to_torch(rules, path, shape)
            hint = (f"PyTorch key {back[0]} {_shape(shape, _inverse(back[1]) if back[1] else None)}"
                    if back else "no PyTorch name")
            missing.append(f"{hint} (Flax {path})")
        elif tuple(got[path].shape) != shape:
            key, tshape, perm = origin[path]
            expect = _shape(shape, _inverse(perm) if perm else None)
            misshaped.append(f"{key}: file has {tshape}, model expects {expect} (Flax {path})")
    for path in got:
        if path not in want:
            unexpected.append(f"{origin[path][0]} {origin[path][1]} (would be Flax {path})")

    if missing or unexpected or misshaped or no_rule or duplicates:
        n = len(missing) + len(unexpected) + len(misshaped) + len(no_rule) + len(duplicates)
        lines = [f"the state dict does not fit {type(module).__name__} ({rules.family} rules, "
                 f"{_describe(module)}): {n} problem(s)"]
        for title, items in (("missing from the file", missing),
                             ("mis-shaped", misshaped),
                             ("unexpected (no rule for this key)", no_rule),
                             ("unexpected (the model has no such parameter)", unexpected),
                             ("duplicates", duplicates)):
            if items:
                lines.append(f"  {title} ({len(items)}):")
                lines.extend(f"    {item}" for item in items)
        raise ConversionError("\n".join(lines))

    variables = unflatten_dict({p: np.ascontiguousarray(got[p], dtype=np.float32) for p in want})
    ignored_on_purpose = [k for k in dropped if not k.endswith("num_batches_tracked")]
    report = {"rules": rules.family, "tensors_in_file": len(state_dict),
              "converted": len(got), "dropped": sorted(dropped),
              "notes": [f"dropped {rules.ignore_note}"]
              if ignored_on_purpose and rules.ignore_note else []}
    return Converted(variables, report)


def export_state_dict(variables, module, rules: Rules | None = None,
                      layout: str = "") -> dict[str, np.ndarray]:
    """Flax variables -> PyTorch state dict (numpy arrays, PyTorch layouts and key names).

    The inverse of `convert_state_dict` (same `rules` / `layout`); BatchNorm layers get
    `num_batches_tracked = 0`. Keys dropped on conversion (e.g. GoogLeNet's auxiliary
    heads) are not produced.
    """
    from lst_jax.convert.rules import rules_for

    rules = rules or rules_for(module, layout)
    out: dict[str, np.ndarray] = {}
    bn_modules = []
    for path, value in flatten_dict(variables).items():
        arr = np.asarray(value)
        mapped = flax_path_to_torch(rules, path, arr.shape)
        if mapped is None:
            raise ConversionError(f"no PyTorch name for Flax parameter {path} "
                                  f"({rules.family} rules)")
        key, perm = mapped
        out[key] = np.ascontiguousarray(np.transpose(arr, _inverse(perm)) if perm else arr)
        if key.endswith(".running_mean"):
            bn_modules.append(key[: -len(".running_mean")])
    for m in bn_modules:
        out[f"{m}.num_batches_tracked"] = np.zeros((), np.int64)
    return out


def _describe(module) -> str:
    fields = [f.name for f in dataclasses.fields(module)
              if f.name not in ("parent", "name") and not f.name.startswith("_")]
    return ", ".join(f"{f}={getattr(module, f)!r}" for f in fields)
