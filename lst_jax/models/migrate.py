"""Parameter migrations: checkpoints of an earlier module layout -> the current one.

One migration exists. Until issue 13 the digits ViT was its own module (`digits.DigitsViT`:
blocks `block1` ... built on `flax.linen.MultiHeadDotProductAttention`, with separate
`query`/`key`/`value` projections of kernel shape (dim, heads, head_dim) and an `out`
projection of shape (heads, head_dim, dim), and the MLP layers `fc1`/`fc2` directly in the
block). It is now `vit.DigitsViT`, a configuration of the zoo's timm-layout
`VisionTransformer`: blocks `blocks_0` ..., a fused `attn/qkv` projection whose output columns
are [q | k | v], each ordered (head, head_dim) like timm's `reshape(B, N, 3, heads, hd)`,
`attn/proj`, and `mlp/fc1`, `mlp/fc2`. The migration is a rename and reshape: the same numbers,
so the logits agree to float32 round-off (tests/models/test_digits_vit_migration.py: <= 1e-6 against
logits the old module computed from the shipped checkpoints).

    lst-jax migrate digits_vit-normal            # rewrites checkpoints/digits_vit-normal
    migrate_checkpoint("my_runs/digits_vit-normal", "digits_vit")
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np

LEGACY_DIGITS_VIT = ("digits.DigitsViT (flax MultiHeadDotProductAttention blocks `block<i>`, "
                     "until issue 13)")


def is_legacy_digits_vit(params) -> bool:
    """True when `params` (the "params" collection) holds the old `block1` layout."""
    return "block1" in params and "blocks_0" not in params


def migrate_digits_vit(variables: dict) -> dict:
    """Old `digits.DigitsViT` variables -> `vit.DigitsViT` variables (same numbers).

    Shape:
        attn/{query,key,value}/kernel (D, H, D/H) -> attn/qkv/kernel (D, 3D);
        attn/{query,key,value}/bias (H, D/H) -> attn/qkv/bias (3D,);
        attn/out/kernel (H, D/H, D) -> attn/proj/kernel (D, D); everything else unchanged.

    Raises:
        ValueError: `variables` is not in the old layout (already migrated, or another model).
    """
    params = variables.get("params", {})
    if not is_legacy_digits_vit(params):
        raise ValueError("these variables are not in the old digits ViT layout (no `block1`; "
                         f"top-level keys: {sorted(params)})")
    blocks = sorted((k for k in params if k.startswith("block")),
                    key=lambda k: int(k[len("block"):]))
    if blocks != [f"block{i + 1}" for i in range(len(blocks))]:
        raise ValueError(f"unexpected block names in the old digits ViT layout: {blocks}")
    new = {k: v for k, v in params.items() if k not in blocks}
    for i, name in enumerate(blocks):
        old = params[name]
        attn = old["attn"]
        dim = np.shape(attn["query"]["kernel"])[0]
        qkv_kernel = np.concatenate([np.asarray(attn[p]["kernel"]).reshape(dim, dim)
                                     for p in ("query", "key", "value")], axis=1)
        qkv_bias = np.concatenate([np.asarray(attn[p]["bias"]).reshape(dim)
                                   for p in ("query", "key", "value")])
        new[f"blocks_{i}"] = {
            "norm1": old["norm1"],
            "attn": {"qkv": {"kernel": qkv_kernel, "bias": qkv_bias},
                     "proj": {"kernel": np.asarray(attn["out"]["kernel"]).reshape(dim, dim),
                              "bias": np.asarray(attn["out"]["bias"])}},
            "norm2": old["norm2"],
            "mlp": {"fc1": old["fc1"], "fc2": old["fc2"]},
        }
    out = dict(variables)
    out["params"] = new
    return out


class Migration(NamedTuple):
    """detect: is the "params" collection in the old layout; migrate: old variables -> new;
    legacy: what the old layout was (for messages and the metadata)."""

    detect: Callable[[dict], bool]
    migrate: Callable[[dict], dict]
    legacy: str


# architecture -> its migration
MIGRATIONS = {"digits_vit": Migration(is_legacy_digits_vit, migrate_digits_vit,
                                      LEGACY_DIGITS_VIT)}


def needs_migration(arch: str, variables: dict) -> bool:
    """True when a migration of `arch` applies to these variables."""
    entry = MIGRATIONS.get(arch)
    return entry is not None and entry.detect(variables.get("params", {}))


def migrate_checkpoint(path, arch: str) -> dict:
    """Rewrites the checkpoint at `path` (`save_checkpoint` layout) into the current layout of
    `arch`, atomically, and checks the result against the module's parameter tree.

    The metadata is kept; `digest` and `param_count` are recomputed and `migrated` records
    the previous digest, the old layout and the date.

    Returns:
        the new metadata.

    Raises:
        ValueError: no migration for `arch`, the checkpoint is already in the current layout,
        or the migrated tree does not match the module.
    """
    import jax

    from lst_jax.models.checkpoint import (
        check_tree_matches,
        load_checkpoint,
        read_metadata,
        save_checkpoint,
    )
    from lst_jax.models.registry import ARCHITECTURES
    from lst_jax.models.wrapper import Classifier

    if arch not in MIGRATIONS:
        raise ValueError(f"no migration for architecture {arch!r} "
                         f"(migrations exist for: {', '.join(MIGRATIONS)})")
    migration = MIGRATIONS[arch]
    path = Path(path)
    variables, meta = load_checkpoint(path)
    if not migration.detect(variables.get("params", {})):
        raise ValueError(f"checkpoint {path} is already in the current {arch} layout")
    new = migration.migrate(variables)
    size = tuple(meta.get("input_size") or (32, 32, 3))
    module = ARCHITECTURES[arch](**dict(meta.get("arch_kwargs") or {}))
    abstract = jax.eval_shape(lambda: Classifier(module).init(jax.random.key(0), size))
    check_tree_matches(new, abstract, what=f"migrated checkpoint {path}")
    kept = {k: v for k, v in meta.items() if k not in ("digest", "param_count")}
    kept["migrated"] = {"from": migration.legacy, "previous_digest": meta.get("digest"),
                        "date": datetime.date.today().isoformat()}
    save_checkpoint(path, new, kept)
    return read_metadata(path)


__all__ = ["migrate_digits_vit", "is_legacy_digits_vit", "needs_migration",
           "migrate_checkpoint", "Migration", "MIGRATIONS"]
