"""LST hyperparameters: a frozen, hashable config split into static and traced parts."""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from lst_jax.utils.checks import check_nonnegative, check_positive_int


@dataclasses.dataclass(frozen=True)
class LSTConfig:
    """Hyperparameters of Level Set Traversal (arXiv 2310.19889; `../spec/lst.md` section 2).

    >>> from lst_jax.traversal import LSTConfig
    >>> LSTConfig(iters=20).replace(step_size=0.1).step_size
    0.1

    Attributes:
        step_size: eta, the fraction of the orthogonal residual (target - x) moved per iteration.
        iters: number of iterations (static: changes the compiled program).
        pthresh: delta, a step is accepted iff `p0[y] - p'[y] < pthresh` (p0: clean source).
        adv_pert: add the accumulated confidence-restoring term (static).
        adv_step_size: eps; accumulator `a = clip(a + eps/2 * grad, -eps, eps)`, subtracted.
        log_step: images are logged every `log_step` iterations (static); also the chunk length
            of the progress-reporting runner.
        noise: amplitude of the uniform random start, `x0 = clip(xs + U[-noise, noise))`.
        log_images: return the iterate at iterations 0, log_step, 2 log_step, ... (static).
        fused: one forward + one backward per iteration (default) instead of the reference's
            two forwards + one backward; same trajectory (static).
        reference_numerics: compute the cross-entropy gradient with the reference's
            arithmetic, `softmax - onehot` (static). The default computes it without
            cancellation (`step.ce_cotangent`), which keeps float32 trajectories closer to
            float64 ones on saturated sources (docs/lst.md, "Numerics").

    Only `iters`, `log_step`, `adv_pert`, `log_images`, `fused` and `reference_numerics` are
    compiled in; the float hyperparameters are traced, so sweeping them does not recompile.
    """

    step_size: float = 5e-2
    iters: int = 100
    pthresh: float = 0.05
    adv_pert: bool = False
    adv_step_size: float = 1.0 / 255.0
    log_step: int = 10
    noise: float = 2.0 / 255.0
    log_images: bool = False
    fused: bool = True
    reference_numerics: bool = False

    def __post_init__(self):
        check_positive_int("iters", self.iters)
        check_positive_int("log_step", self.log_step)
        check_nonnegative("step_size", self.step_size)
        check_nonnegative("adv_step_size", self.adv_step_size)
        check_nonnegative("noise", self.noise)
        try:
            float(self.pthresh)
        except (TypeError, ValueError):
            raise ValueError(f"pthresh must be a number, got {self.pthresh!r}") from None
        for name in ("adv_pert", "log_images", "fused", "reference_numerics"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be a bool, got {getattr(self, name)!r}")

    @property
    def static(self) -> "StaticSettings":
        return StaticSettings(self.iters, self.log_step, self.adv_pert, self.log_images,
                              self.fused, self.reference_numerics)

    @property
    def hyper(self) -> "LSTHyper":
        """The traced hyperparameters as float32 scalars (see `hyper_as`)."""
        return self.hyper_as(jnp.float32)

    def hyper_as(self, dtype) -> "LSTHyper":
        """The traced hyperparameters as scalars of `dtype` (float64 for ground-truth runs:
        converted from the Python floats, not from their float32 roundings)."""
        f = lambda v: jax.device_put(np.asarray(v, dtype))   # explicit: no implicit transfer
        return LSTHyper(f(self.step_size), f(self.pthresh), f(self.adv_step_size), f(self.noise))

    def replace(self, **changes) -> "LSTConfig":
        """A copy with `changes` applied (validated again)."""
        return dataclasses.replace(self, **changes)

    @classmethod
    def preset(cls, name: str, **overrides) -> "LSTConfig":
        """A named preset (`paper`, `reference_defaults`) with optional overrides."""
        return preset(name, **overrides)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class StaticSettings:
    """The compiled-in part of `LSTConfig` (hashable; used as a jit static argument)."""

    iters: int
    log_step: int
    adv_pert: bool
    log_images: bool
    fused: bool
    reference_numerics: bool = False


class LSTHyper(NamedTuple):
    """The traced float hyperparameters of `LSTConfig` (`config.hyper`; scalars, float32;
    float64 in ground-truth runs)."""

    step_size: jnp.ndarray
    pthresh: jnp.ndarray
    adv_step_size: jnp.ndarray
    noise: jnp.ndarray


# Named presets (`../spec/lst.md` section 2).
PRESETS: dict[str, LSTConfig] = {
    # The reference code's argparse defaults.
    "reference_defaults": LSTConfig(),
    # The README "paper" command: eta 1e-2, 400 iterations, delta 0.2, adversarial term eps 2e-3.
    "paper": LSTConfig(step_size=1e-2, iters=400, pthresh=0.2, adv_pert=True,
                       adv_step_size=2e-3, log_step=20),
}


def preset(name: str, **overrides) -> LSTConfig:
    """Returns a named preset (`paper`, `reference_defaults`) with optional overrides.

    >>> preset("paper", iters=40).iters
    40
    """
    if name not in PRESETS:
        raise ValueError(f"unknown LST preset {name!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[name].replace(**overrides)
