"""Clean, adversarial (PGD) and corruption accuracy of a `model_fn`, and the mCE.

All evaluations run through `lst_jax.parallel.sharded_apply`: chunks of one fixed size split
over the device mesh, one compiled program per (model, shapes); randomness is per example
(`fold_in(key, index)`), so the numbers do not depend on the chunking or the device count.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from lst_jax.attacks.pgd import PGDAttackConfig, pgd_loop
from lst_jax.robustness.corruptions import CorruptionConfig, corrupt, corruption_key
from lst_jax.utils.checks import check_images, check_key, check_labels


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
        return pgd_loop(self.model_fn, params, images, labels, images + noise, eps, step_size,
                        self.steps)

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


def _mesh(mesh):
    """`mesh=None`: one device (the default device of this process), as everywhere."""
    from lst_jax.parallel import data_mesh

    return data_mesh(jax.local_devices()[:1]) if mesh is None else mesh


def _chunk(mesh, batch_size):
    """`sharded_apply`'s global chunk from a per-device `batch_size` (None: planned)."""
    from lst_jax.parallel.mesh import num_shards

    return None if batch_size is None else batch_size * num_shards(mesh)


def accuracy(model_fn, params, images, labels, *, mesh=None, batch_size: int | None = 256,
             memory_budget=None, progress: bool = False) -> jax.Array:
    """Top-1 accuracy.

    >>> import jax, jax.numpy as jnp
    >>> model_fn = lambda p, x: x.reshape(len(x), -1) @ p
    >>> params = jax.random.normal(jax.random.key(0), (8 * 8 * 3, 4))
    >>> images = jax.random.uniform(jax.random.key(1), (6, 8, 8, 3))
    >>> float(accuracy(model_fn, params, images, jnp.argmax(model_fn(params, images), -1)))
    1.0

    Args:
        mesh: a mesh with a `"data"` axis (`lst_jax.parallel.data_mesh()`) to split the
            images over its devices; None: one device.
        batch_size: images per device per program call (None: planned from
            `memory_budget`, bytes per device).

    Returns:
        () float32 jax.Array.

    Shape:
        images: (N, H, W, C) float32 in [0, 1]; labels: (N,) int.
    """
    from lst_jax.parallel import sharded_apply

    images, labels = _validated(images, labels)
    mesh = _mesh(mesh)
    ok = sharded_apply(_Correct(model_fn), params, (images, labels), mesh,
                       chunk_size=_chunk(mesh, batch_size), memory_budget=memory_budget,
                       progress=progress, desc="accuracy")
    return jnp.asarray(np.mean(ok), jnp.float32)


def _pgd_sharded(fn_type, model_fn, params, images, labels, key, config, mesh, batch_size,
                 memory_budget, progress):
    from lst_jax.parallel import sharded_apply

    check_key(key)
    if not isinstance(config, PGDAttackConfig):
        raise TypeError(f"config must be a PGDAttackConfig, got {type(config).__name__}")
    images, labels = _validated(images, labels)
    fn = fn_type(model_fn, config.steps)
    index = np.arange(len(images), dtype=np.uint32)
    traced = (params, jax.random.key_data(key), np.float32(config.eps),
              np.float32(config.step))
    mesh = _mesh(mesh)
    return sharded_apply(fn, traced, (images, labels, index), mesh,
                         chunk_size=_chunk(mesh, batch_size), memory_budget=memory_budget,
                         progress=progress, desc=f"PGD-{config.steps}")


def pgd_accuracy(model_fn, params, images, labels, *, key,
                 config: PGDAttackConfig = PGDAttackConfig(), mesh=None,
                 batch_size: int | None = 128, memory_budget=None,
                 progress: bool = False) -> jax.Array:
    """Robust accuracy under untargeted L-inf PGD (`lst_jax.attacks.pgd_linf`, random start).

    >>> import jax, jax.numpy as jnp
    >>> from lst_jax.attacks import PGDAttackConfig
    >>> model_fn = lambda p, x: x.reshape(len(x), -1) @ p
    >>> params = jax.random.normal(jax.random.key(0), (8 * 8 * 3, 4))
    >>> images = jax.random.uniform(jax.random.key(1), (6, 8, 8, 3))
    >>> labels = jnp.argmax(model_fn(params, images), -1)
    >>> acc = pgd_accuracy(model_fn, params, images, labels, key=jax.random.key(2),
    ...                    config=PGDAttackConfig(eps=8 / 255, steps=3))
    >>> acc.shape
    ()

    Args:
        key: typed PRNG key; example i starts from `fold_in(key, i)`.
        config: `PGDAttackConfig` (eps in [0, 1] pixel units, steps; step size default
            eps / 8). `config.random_start` is ignored: the start is always random.
        mesh, batch_size, memory_budget: see `accuracy`.

    Returns:
        () float32 jax.Array.

    Shape:
        images: (N, H, W, C) float32 in [0, 1]; labels: (N,) int.
    """
    ok = _pgd_sharded(_PGDCorrect, model_fn, params, images, labels, key, config, mesh,
                      batch_size, memory_budget, progress)
    return jnp.asarray(np.mean(ok), jnp.float32)


