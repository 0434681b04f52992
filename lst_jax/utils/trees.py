"""Nested dicts <-> flat dicts keyed by "/"-joined paths (parameter trees, weight files)."""

from __future__ import annotations

from typing import Any, Mapping


def flatten_dict(tree: Mapping, prefix: str = "") -> dict[str, Any]:
    """`{"a": {"b": v}}` -> `{"a/b": v}`. Recurses into mappings only, so tuples, arrays and
    shape structs are leaves."""
    out = {}
    for k, v in tree.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten_dict(v, key + "/"))
        else:
            out[key] = v
    return out


def unflatten_dict(flat: Mapping[str, Any]) -> dict:
    """Inverse of `flatten_dict`: `{"a/b": v}` -> `{"a": {"b": v}}`."""
    tree: dict = {}
    for key, v in flat.items():
        *parents, leaf = key.split("/")
        node = tree
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = v
    return tree


def param_count(variables, collection: str = "params") -> int:
    """Number of entries in one collection of a Flax variables dict (default the trainable
    `params`; a tree without collections counts whole)."""
    import jax
    import numpy as np

    tree = variables.get(collection, variables) if isinstance(variables, Mapping) else variables
    return int(sum(np.size(v) for v in jax.tree.leaves(tree)))
