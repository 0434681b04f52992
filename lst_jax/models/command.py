"""`lst-jax models` and `lst-jax migrate`: the registry's checkpoints, listed and migrated.

    lst-jax models [--checkpoints DIR] [--markdown]
    lst-jax migrate NAME [--checkpoint DIR]
"""

from __future__ import annotations


def _accuracy_table(rows_meta) -> str:
    from lst_jax.jobs.rundir import markdown_table

    radii = sorted({k for _, meta in rows_meta for k in (meta.get("pgd_ladder") or {})},
                   key=lambda k: float(k.split("/")[0]))
    rows = []
    for name, meta in rows_meta:
        attack = meta.get("train_attack") or {}
        training = (f"PGD-{attack['steps']} AT, eps {round(attack['eps'] * 255)}/255"
                    if attack else meta["training"])
        ladder = meta.get("pgd_ladder") or {}
        rows.append([f"`{name}`", meta["arch"], f"{meta['param_count']:,}", training,
                     f"{100 * meta['test_accuracy']:.1f}%"]
                    + [f"{100 * ladder[r]:.1f}%" if r in ladder else "-" for r in radii]
                    + [f"{meta.get('train_seconds', 0):.0f} s"])
    return markdown_table(["model", "architecture", "params", "training", "clean test acc"]
                          + [f"PGD-20 {r}" for r in radii] + ["train time"], rows)


def cmd_models(args) -> int:
    from lst_jax.models.registry import REGISTRY, checkpoint_metadata, checkpoint_path

    if args.markdown:
        metas = [(n, checkpoint_metadata(n, args.checkpoints)) for n in sorted(REGISTRY)]
        metas = [(n, m) for n, m in metas if m and "test_accuracy" in m]
        # by architecture, then by the training radius (the robustness ladder in order)
        metas.sort(key=lambda nm: (nm[1]["arch"], (nm[1].get("train_attack") or {}).get("eps", 0)))
        print(_accuracy_table(metas), end="")
        return 0
    rows = []
    for name, spec in sorted(REGISTRY.items()):
        meta = checkpoint_metadata(name, args.checkpoints)
        acc = meta.get("test_accuracy") if meta else None
        rows.append((name, spec.arch, spec.dataset, "x".join(map(str, spec.input_size)),
                     "yes" if meta else "no", f"{acc:.3f}" if acc is not None else "-",
                     str(checkpoint_path(name, args.checkpoints))))
    widths = [max(len(r[i]) for r in rows + [("name", "arch", "dataset", "input",
                                               "available", "test acc", "checkpoint")])
              for i in range(7)]
    header = ("name", "arch", "dataset", "input", "available", "test acc", "checkpoint")
    for r in [header] + rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    _print_converted(args.checkpoints)
    if any(r[4] == "no" for r in rows):
        print("\nmissing checkpoints: `lst-jax convert <name> <PyTorch weights file>` "
              "(docs/models.md, 'Model zoo and converters'); checkpoints kept elsewhere: "
              "set LST_JAX_CHECKPOINTS to their root, or pass --checkpoints here and "
              "--checkpoint to the other commands")
    return 0


def _print_converted(root) -> None:
    """The checkpoints under the root that are not registry models (`convert --arch`)."""
    from pathlib import Path

    from lst_jax.models.reference import resolve_model
    from lst_jax.models.registry import REGISTRY, checkpoint_root

    root = Path(root) if root else checkpoint_root()
    dirs = sorted(p for p in root.iterdir() if p.name not in REGISTRY
                  and (p / "metadata.json").is_file()) if root.is_dir() else []
    if not dirs:
        return
    print(f"\ncheckpoint directories under {root} (--model NAME or --model DIR):")
    for p in dirs:
        try:
            spec = resolve_model(str(p)).spec
            print(f"  {p.name}  {spec.arch}  {spec.num_classes} classes "
                  f"({spec.label_set or '-'})  {'x'.join(map(str, spec.input_size))}")
        except ValueError as e:
            print(f"  {p.name}  unusable: {e}")


def cmd_migrate(args) -> int:
    from lst_jax.models.migrate import migrate_checkpoint
    from lst_jax.models.registry import checkpoint_path, get_spec

    spec = get_spec(args.name)
    path = checkpoint_path(args.name, args.checkpoint)
    meta = migrate_checkpoint(path, spec.arch)
    print(f"migrated {path} ({meta['migrated']['from']}) -> the current {spec.arch} layout; "
          f"digest {meta['migrated']['previous_digest'][:12]} -> {meta['digest'][:12]}")
    return 0


def add_parser(sub) -> None:
    """Adds `models` to the `lst-jax` subparsers."""
    p = sub.add_parser("models", help="list the model registry and checkpoint availability")
    p.add_argument("--checkpoints", help="checkpoint root (default checkpoints/)")
    p.add_argument("--markdown", action="store_true",
                   help="print the accuracy table of the available trained checkpoints")
    p.set_defaults(func=cmd_models)


def add_migrate_parser(sub) -> None:
    """Adds `migrate` to the `lst-jax` subparsers."""
    p = sub.add_parser("migrate", help="rewrite a checkpoint of an earlier parameter layout "
                       "(the pre-issue-13 digits ViT) into the current one",
                       description="Rewrites, in place and atomically, a checkpoint saved by "
                       "an earlier layout of a registry architecture (see "
                       "lst_jax/models/migrate.py); same numbers, new digest.")
    p.add_argument("name", help="registry name, e.g. digits_vit-normal")
    p.add_argument("--checkpoint", help="checkpoint directory, or a root holding <name>/ "
                   "(default checkpoints/)")
    p.set_defaults(func=cmd_migrate)