def pgd_examples(model_fn, params, images, labels, *, key,
                 config: PGDAttackConfig = PGDAttackConfig(), mesh=None,
                 batch_size: int | None = 128, memory_budget=None,
                 progress: bool = False) -> jax.Array:
    """The adversarial images of `pgd_accuracy`'s attack (same per-example random starts, so
    `pgd_accuracy` is the accuracy on them).

    >>> import jax, jax.numpy as jnp
    >>> from lst_jax.attacks import PGDAttackConfig
    >>> model_fn = lambda p, x: x.reshape(len(x), -1) @ p
    >>> params = jax.random.normal(jax.random.key(0), (8 * 8 * 3, 4))
    >>> images = jax.random.uniform(jax.random.key(1), (6, 8, 8, 3))
    >>> adv = pgd_examples(model_fn, params, images, jnp.zeros(6, jnp.int32),
    ...                    key=jax.random.key(2), config=PGDAttackConfig(steps=2))
    >>> adv.shape
    (6, 8, 8, 3)

    Shape:
        images: (N, H, W, C) float32 in [0, 1]; labels: (N,) int -> (N, H, W, C) in [0, 1].
    """
    return jnp.asarray(_pgd_sharded(_PGDImages, model_fn, params, images, labels, key, config,
                                    mesh, batch_size, memory_budget, progress))


def corruption_accuracy(model_fn, params, images, labels, *, key,
                        config: CorruptionConfig = CorruptionConfig(), mesh=None,
                        batch_size: int | None = 256, memory_budget=None,
                        progress: bool = False) -> jax.Array:
    """Accuracy on every (corruption, severity) cell of the "-C" benchmark of `images`.

    Cell (c, s) corrupts the whole set with `corruption_key(key, c, s)` and the severity
    table `config.table` ("cifar10", "imagenet" or "digits",
    `lst_jax.robustness.corruptions`): the same arrays for every model, so models are
    compared on identical inputs.

    >>> import jax, jax.numpy as jnp
    >>> model_fn = lambda p, x: x.reshape(len(x), -1) @ p
    >>> params = jax.random.normal(jax.random.key(0), (8 * 8 * 3, 4))
    >>> images = jax.random.uniform(jax.random.key(1), (6, 8, 8, 3))
    >>> cfg = CorruptionConfig(corruptions=("contrast", "gaussian_noise"), severities=(1, 5))
    >>> corruption_accuracy(model_fn, params, images, jnp.zeros(6, jnp.int32),
    ...                     key=jax.random.key(0), config=cfg).shape
    (2, 2)

    Args:
        key: typed PRNG key of the benchmark (`corruption_key(key, c, s)` per cell).
        config: `CorruptionConfig` (table, corruptions, severities).
        mesh, batch_size, memory_budget: see `accuracy`.

    Returns:
        (len(corruptions), len(severities)) float32 jax.Array of accuracies.

    Shape:
        images: (N, H, W, C) float32 in [0, 1]; labels: (N,) int.
    """
    from lst_jax.parallel import sharded_apply
    from lst_jax.utils.progress import Progress

    check_key(key)
    if not isinstance(config, CorruptionConfig):
        raise TypeError(f"config must be a CorruptionConfig, got {type(config).__name__}")
    images, labels = _validated(images, labels)
    mesh = _mesh(mesh)
    corruptions, severities = config.corruptions, config.severities
    acc = np.zeros((len(corruptions), len(severities)))
    with Progress(acc.size, desc="corruptions", unit="cell", enabled=progress) as bar:
        for i, c in enumerate(corruptions):
            for j, s in enumerate(severities):
                x = np.asarray(corrupt(images, name=c, severity=s,
                                       key=corruption_key(key=key, name=c, severity=s),
                                       table=config.table))
                ok = sharded_apply(_Correct(model_fn), params, (x, labels), mesh,
                                   chunk_size=_chunk(mesh, batch_size),
                                   memory_budget=memory_budget)
                acc[i, j] = float(np.mean(ok))
                bar.update(1)
    return jnp.asarray(acc, jnp.float32)


def corruption_errors(errors, baseline_errors, *, skip_undefined: bool = False) -> np.ndarray:
    """ImageNet-C's corruption error per corruption: `sum_s E[c, s] / sum_s E_base[c, s]`
    over the severities (Hendrycks & Dietterich 2019); the mCE is its mean.

    A corruption on which the baseline makes no error has no corruption error: ValueError,
    or NaN with `skip_undefined=True`.

    >>> corruption_errors([[0.2, 0.4]], [[0.4, 0.8]])
    array([0.5])

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

    >>> mean_corruption_error([[0.2], [0.3]], [[0.4], [0.3]])
    0.75

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
    the degradation caused by the corruptions relative to the baseline's.

    >>> relative_mean_corruption_error([[0.25]], 0.125, [[0.5]], 0.25)
    0.5
    """
    e = np.asarray(errors, np.float64) - float(clean_error)
    b = np.asarray(baseline_errors, np.float64) - float(baseline_clean_error)
    return mean_corruption_error(e, b)


__all__ = ["accuracy", "pgd_accuracy", "pgd_examples", "corruption_accuracy", "corruption_errors",
           "mean_corruption_error", "relative_mean_corruption_error"]
