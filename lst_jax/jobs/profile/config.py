"""Settings of a profile: one sub-config per analysis, and the `quick` / `paper` presets."""

from __future__ import annotations

import dataclasses

from lst_jax.connectivity.config import AttackConfig
from lst_jax.jobs.connectivity.job import BarrierRunConfig, DetectRunConfig
from lst_jax.jobs.iaside.job import IasideConfig
from lst_jax.jobs.lst.full_eval import FullEvalConfig
from lst_jax.robustness.evaluate import RobustnessConfig
from lst_jax.traversal import preset as lst_preset

# The model whose corruption errors normalise everybody's (the mCE convention of ImageNet-C,
# where AlexNet plays this part) on the digits; on other data the first profiled model.
DEFAULT_BASELINE = "digits_resnet-normal"

# The robustness suite by kind of data: corruption severity table
# (`lst_jax.robustness.corruptions.TABLES`) and headline PGD radius in 1/255 (digits: the
# ladder's 16/255; CIFAR-10: 8/255; ImageNet: 4/255, the usual L-inf threat models).
SUITES = {"digits": ("digits", 16), "cifar10": ("cifar10", 8), "imagenet": ("imagenet", 4)}
# Natural images up to this side (pixels) get CIFAR-10-C's severities, larger ones ImageNet-C's.
SMALL_IMAGE_SIDE = 64


def data_suite(ref, input_size) -> str:
    """The robustness suite (`SUITES` key) of data `ref` (a `DataRef`) at the models' input
    size (H, W, C): "digits" for the shipped digits, else "cifar10" for inputs of at most
    `SMALL_IMAGE_SIDE` pixels a side (CIFAR-10-C) and "imagenet" above (ImageNet-C)."""
    if ref.kind == "digits":
        return "digits"
    return "cifar10" if max(input_size[:2]) <= SMALL_IMAGE_SIDE else "imagenet"


@dataclasses.dataclass(frozen=True)
class ProfileConfig:
    """Everything that changes a profile's numbers, one sub-config per analysis.

    Attributes:
        robustness: clean / PGD / corruption accuracy (`RobustnessConfig`).
        robustness_seed: the robustness measurements' key is `jax.random.key(seed)`
            (corruption noise and PGD starts).
        lst: LST Tables 1-2 (`FullEvalConfig`); `lst_metrics` "all" (RMSE, L-inf, SSIM,
            LPIPS) or "basic" (RMSE, L-inf).
        iaside: I-ASIDE (`IasideConfig`: bands, fill, K, ...).
        barrier, detect: connectivity barrier statistics and adversarial detection
            (`BarrierRunConfig`, `DetectRunConfig`).
        baseline: the mCE baseline (registry name, checkpoint directory or in-memory model;
            evaluated even when not profiled); `DEFAULT_BASELINE` (the default) or None
            stand for the first profiled model when the models are not digits models.
        analyses: which analyses run (names of `lst_jax.jobs.profile.analyses.ANALYSES`).
        fit_data: a robustness config on the digits table moves to the data's corruption
            table and headline PGD radius (`for_suite`, `data_suite`); False keeps
            `robustness` as given.
    """

    robustness: RobustnessConfig = RobustnessConfig()
    robustness_seed: int = 0
    lst: FullEvalConfig = FullEvalConfig(num_samples=10, rounds=5, batch_size=10)
    lst_metrics: str = "all"
    iaside: IasideConfig = IasideConfig()
    barrier: BarrierRunConfig = BarrierRunConfig()
    detect: DetectRunConfig = DetectRunConfig()
    baseline: str | None = DEFAULT_BASELINE
    analyses: tuple = ("robustness", "lst", "iaside", "connectivity")
    fit_data: bool = True

    def __post_init__(self):
        from lst_jax.jobs.profile.analyses import ANALYSES

        if self.lst_metrics not in ("all", "basic"):
            raise ValueError(f"lst_metrics must be 'all' or 'basic', got {self.lst_metrics!r}")
        unknown = [a for a in self.analyses if a not in ANALYSES]
        if unknown or not self.analyses:
            raise ValueError(f"analyses must be a non-empty subset of {sorted(ANALYSES)}, got "
                             f"{self.analyses!r}")

    def replace(self, **changes) -> "ProfileConfig":
        return dataclasses.replace(self, **changes)

    def with_data(self, ref) -> "ProfileConfig":
        """The config whose I-ASIDE and connectivity analyses read the images of `ref` (a
        `DataRef`; their splits: `ref`'s, else each kind's default)."""
        return dataclasses.replace(
            self, iaside=dataclasses.replace(self.iaside, data=ref.kind, split=ref.split),
            barrier=dataclasses.replace(self.barrier, data=ref, split=ref.split),
            detect=dataclasses.replace(self.detect, data=ref, split=ref.split,
                                       reference_split=None))

    def for_suite(self, suite: str) -> "ProfileConfig":
        """The config whose robustness uses `suite`'s corruption table and headline PGD radius
        (`SUITES`; the radius replaces the config's headline radius in `pgd_radii` unless it
        is there already). Only a robustness config on the digits table (the presets', or
        `RobustnessConfig()`'s default) is moved to another suite; one with another table is
        the caller's choice and stays, and so does everything when `fit_data` is False or
        `suite` is "digits"."""
        if suite not in SUITES:
            raise ValueError(f"unknown suite {suite!r}; choose from {', '.join(SUITES)}")
        if not self.fit_data or suite == "digits" or self.robustness.table != "digits":
            return self
        table, radius = SUITES[suite]
        rob = self.robustness
        radii = rob.pgd_radii if radius in rob.pgd_radii else tuple(sorted(
            {r for r in rob.pgd_radii if r != rob.headline_radius} | {radius}))
        return dataclasses.replace(self, robustness=dataclasses.replace(
            rob, table=table, pgd_radii=radii, headline_radius=radius))


def _quick() -> ProfileConfig:
    return ProfileConfig(
        robustness=RobustnessConfig(num_images=64, pgd_radii=(16,), pgd_steps=10,
                                    headline_radius=16, severities=(1, 5)),
        lst=FullEvalConfig(lst=lst_preset("paper", iters=40), num_samples=4, rounds=2,
                           batch_size=4, grid_n=4),
        lst_metrics="basic",
        iaside=IasideConfig(num_bands=4, k=40),
        barrier=BarrierRunConfig(pairs_per_class=1, drop_per_class=0, points=21,
                                 attack=AttackConfig(steps=40)),
        # PGD is left to the paper preset: 40 images leave the robust models with too few
        # successful PGD examples for 5-fold cross-validation
        detect=DetectRunConfig(num_samples=40, points=21, attacks=("optimization",),
                               attack=AttackConfig(steps=40)))


def _paper() -> ProfileConfig:
    return ProfileConfig(
        robustness=RobustnessConfig(),
        lst=FullEvalConfig(num_samples=10, rounds=5, batch_size=10),
        lst_metrics="all", iaside=IasideConfig(), barrier=BarrierRunConfig(),
        detect=DetectRunConfig())


PRESETS = {"quick": _quick, "paper": _paper}


def profile_preset(name: str, **changes) -> ProfileConfig:
    """The named preset ("quick": minutes on a laptop CPU, for smoke tests; "paper": the
    settings of the README report), with optional field replacements."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}")
    return PRESETS[name]().replace(**changes)


__all__ = ["ProfileConfig", "PRESETS", "profile_preset", "DEFAULT_BASELINE", "SUITES",
           "data_suite"]
