"""Hyperparameters of the connectivity optimisers (defaults: the authors' code, see
`../shared/spec/mode_connectivity.md` section 10), as frozen dataclasses with `to_dict()`."""

from __future__ import annotations

import dataclasses

from lst_jax.utils.checks import check_nonnegative, check_positive_int

BYPASS_MODES = ("faithful", "exact")


class _Config:
    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)

    def _check(self, ints=(), floats=()):
        for name in ints:
            check_positive_int(name, getattr(self, name))
        for name in floats:
            check_nonnegative(name, getattr(self, name))


@dataclasses.dataclass(frozen=True)
class BypassConfig(_Config):
    """Barrier bypass inside the hyperplane orthogonal to A -> C (paper 4.1, `bypass_barrier`).

    Objective `CE + mse_weight * mean((x - B)^2) + tv_weight * TV(x - B)`, Adam `lr`,
    `steps` updates, final iterate. `mode="faithful"`: the gradient's component along C - A
    is removed before Adam (the authors); `"exact"` [ours]: the iterate is also kept on the
    hyperplane.
    """

    lr: float = 5e-3
    steps: int = 1024
    mse_weight: float = 0.1
    tv_weight: float = 1e-8
    mode: str = "faithful"

    def __post_init__(self):
        self._check(("steps",), ("lr", "mse_weight", "tv_weight"))
        if self.mode not in BYPASS_MODES:
            raise ValueError(f"mode must be one of {BYPASS_MODES}, got {self.mode!r}")


@dataclasses.dataclass(frozen=True)
class FreeConfig(_Config):
    """Free optimisation of a barrier point (paper 4.3, `optimize_point`): CE only, Adam `lr`
    with coupled L2 `weight_decay`, at most `steps` updates, stop after the update whose
    pre-update CE is below `threshold` (that post-update iterate is returned)."""

    lr: float = 5e-2
    steps: int = 4096
    weight_decay: float = 1e-7
    threshold: float = 5e-4

    def __post_init__(self):
        self._check(("steps",), ("lr", "weight_decay", "threshold"))


@dataclasses.dataclass(frozen=True)
class FVOConfig(_Config):
    """Feature visualisation by optimisation from noise (paper 4.3 / App. F.1).

    Starts `init_scale * N(0, I)` (`noise_inputs(key=..., scale=init_scale)`); loss `CE +
    tv_weight * TV(x)`; Adam `lr` with coupled L2 `weight_decay`; after every update the CE
    is re-evaluated, the lowest-CE iterate is kept and returned; stop once that post-update
    CE is below `threshold`, else after `steps`. Paper: 8192 steps and threshold 5e-4 (4.3),
    4096 and 5e-3 (F.1); `tv_weight` 2.5e-7 for input A, 0 for input C (a float, or a tuple
    with one weight per row, so both kinds of input run in one batch).
    """

    lr: float = 5e-2
    steps: int = 8192
    weight_decay: float = 1e-7
    threshold: float = 5e-4
    init_scale: float = 0.01
    tv_weight: float | tuple = 0.0

    def __post_init__(self):
        self._check(("steps",), ("lr", "weight_decay", "threshold", "init_scale"))
        tv = self.tv_weight
        if isinstance(tv, (list, tuple)) or (hasattr(tv, "ndim") and tv.ndim > 0):
            tv = tuple(check_nonnegative("tv_weight", v) for v in tv)
            if not tv:
                raise ValueError("tv_weight must not be empty")
        else:
            tv = check_nonnegative("tv_weight", tv)
        object.__setattr__(self, "tv_weight", tv)


@dataclasses.dataclass(frozen=True)
class AttackConfig(_Config):
    """The paper's targeted optimisation attack (4.2, `create_adversarial`).

    From a source K of another class: `CE(x, c) + mse_weight * mean((x - K)^2) + tv_weight *
    TV(x - K)`, Adam `lr`, at most `steps` updates; with an early-stop loss (the real
    endpoint's CE), stop after update i once i >= `min_step` (the authors' `i > 32`) and the
    pre-update CE is below it. No clipping, no epsilon ball. Demo: 1024 steps, TV 1e-7;
    statistics (the defaults): 512 steps, TV 1e-8.
    """

    lr: float = 5e-3
    steps: int = 512
    mse_weight: float = 0.1
    tv_weight: float = 1e-8
    min_step: int = 33

    def __post_init__(self):
        self._check(("steps",), ("lr", "mse_weight", "tv_weight"))
        if isinstance(self.min_step, bool) or not isinstance(self.min_step, int) \
                or self.min_step < 0:
            raise ValueError(f"min_step must be a non-negative integer, got {self.min_step!r}")


@dataclasses.dataclass(frozen=True)
class PGDConfig(_Config):
    """Untargeted L-inf PGD in pixel space (`lst_jax.robustness.pgd_examples`: random start
    per example), the detector's second attack [ours]: eps 4/255 (the spec's ImageNet value),
    10 steps of eps/4."""

    eps: float = 4 / 255
    steps: int = 10
    step_size: float = 1 / 255

    def __post_init__(self):
        self._check(("steps",), ("eps", "step_size"))


CONNECT_METHODS = ("bypass", "free")


@dataclasses.dataclass(frozen=True)
class ConnectConfig(_Config):
    """Settings of `connect`, the recursive barrier bypass (paper 4.1 / 4.3).

    Attributes:
        method: "bypass" (trained models: `bypass_barrier` with `bypass`) or "free"
            (untrained models, 4.3: `free_optimize` with `free`).
        points: points on the primary path (4.1: 1000; 4.3: 200).
        segment_points: points on every later segment (None: `points // 2`, the 4.1
            secondary paths; 4.3 uses 200 everywhere).
        threshold: the connectivity threshold delta on the barrier gap (Fig. 2: 1e-3).
        max_depth: rounds of bypassing (2: the authors' two rounds; 0: measure only).
        bypass, free: the optimisers of the two methods.
    """

    method: str = "bypass"
    points: int = 1000
    segment_points: int | None = None
    threshold: float = 1e-3
    max_depth: int = 2
    bypass: BypassConfig = BypassConfig()
    free: FreeConfig = FreeConfig()

    def __post_init__(self):
        if self.method not in CONNECT_METHODS:
            raise ValueError(f"method must be one of {CONNECT_METHODS}, got {self.method!r}")
        if isinstance(self.max_depth, bool) or not isinstance(self.max_depth, int) \
                or self.max_depth < 0:
            raise ValueError(f"max_depth must be an integer >= 0, got {self.max_depth!r}")
        check_nonnegative("threshold", self.threshold)
        for name in ("points", "segment_points"):
            v = getattr(self, name)
            if v is None and name == "segment_points":
                continue
            if isinstance(v, bool) or not isinstance(v, int) or v < 2:
                raise ValueError(f"{name} must be an integer >= 2, got {v!r}")
        if self.resolved_segment_points < 2:
            raise ValueError(f"segment_points must be an integer >= 2, got "
                             f"{self.resolved_segment_points} (points // 2)")
        if not isinstance(self.bypass, BypassConfig):
            raise ValueError(f"bypass must be a BypassConfig, got {type(self.bypass).__name__}")
        if not isinstance(self.free, FreeConfig):
            raise ValueError(f"free must be a FreeConfig, got {type(self.free).__name__}")

    @property
    def resolved_segment_points(self) -> int:
        """`segment_points`, or `points // 2` when None."""
        return self.points // 2 if self.segment_points is None else self.segment_points
