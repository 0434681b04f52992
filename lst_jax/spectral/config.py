"""`SpectralConfig`: every setting that changes I-ASIDE's numbers (frozen, validated)."""

from __future__ import annotations

import dataclasses

from lst_jax.spectral.score import DEFAULT_BETA, check_beta
from lst_jax.utils.checks import check_positive_int

FILLS = ("zero", "gaussian", "random")
POSTS = ("abs", "real")
NORMALIZATIONS = ("group", "per_image")
ESTIMATORS = ("exact", "sampled")


def check_choice(name: str, value, choices) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, "
                         f"got {value!r}")
    return value


@dataclasses.dataclass(frozen=True)
class SpectralConfig:
    """I-ASIDE settings (`../shared/spec/iaside.md` section 9; defaults: the reference's,
    [ours] where it has none).

    Attributes:
        num_bands: M, the number of square L-inf frequency bands (players); default 8.
        fill: what replaces the removed bands: "random" (the bands of another image of the
            same group, the reference's importance default), "zero" (ideal band-pass) or
            "gaussian" (complex noise, real and imaginary parts N(0, 0.5^2)).
        post: "abs" (complex modulus of the inverse FFT, the reference) or "real".
        normalize: "group" (one min-max over all images of a group, the reference's batch)
            or "per_image".
        group_size: images per normalisation / random-fill group (the reference's batch of
            10). Independent of the compute batch, which never changes the numbers.
        beta: decay of the score's weights (reference 0.75).
        resample: False (default, [ours]): one fixed set of K images, random-fill pairing
            and noise shared by all coalitions (common random numbers); True: a fresh random
            subset, pairing and noise per coalition, as the reference.
        estimator: "exact" (all 2^M coalitions, M <= 16) or "sampled" (antithetic
            permutation sampling, only the coalitions it visits).
        num_permutations: permutations of the sampled estimator (each walked both ways).
        k: images per coalition. None (default): all images passed (with common random
            numbers the images passed are the sample, so k, if given, must equal their
            number); required with `resample=True`, where each coalition draws k of them.

    The randomness (random-fill pairings, noise, resampled images, permutations, bootstrap)
    comes from the `key` passed to the functions, never from the config.

    Examples:
        >>> from lst_jax.spectral import SpectralConfig
        >>> cfg = SpectralConfig(num_bands=4).replace(fill="zero")
        >>> cfg.num_bands, cfg.fill, SpectralConfig.preset("reference", k=100).resample
        (4, 'zero', True)
    """

    num_bands: int = 8
    fill: str = "random"
    post: str = "abs"
    normalize: str = "group"
    group_size: int = 10
    beta: float = DEFAULT_BETA
    resample: bool = False
    estimator: str = "exact"
    num_permutations: int = 64
    k: int | None = None

    def __post_init__(self):
        check_positive_int("num_bands", self.num_bands)
        check_choice("fill", self.fill, FILLS)
        check_choice("post", self.post, POSTS)
        check_choice("normalize", self.normalize, NORMALIZATIONS)
        check_positive_int("group_size", self.group_size)
        object.__setattr__(self, "beta", check_beta(self.beta))
        if not isinstance(self.resample, bool):
            raise ValueError(f"resample must be True or False, got {self.resample!r}")
        check_choice("estimator", self.estimator, ESTIMATORS)
        check_positive_int("num_permutations", self.num_permutations)
        if self.estimator == "sampled" and self.num_permutations < 2:
            raise ValueError(f"num_permutations must be at least 2 for standard errors, got "
                             f"{self.num_permutations}")
        if self.estimator == "exact":
            from lst_jax.spectral.shapley import MAX_EXACT_PLAYERS

            if self.num_bands > MAX_EXACT_PLAYERS:
                raise ValueError(f"num_bands={self.num_bands} is too many for the exact "
                                 f"estimator (2^{self.num_bands} coalitions, at most "
                                 f"{MAX_EXACT_PLAYERS} bands): use estimator='sampled'")
        if self.k is not None:
            check_positive_int("k", self.k)

    def replace(self, **changes):
        """A copy with `changes` (validated again)."""
        return dataclasses.replace(self, **changes)

    @classmethod
    def preset(cls, name: str, **overrides):
        """A named preset with overrides: "default" ([ours]: common random numbers) or
        "reference" (the authors' code: a fresh random subset of k images, pairing and noise
        per coalition; pass `k`)."""
        if name not in PRESETS:
            raise ValueError(f"unknown I-ASIDE preset {name!r}; choose one of {sorted(PRESETS)}")
        return cls(**{**PRESETS[name], **overrides})

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


PRESETS = {"default": {}, "reference": {"resample": True}}

__all__ = ["SpectralConfig", "PRESETS", "FILLS", "POSTS", "NORMALIZATIONS", "ESTIMATORS"]
