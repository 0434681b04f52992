"""Trains the shipped digits models (normal and L-inf PGD adversarial training).

    python experiments/train_digits.py --name digits_resnet-normal
    python experiments/train_digits.py --name digits_resnet-linf
    python experiments/train_digits.py --name digits_vit-normal
    python experiments/train_digits.py --name digits_vit-linf
    python experiments/train_digits.py --name digits_resnet-linf8     # the robustness ladder:
    python experiments/train_digits.py --name digits_resnet-linf4     # -linf<k> trains at
    python experiments/train_digits.py --name digits_resnet-linf2     # eps k/255 (-linf: 16/255)
    python experiments/train_digits.py --reevaluate checkpoints/digits_resnet-normal

`--reevaluate DIR` re-measures a trained checkpoint (clean accuracy and PGD-20 at every ladder
radius) and rewrites its metadata.json without touching the parameters.

Deterministic given --seed on the same machine/software (XLA:CPU). Writes an orbax
checkpoint with metadata.json under checkpoints/<name>.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import shlex
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lst_jax.attacks import PGDAttackConfig, pgd_linf_unchecked
from lst_jax.data.digits import load_digits32
from lst_jax.models.checkpoint import load_checkpoint, save_checkpoint
from lst_jax.models.registry import checkpoint_root, get_spec
from lst_jax.robustness import accuracy, pgd_accuracy
from lst_jax.utils.progress import Progress

# Per-architecture training recipes (chosen for >= 95% clean test accuracy on 2 CPU cores).
# `at_warmup` is the fraction of training over which the adversarial-training eps ramps up
# linearly from 0 (ViTs trained from scratch do not learn at all with the full eps at once).
RECIPES = {
    "digits_resnet": dict(epochs=30, lr=3e-3, weight_decay=5e-4, batch=128, at_warmup=0.0),
    "digits_vit": dict(epochs=300, lr=1e-3, weight_decay=5e-2, batch=128, at_warmup=0.3),
}
AT = dict(eps=16 / 255, step_size=4 / 255, steps=5)       # training attack (-linf)
EVAL_PGD = dict(eps=16 / 255, step_size=2 / 255, steps=20)  # robust-accuracy attack
# PGD-20 radii (in 1/255) at which every checkpoint's robust accuracy is recorded
# (metadata "pgd_ladder"); step eps/8 as EVAL_PGD.
LADDER_RADII = (2, 4, 8, 16)


def train_attack(name: str) -> dict | None:
    """The training attack of a registry name: `-normal` none, `-linf` PGD-5 at 16/255,
    `-linf<k>` PGD-5 at k/255 (step eps/4 throughout, as the shipped `-linf` models)."""
    kind = name.rsplit("-", 1)[-1]
    if kind == "normal":
        return None
    m = re.fullmatch(r"linf(\d*)", kind)
    if not m:
        raise ValueError(f"cannot tell the training of {name!r}: the suffix must be -normal, "
                         "-linf or -linf<k> (eps k/255)")
    k = int(m.group(1)) if m.group(1) else 16
    return dict(eps=k / 255, step_size=k / 4 / 255, steps=AT["steps"])


def ladder_robust_accuracy(model_fn, variables, images, labels, seed: int) -> dict:
    """PGD-20 robust accuracy at every radius of LADDER_RADII, keyed "k/255"."""
    out = {}
    for k in LADDER_RADII:
        pgd = dict(eps=k / 255, step_size=k / 8 / 255, steps=EVAL_PGD["steps"])
        out[f"{k}/255"] = evaluate(model_fn, variables, images, labels,
                                   jax.random.key(seed + 1), pgd=pgd)[1]
    return out


def augment(key, x, max_shift=4):
    """Random translation by up to `max_shift` pixels (zero padding), per image."""
    b, h, w, _ = x.shape
    pad = jnp.pad(x, ((0, 0), (max_shift, max_shift), (max_shift, max_shift), (0, 0)))
    shifts = jax.random.randint(key, (b, 2), 0, 2 * max_shift + 1)
    crop = lambda img, s: jax.lax.dynamic_slice(img, (s[0], s[1], 0), (h, w, img.shape[-1]))
    return jax.vmap(crop)(pad, shifts)


def make_train_step(model_fn, tx, attack: dict | None):
    module = model_fn.module

    def loss_fn(params, batch_stats, x, y):
        variables = {"params": params, **({"batch_stats": batch_stats} if batch_stats else {})}
        mutable = ["batch_stats"] if batch_stats else False
        out = module.apply(variables, model_fn.normalization(x), train=True, mutable=mutable)
        (logits, _), updates = out if mutable else (out, {})
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
        return loss, (updates.get("batch_stats", batch_stats), logits)

    @jax.jit
    def step(state, x, y, key, eps_scale):
        params, batch_stats, opt_state = state
        k_aug, k_adv = jax.random.split(key)
        x = augment(k_aug, x)
        if attack is not None:
            variables = {"params": params, **({"batch_stats": batch_stats} if batch_stats else {})}
            pgd = PGDAttackConfig(eps=attack["eps"] * eps_scale,
                                  step_size=attack["step_size"] * eps_scale,
                                  steps=attack["steps"])      # traced radii: one program
            x = pgd_linf_unchecked(model_fn, variables, x, y, key=k_adv, config=pgd)
        (loss, (batch_stats, logits)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            params, batch_stats, x, y)
        updates, opt_state = tx.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        acc = jnp.mean(jnp.argmax(logits, -1) == y)
        return (params, batch_stats, opt_state), loss, acc

    return step


def evaluate(model_fn, variables, images, labels, key=None, pgd=None):
    """Clean accuracy, and PGD robust accuracy (attack `pgd`, default EVAL_PGD) when `key`
    is given (`lst_jax.robustness`: random start per example from fold_in(key, index))."""
    n = len(images)
    exact = lambda acc: round(float(acc) * n) / n     # count / n in float64 (float32 result)
    clean = exact(accuracy(model_fn, variables, images, labels))
    if key is None:
        return clean, None
    return clean, exact(pgd_accuracy(model_fn, variables, images, labels, key=key,
                                     config=PGDAttackConfig(**(pgd or EVAL_PGD))))


def train(name: str, seed: int = 0, epochs: int | None = None, out=None, quiet=False,
          lr: float | None = None, arch_kwargs: dict | None = None, init_from=None):
    spec = get_spec(name)
    if arch_kwargs:
        spec = dataclasses.replace(spec, arch_kwargs=tuple(sorted(
            {**dict(spec.arch_kwargs), **arch_kwargs}.items())))
    recipe = dict(RECIPES[spec.arch])
    if epochs is not None:
        recipe["epochs"] = epochs
    if lr is not None:
        recipe["lr"] = lr
    attack = train_attack(name)
    model_fn = spec.build()
    x_train, y_train = load_digits32("train")
    x_test, y_test = load_digits32("test")
    key = jax.random.key(seed)
    key, k_init = jax.random.split(key)
    variables = model_fn.init(k_init, spec.input_size)
    if init_from:  # adversarial fine-tuning from a trained checkpoint
        variables, _ = load_checkpoint(init_from, jax.eval_shape(lambda: variables))
    params, batch_stats = variables["params"], variables.get("batch_stats", {})
    steps_per_epoch = int(np.ceil(len(x_train) / recipe["batch"]))
    total = steps_per_epoch * recipe["epochs"]
    schedule = optax.warmup_cosine_decay_schedule(0.0, recipe["lr"], steps_per_epoch, total)
    tx = optax.adamw(schedule, weight_decay=recipe["weight_decay"])
    state = (params, batch_stats, tx.init(params))
    step = make_train_step(model_fn, tx, attack)
    rng = np.random.RandomState(seed)
    t0 = time.time()
    with Progress(total, desc=f"train {name}", unit="step", enabled=not quiet) as bar:
        for epoch in range(recipe["epochs"]):
            order = rng.permutation(len(x_train))
            for i in range(steps_per_epoch):
                idx = order[i * recipe["batch"]:(i + 1) * recipe["batch"]]
                key, k = jax.random.split(key)
                done = epoch * steps_per_epoch + i
                warm = recipe["at_warmup"] * total
                eps_scale = jnp.float32(min(1.0, (done + 1) / warm) if warm > 0 else 1.0)
                state, loss, acc = step(state, jnp.asarray(x_train[idx]),
                                        jnp.asarray(y_train[idx]), k, eps_scale)
                bar.update(1)
    train_time = time.time() - t0
    params, batch_stats, _ = state
    variables = {"params": params, **({"batch_stats": batch_stats} if batch_stats else {})}
    clean, robust = evaluate(model_fn, variables, x_test, y_test, jax.random.key(seed + 1))
    ladder = ladder_robust_accuracy(model_fn, variables, x_test, y_test, seed)
    meta = {
        "name": name,
        "arch": spec.arch,
        "arch_kwargs": dict(spec.arch_kwargs),
        "normalization": spec.normalization.to_dict(),
        "input_size": list(spec.input_size),
        "num_classes": spec.num_classes,
        "dataset": "sklearn digits 8x8 -> 32x32x3 (lst_jax.data.digits), 1500 train / 297 test",
        "training": "pgd_linf_adversarial" if attack else "standard",
        "recipe": recipe,
        "init_from": str(init_from) if init_from else None,
        "train_attack": attack,
        "test_accuracy": clean,
        "pgd_robust_accuracy": robust,
        "pgd_eval": EVAL_PGD,
        "pgd_ladder": ladder,
        "seed": seed,
        "train_seconds": round(train_time, 1),
        "command": "python experiments/train_digits.py " + " ".join(
            shlex.quote(a) for a in sys.argv[1:]),
        "versions": {"jax": jax.__version__, "optax": optax.__version__},
    }
    path = save_checkpoint((out or checkpoint_root()) / name if out is None or not str(
        out).endswith(name) else out, variables, meta)
    return path, meta


def reevaluate(path) -> dict:
    """Re-measures a trained checkpoint (clean accuracy, EVAL_PGD and the PGD ladder) and
    rewrites its metadata.json; the parameters are untouched (their digest is checked)."""
    from pathlib import Path

    from lst_jax.models.checkpoint import read_metadata, tree_digest

    path = Path(path)
    meta = read_metadata(path)
    spec = get_spec(meta["name"])
    model_fn = spec.build()
    abstract = jax.eval_shape(lambda: model_fn.init(jax.random.key(0), spec.input_size))
    variables, _ = load_checkpoint(path, abstract)
    if tree_digest(variables) != meta["digest"]:
        raise ValueError(f"{path}: the parameters do not match the digest in metadata.json")
    x_test, y_test = load_digits32("test")
    seed = int(meta.get("seed", 0))
    clean, robust = evaluate(model_fn, variables, x_test, y_test, jax.random.key(seed + 1))
    meta.update(test_accuracy=clean, pgd_robust_accuracy=robust, pgd_eval=EVAL_PGD,
                pgd_ladder=ladder_robust_accuracy(model_fn, variables, x_test, y_test, seed))
    tmp = path / ".metadata.json.tmp"
    tmp.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    tmp.replace(path / "metadata.json")
    return meta


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--name", help="registry name, e.g. digits_resnet-normal")
    p.add_argument("--reevaluate", metavar="DIR", help="re-measure a trained checkpoint and "
                   "rewrite its metadata (no training)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=None, help="override the recipe's epochs")
    p.add_argument("--lr", type=float, default=None, help="override the recipe's peak lr")
    p.add_argument("--arch-kwargs", type=json.loads, default=None,
                   help='JSON overrides of the architecture, e.g. \'{"patch": 4}\'')
    p.add_argument("--init-from", default=None,
                   help="start from this checkpoint directory (adversarial fine-tuning)")
    p.add_argument("--out", default=None, help="checkpoint root (default: checkpoints/)")
    args = p.parse_args(argv)
    from pathlib import Path

    if args.reevaluate:
        meta = reevaluate(args.reevaluate)
        print(json.dumps({k: meta[k] for k in ("name", "test_accuracy", "pgd_robust_accuracy",
                                               "pgd_ladder")}))
        return
    if not args.name:
        p.error("--name is required (or --reevaluate DIR)")
    path, meta = train(args.name, args.seed, args.epochs, Path(args.out) if args.out else None,
                       lr=args.lr, arch_kwargs=args.arch_kwargs, init_from=args.init_from)
    print(json.dumps({k: meta[k] for k in ("name", "test_accuracy", "pgd_robust_accuracy",
                                           "train_seconds")}))
    print(f"saved {path}")


if __name__ == "__main__":
    main()
