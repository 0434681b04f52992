"""Clean, adversarial (PGD) and corruption accuracy of a `model_fn`, and the mCE.

All evaluations run through `lst_jax.parallel.sharded_apply`: chunks of one fixed size split
over the device mesh, one compiled program per (model, shapes); randomness is per example
(`fold_in(key, index)`), so the numbers do not depend on the chunking or the device count.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from lst_jax.attacks import pgd_linf
from lst_jax.robustness.corruptions import (CORRUPTIONS, SEVERITIES, check_corruption,
                                            corrupt, corruption_key)
from lst_jax.utils.checks import check_images, check_labels, check_positive_int


@dataclasses.dataclass(frozen=True)
class _Correct:
    """`fn(params, (images, labels)) -> (B,) bool`: the prediction is the label."""

    model_fn: Callable

    def __call__(self, params, batch):
        images, labels = batch
        return jnp.argmax(self.model_fn(params, images), -1) == labels


@dataclasses.dataclass(frozen=True)
class _PGDImages:
    """`fn((params, key_data, eps, step_size), (images, labels, index)) -> adversarial images`
    of L-inf PGD with a random start drawn from `fold_in(key, index)` per example.

    eps and step_size are traced (float32 scalars beside the parameters): a sweep over radii
    runs one compiled program. `steps` is the scan's length, so it is static: each number of
    steps (PGD-10, PGD-20) is its own program."""

    model_fn: Callable
    steps: int

    def attack(self, params_key, batch):
        params, key_data, eps, step_size = params_key
        images, labels, index = batch
        key = jax.random.wrap_key_data(key_data)
        # Random start per example from fold_in(key, index): independent of the chunking.
        noise = jax.vmap(lambda i: jax.random.uniform(jax.random.fold_in(key, i),
                                                      images.shape[1:], images.dtype,
                                                      -eps, eps))(index)
        return pgd_linf(self.model_fn, params, images, labels, None, eps=eps,
                        step_size=step_size, steps=self.steps, start=images + noise)

    def __call__(self, params_key, batch):
        return self.attack(params_key, batch)


@dataclasses.dataclass(frozen=True)
class _PGDCorrect(_PGDImages):
    """`fn((params, key_data), (images, labels, index)) -> (B,) bool`: still correct after
    the PGD of `_PGDImages`."""

    def __call__(self, params_key, batch):
        adv = self.attack(params_key, batch)
        return jnp.argmax(self.model_fn(params_key[0], adv), -1) == batch[1]


def _validated(images, labels, num_classes=None):
    images = np.asarray(check_images("images", images))
    labels = np.asarray(check_labels("labels", labels, batch=images.shape[0],
                                     num_classes=num_classes))
    return images, labels


def accuracy(model_fn, params, images, labels, *, mesh=None, chunk_size: int = 256,
             progress: bool = False) -> float:
    """Top-1 accuracy.

    Shape:
        images: (N, H, W, C) float32 in [0, 1]; labels: (N,) int.
    """
    from lst_jax.parallel import sharded_apply

    images, labels = _validated(images, labels)
    ok = sharded_apply(_Correct(model_fn), params, (images, labels), mesh,
                       chunk_size=chunk_size, progress=progress, desc="accuracy")
    return float(np.mean(ok))


def _pgd_sharded(fn_type, model_fn, params, images, labels, key, eps, step_size, steps,
                 mesh, chunk_size, progress):
    from lst_jax.parallel import sharded_apply

    images, labels = _validated(images, labels)
    if not 0 < float(eps) <= 1:
        raise ValueError(f"eps must be in (0, 1] (pixel units, e.g. 8/255), got {eps!r}")
    steps = check_positive_int("steps", steps)
    step_size = float(eps) / 8 if step_size is None else float(step_size)
    fn = fn_type(model_fn, steps)
    index = np.arange(len(images), dtype=np.uint32)
    traced = (params, jax.random.key_data(key), np.float32(eps), np.float32(step_size))
    return sharded_apply(fn, traced, (images, labels, index), mesh,
                         chunk_size=chunk_size, progress=progress, desc=f"PGD-{steps}")


def pgd_accuracy(model_fn, params, images, labels, key, *, eps: float, step_size: float | None = None,
                 steps: int = 20, mesh=None, chunk_size: int = 128,
                 progress: bool = False) -> float:
    """Robust accuracy under untargeted L-inf PGD (`lst_jax.attacks.pgd_linf`, random start).

    Args:
        eps: L-inf radius in [0, 1] pixel units (e.g. 8/255); step_size: default eps / 8.
        steps: PGD iterations (20: PGD-20).
        key: PRNG key; example i starts from `fold_in(key, i)`.

    Shape:
        images: (N, H, W, C) float32 in [0, 1]; labels: (N,) int.
    """
    ok = _pgd_sharded(_PGDCorrect, model_fn, params, images, labels, key, eps, step_size,
                      steps, mesh, chunk_size, progress)
    return float(np.mean(ok))


def pgd_examples(model_fn, params, images, labels, key, *, eps: float,
                 step_size: float | None = None, steps: int = 20, mesh=None,
                 chunk_size: int = 128, progress: bool = False) -> np.ndarray:
    """The adversarial images of `pgd_accuracy`'s attack (same per-example random starts, so
    `pgd_accuracy` is the accuracy on them).

    Shape:
        images: (N, H, W, C) float32 in [0, 1]; labels: (N,) int -> (N, H, W, C) in [0, 1].
    """
    return _pgd_sharded(_PGDImages, model_fn, params, images, labels, key, eps, step_size,
                        steps, mesh, chunk_size, progress)


def corruption_accuracy(model_fn, params, images, labels, *, seed: int = 0,
                        table: str = "cifar10", corruptions: Sequence[str] = CORRUPTIONS,
                        severities: Sequence[int] = SEVERITIES, mesh=None,
                        chunk_size: int = 256, progress: bool = False) -> np.ndarray:
    """Accuracy on every (corruption, severity) cell of the "-C" benchmark of `images`.

    Cell (c, s) corrupts the whole set with `corruption_key(seed, c, s)` and the severity
    table `table` ("cifar10", "imagenet" or "digits", `lst_jax.robustness.corruptions`): the same arrays
    for every model, so models are compared on identical inputs.

    Returns:
        (len(corruptions), len(severities)) float64 accuracies.

    Shape:
        images: (N, H, W, C) float32 in [0, 1]; labels: (N,) int.
    """
    from lst_jax.parallel import sharded_apply
    from lst_jax.utils.progress import Progress

    images, labels = _validated(images, labels)
    for c in corruptions:
        for s in severities:
            check_corruption(c, s, table)
    acc = np.zeros((len(corruptions), len(severities)))
    with Progress(acc.size, desc="corruptions", unit="cell", enabled=progress) as bar:
        for i, c in enumerate(corruptions):
            for j, s in enumerate(severities):
                x = np.asarray(corrupt(images, c, s, corruption_key(seed, c, s), table=table))
                ok = sharded_apply(_Correct(model_fn), params, (x, labels), mesh,
                                   chunk_size=chunk_size)
                acc[i, j] = float(np.mean(ok))
                bar.update(1)
    return acc


def corruption_errors(errors, baseline_errors, *, skip_undefined: bool = False) -> np.ndarray:
    """ImageNet-C's corruption error per corruption: `sum_s E[c, s] / sum_s E_base[c, s]`
    over the severities (Hendrycks & Dietterich 2019); the mCE is its mean.

    A corruption on which the baseline makes no error has no corruption error: ValueError,
    or NaN with `skip_undefined=True`.

    Shape:
        errors, baseline_errors: (C, S) top-1 errors -> (C,).
    """
    e, b = np.asarray(errors, np.float64), np.asarray(baseline_errors, np.float64)
    if e.shape != b.shape or e.ndim != 2:
        raise ValueError(f"errors and baseline_errors must be equal (C, S) arrays, got "
                         f"{e.shape} and {b.shape}")
    den = b.sum(1)
    if np.any(den <= 0) and not skip_undefined:
        raise ValueError("the baseline model makes no error on some corruption: its "
                         "corruption error is undefined (mCE divides by it)")
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, e.sum(1) / np.where(den > 0, den, 1.0), np.nan)


def mean_corruption_error(errors, baseline_errors, *, skip_undefined: bool = False) -> float:
    """mCE: the mean over corruptions of `corruption_errors` (1.0 for the baseline itself);
    `skip_undefined=True` averages over the corruptions the baseline gets wrong at all.

    Shape:
        errors, baseline_errors: (C, S) -> scalar.
    """
    ce = corruption_errors(errors, baseline_errors, skip_undefined=skip_undefined)
    if np.all(np.isnan(ce)):
        raise ValueError("the baseline model makes no error on any corruption: mCE undefined")
    return float(np.nanmean(ce))


def relative_mean_corruption_error(errors, clean_error: float, baseline_errors,
                                   baseline_clean_error: float) -> float:
    """Relative mCE: `mean_c sum_s (E[c,s] - E_clean) / sum_s (E_base[c,s] - E_base_clean)`,
    the degradation caused by the corruptions relative to the baseline's."""
    e = np.asarray(errors, np.float64) - float(clean_error)
    b = np.asarray(baseline_errors, np.float64) - float(baseline_clean_error)
    return mean_corruption_error(e, b)


__all__ = ["accuracy", "pgd_accuracy", "corruption_accuracy", "corruption_errors",
           "mean_corruption_error", "relative_mean_corruption_error"]
