"""One model's robustness measurements in one call: clean, PGD-20 at several radii, and every
(corruption, severity) cell of a "-C" benchmark; the unit the profile caches."""

from __future__ import annotations

import dataclasses
import time

import jax
import numpy as np

from lst_jax.robustness.accuracy import accuracy, corruption_accuracy, pgd_accuracy
from lst_jax.robustness.corruptions import CORRUPTIONS, SEVERITIES, TABLES, check_corruption
from lst_jax.utils.checks import check_positive_int


@dataclasses.dataclass(frozen=True)
class RobustnessConfig:
    """Settings of `robustness_measurements` (everything that changes its numbers).

    Attributes:
        num_images: the first N test images (None: all).
        pgd_radii: L-inf radii in 1/255 units (PGD step eps/8, random start).
        pgd_steps: PGD iterations (20: PGD-20).
        headline_radius: the radius (in `pgd_radii`) reported as "PGD robust accuracy".
        table: corruption severity table ("digits", "cifar10" or "imagenet").
        corruptions, severities: the "-C" cells.
        seed: corruption noise (`corruption_key(seed, c, s)`) and PGD starts (`key(seed + 1)`,
            as the shipped checkpoints' metadata).
    """

    num_images: int | None = None
    pgd_radii: tuple = (2, 4, 8, 16)
    pgd_steps: int = 20
    headline_radius: int = 16
    table: str = "digits"
    corruptions: tuple = CORRUPTIONS
    severities: tuple = SEVERITIES
    seed: int = 0

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

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def robustness_measurements(model_fn, params, images, labels, config: RobustnessConfig, *,
                            progress: bool = False) -> dict:
    """Clean accuracy, PGD robust accuracy per radius and corruption accuracy per cell.

    Returns:
        JSON-able dict: `clean_accuracy`, `pgd_accuracy` {"k/255": acc}, `robust_accuracy`
        (at the headline radius), `corruption_accuracy` (C lists of S), `corruptions`,
        `severities`, `mean_corruption_accuracy`, `num_images`, `seconds`.

    Shape:
        images: (N, H, W, C) float32 in [0, 1]; labels: (N,) int.
    """
    t0 = time.perf_counter()
    n = len(images) if config.num_images is None else min(config.num_images, len(images))
    x, y = np.asarray(images[:n]), np.asarray(labels[:n])
    clean = accuracy(model_fn, params, x, y)
    key = jax.random.key(config.seed + 1)
    pgd = {f"{r}/255": pgd_accuracy(model_fn, params, x, y, key, eps=r / 255,
                                    steps=config.pgd_steps, progress=progress)
           for r in config.pgd_radii}
    acc = corruption_accuracy(model_fn, params, x, y, seed=config.seed, table=config.table,
                              corruptions=config.corruptions, severities=config.severities,
                              progress=progress)
    return {"clean_accuracy": clean, "pgd_accuracy": pgd,
            "robust_accuracy": pgd[f"{config.headline_radius}/255"],
            "corruption_accuracy": acc.tolist(), "corruptions": list(config.corruptions),
            "severities": list(config.severities),
            "mean_corruption_accuracy": float(acc.mean()), "num_images": int(n),
            "seconds": round(time.perf_counter() - t0, 2)}


__all__ = ["RobustnessConfig", "robustness_measurements"]
