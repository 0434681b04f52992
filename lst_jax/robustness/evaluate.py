"""One model's robustness measurements in one call: clean, PGD-20 at several radii, and every
(corruption, severity) cell of a "-C" benchmark; the unit the profile caches."""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from lst_jax.attacks.pgd import PGDAttackConfig
from lst_jax.robustness.accuracy import accuracy, corruption_accuracy, pgd_accuracy
from lst_jax.robustness.corruptions import (
    CORRUPTIONS,
    SEVERITIES,
    TABLES,
    CorruptionConfig,
    check_corruption,
)
from lst_jax.utils.checks import check_key, check_positive_int

# PGD starts of `robustness_measurements` draw from fold_in(key, PGD_STREAM); the corruption
# cells from fold_in(fold_in(key, corruption index), severity) (`corruption_key`).
PGD_STREAM = 2**31 - 1


@dataclasses.dataclass(frozen=True)
class RobustnessConfig:
    """Settings of `robustness_measurements` (everything that changes its numbers but the key).

    >>> RobustnessConfig(pgd_radii=(8, 16), headline_radius=8).replace(pgd_steps=10).pgd_steps
    10

    Attributes:
        num_images: the first N test images (None: all).
        pgd_radii: L-inf radii in 1/255 units (PGD step eps/8, random start).
        pgd_steps: PGD iterations (20: PGD-20).
        headline_radius: the radius (in `pgd_radii`) reported as "PGD robust accuracy".
        table: corruption severity table ("digits", "cifar10" or "imagenet").
        corruptions, severities: the "-C" cells.
    """

    num_images: int | None = None
    pgd_radii: tuple = (2, 4, 8, 16)
    pgd_steps: int = 20
    headline_radius: int = 16
    table: str = "digits"
    corruptions: tuple = CORRUPTIONS
    severities: tuple = SEVERITIES

    def __post_init__(self):
        if self.num_images is not None:
            check_positive_int("num_images", self.num_images)
        check_positive_int("pgd_steps", self.pgd_steps)
        if not self.pgd_radii or any(not 0 < r <= 255 for r in self.pgd_radii):
            raise ValueError(f"pgd_radii must be radii in (0, 255] (units of 1/255), got "
                             f"{self.pgd_radii!r}")
        if self.headline_radius not in self.pgd_radii:
            raise ValueError(f"headline_radius {self.headline_radius} is not one of "
                             f"pgd_radii {self.pgd_radii}")
        if self.table not in TABLES:
            raise ValueError(f"unknown severity table {self.table!r}; choose from "
                             f"{', '.join(TABLES)}")
        for c in self.corruptions:
            for s in self.severities:
                check_corruption(c, s, self.table)

    @property
    def corruption(self) -> CorruptionConfig:
        """The "-C" cells as a `CorruptionConfig`."""
        return CorruptionConfig(self.table, tuple(self.corruptions), tuple(self.severities))

    def pgd(self, radius) -> PGDAttackConfig:
        """The PGD attack at `radius` (in 1/255 units)."""
        return PGDAttackConfig(eps=radius / 255, steps=self.pgd_steps)

    def replace(self, **changes) -> "RobustnessConfig":
        """A copy with `changes` applied (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


class RobustnessResult(NamedTuple):
    """Output of `robustness_measurements` (jax arrays; R radii, C corruptions, S severities).

    Attributes:
        clean_accuracy: () top-1 accuracy.
        pgd_accuracy: (R,) robust accuracy at each of `config.pgd_radii`.
        corruption_accuracy: (C, S) accuracy per (corruption, severity) cell.
        num_images: () int32, the images measured.
    """

    clean_accuracy: jax.Array
    pgd_accuracy: jax.Array
    corruption_accuracy: jax.Array
    num_images: jax.Array


def robustness_measurements(model_fn, params, images, labels, *, key,
                            config: RobustnessConfig = RobustnessConfig(), mesh=None,
                            batch_size: int | None = None, memory_budget=None,
                            pgd_key=None, progress: bool = False) -> RobustnessResult:
    """Clean accuracy, PGD robust accuracy per radius and corruption accuracy per cell.

    The corruption cells use `corruption_key(key, c, s)`; the PGD starts `pgd_key`, by default
    `fold_in(key, PGD_STREAM)` (example i: `fold_in` of that with i). The profile passes
    `pgd_key=jax.random.key(seed + 1)`, the stream its committed reports were made with.

    >>> import jax, jax.numpy as jnp
    >>> model_fn = lambda p, x: x.reshape(len(x), -1) @ p
    >>> params = jax.random.normal(jax.random.key(0), (8 * 8 * 3, 4))
    >>> images = jax.random.uniform(jax.random.key(1), (4, 8, 8, 3))
    >>> cfg = RobustnessConfig(pgd_radii=(8,), headline_radius=8, pgd_steps=2,
    ...                        corruptions=("contrast",), severities=(1, 5))
    >>> r = robustness_measurements(model_fn, params, images, jnp.zeros(4, jnp.int32),
    ...                             key=jax.random.key(0), config=cfg)
    >>> r.pgd_accuracy.shape, r.corruption_accuracy.shape
    ((1,), (1, 2))

    Args:
        key: typed PRNG key (corruption noise and PGD starts).
        config: `RobustnessConfig`.
        mesh, batch_size, memory_budget: see `lst_jax.robustness.accuracy` (None: one
            device; `batch_size` None: each measurement's default).

    Shape:
        images: (N, H, W, C) float32 in [0, 1]; labels: (N,) int.
    """
    check_key(key)
    if not isinstance(config, RobustnessConfig):
        raise TypeError(f"config must be a RobustnessConfig, got {type(config).__name__}")
    n = len(images) if config.num_images is None else min(config.num_images, len(images))
    x, y = np.asarray(images[:n]), np.asarray(labels[:n])
    size = {} if batch_size is None else {"batch_size": batch_size}
    place = dict(mesh=mesh, memory_budget=memory_budget, **size)
    clean = accuracy(model_fn, params, x, y, **place)
    k_pgd = jax.random.fold_in(key, PGD_STREAM) if pgd_key is None else check_key(pgd_key,
                                                                                  "pgd_key")
    pgd = [pgd_accuracy(model_fn, params, x, y, key=k_pgd, config=config.pgd(r),
                        progress=progress, **place) for r in config.pgd_radii]
    acc = corruption_accuracy(model_fn, params, x, y, key=key, config=config.corruption,
                              progress=progress, **place)
    return RobustnessResult(clean, jnp.stack(pgd), acc, jnp.asarray(n, jnp.int32))


__all__ = ["RobustnessConfig", "RobustnessResult", "robustness_measurements", "PGD_STREAM"]
