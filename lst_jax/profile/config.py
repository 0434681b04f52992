"""Settings of a profile: one sub-config per analysis, and the `quick` / `paper` presets."""

from __future__ import annotations

import dataclasses

from lst_jax.connectivity.config import AttackConfig
from lst_jax.connectivity.jobs import BarrierRunConfig, DetectRunConfig
from lst_jax.evaluation.full_eval import FullEvalConfig
from lst_jax.evaluation.iaside import IasideConfig
from lst_jax.robustness.evaluate import RobustnessConfig
from lst_jax.traversal import preset as lst_preset

# The model whose corruption errors normalise everybody's (the mCE convention of ImageNet-C,
# where AlexNet plays this part).
DEFAULT_BASELINE = "digits_resnet-normal"


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
        baseline: registry name of the mCE baseline (evaluated even when not profiled).
        analyses: which analyses run (names of `lst_jax.profile.analyses.ANALYSES`).
    """

    robustness: RobustnessConfig = RobustnessConfig()
    robustness_seed: int = 0
    lst: FullEvalConfig = FullEvalConfig(num_samples=10, rounds=5, batch_size=10)
    lst_metrics: str = "all"
    iaside: IasideConfig = IasideConfig()
    barrier: BarrierRunConfig = BarrierRunConfig()
    detect: DetectRunConfig = DetectRunConfig()
    baseline: str = DEFAULT_BASELINE
    analyses: tuple = ("robustness", "lst", "iaside", "connectivity")

    def __post_init__(self):
        from lst_jax.profile.analyses import ANALYSES

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


__all__ = ["ProfileConfig", "PRESETS", "profile_preset", "DEFAULT_BASELINE"]
