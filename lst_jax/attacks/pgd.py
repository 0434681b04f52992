"""L-inf projected gradient descent (Madry et al., arXiv 1706.06083) on `model_fn`."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import optax
from jax import lax

from lst_jax.utils.checks import (
    check_images,
    check_key,
    check_labels,
    check_positive_int,
    is_concrete,
)


@dataclasses.dataclass(frozen=True)
class PGDAttackConfig:
    """Settings of untargeted L-inf PGD (`pgd_linf`, `lst_jax.robustness.pgd_accuracy`).

    >>> PGDAttackConfig(eps=8 / 255).step == 1 / 255
    True

    Attributes:
        eps: L-inf radius in [0, 1] pixel units (e.g. 8/255).
        steps: iterations (20: PGD-20; static: the scan's length).
        step_size: signed-gradient step; None: eps / 8.
        random_start: start from a uniform point in the eps-ball (drawn from the key).

    `eps` and `step_size` may be traced values inside a `jax.jit` (validated only when
    concrete), so a sweep over radii compiles once.
    """

    eps: float = 8 / 255
    steps: int = 20
    step_size: float | None = None
    random_start: bool = True

    def __post_init__(self):
        check_positive_int("steps", self.steps)
        if is_concrete(self.eps) and not 0 < float(self.eps) <= 1:
            raise ValueError(f"eps must be in (0, 1] (pixel units, e.g. 8/255), got "
                             f"{self.eps!r}")
        if (self.step_size is not None and is_concrete(self.step_size)
                and not float(self.step_size) >= 0):
            raise ValueError(f"step_size must be a non-negative number, got {self.step_size!r}")
        if not isinstance(self.random_start, bool):
            raise ValueError(f"random_start must be a bool, got {self.random_start!r}")

    @property
    def step(self):
        """The step size: `step_size`, or eps / 8 when None."""
        return self.eps / 8 if self.step_size is None else self.step_size

    def replace(self, **changes) -> "PGDAttackConfig":
        """A copy with `changes` applied (validated again)."""
        return dataclasses.replace(self, **changes)


def pgd_loop(model_fn, params, images, labels, x0, eps, step_size, steps: int):
    """`steps` signed-gradient ascent steps on the summed cross-entropy from `x0`, projected
    onto the eps-ball around `images` and [0, 1] (eps, step_size may be traced).

    Shape:
        images, x0: (B, H, W, C); labels: (B,) -> (B, H, W, C).
    """
    def loss(x):
        logits = model_fn(params, x)
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).sum()

    x0 = jnp.clip(jnp.clip(x0, images - eps, images + eps), 0.0, 1.0)

    def body(x, _):
        g = jax.grad(loss)(x)
        x = x + step_size * jnp.sign(g)
        x = jnp.clip(jnp.clip(x, images - eps, images + eps), 0.0, 1.0)
        return x, None

    x, _ = lax.scan(body, x0, None, length=steps)
    return lax.stop_gradient(x)


def pgd_linf_unchecked(model_fn, params, images, labels, *, key=None,
                       config: PGDAttackConfig = PGDAttackConfig(), start=None):
    """`pgd_linf` without input validation (traceable inside a user's `jax.jit`; the config
    may hold traced `eps` / `step_size`).

    >>> import jax, jax.numpy as jnp
    >>> model_fn = lambda p, x: x.reshape(len(x), -1) @ p
    >>> params = jax.random.normal(jax.random.key(0), (8 * 8 * 3, 4))
    >>> images = jax.random.uniform(jax.random.key(1), (2, 8, 8, 3))
    >>> attack = jax.jit(lambda x, eps: pgd_linf_unchecked(
    ...     model_fn, params, x, jnp.array([0, 1]), key=jax.random.key(2),
    ...     config=PGDAttackConfig(eps=eps, steps=2)))
    >>> attack(images, 4 / 255).shape
    (2, 8, 8, 3)
    """
    eps = config.eps
    if start is not None:
        x0 = start
    elif config.random_start:
        x0 = images + jax.random.uniform(key, images.shape, images.dtype, -eps, eps)
    else:
        x0 = images
    return pgd_loop(model_fn, params, images, labels, x0, eps, config.step, config.steps)


def pgd_linf(model_fn, params, images, labels, *, key=None,
             config: PGDAttackConfig = PGDAttackConfig(), start=None):
    """Untargeted L-inf PGD maximising the cross-entropy, staying in [0, 1].

    >>> import jax, jax.numpy as jnp
    >>> model_fn = lambda p, x: x.reshape(len(x), -1) @ p
    >>> params = jax.random.normal(jax.random.key(0), (8 * 8 * 3, 4))
    >>> images = jax.random.uniform(jax.random.key(1), (2, 8, 8, 3))
    >>> adv = pgd_linf(model_fn, params, images, jnp.array([0, 1]), key=jax.random.key(2),
    ...                config=PGDAttackConfig(eps=4 / 255, steps=3))
    >>> bool(jnp.max(jnp.abs(adv - images)) <= 4 / 255 + 1e-6)
    True

    Args:
        model_fn: `model_fn(params, images) -> logits`.
        key: typed PRNG key of the random start (needed when `config.random_start` and no
            `start`).
        config: `PGDAttackConfig` (eps, steps, step size, random start).
        start: explicit starting images (then `key` is unused), e.g. a random start drawn
            per example; projected onto the eps-ball and [0, 1].

    Returns:
        Adversarial images (jax.Array), same shape as `images`.

    Shape:
        images: (B, H, W, C) float32 in [0, 1]; labels: (B,) int.
    """
    if not isinstance(config, PGDAttackConfig):
        raise TypeError(f"config must be a PGDAttackConfig, got {type(config).__name__}")
    images = check_images("images", images)
    labels = check_labels("labels", labels, batch=images.shape[0])
    if start is not None:
        start = check_images("start", start, batch=images.shape[0], value_range=None)
        if start.shape != images.shape:
            raise ValueError(f"start must have the shape of images {tuple(images.shape)}, "
                             f"got {tuple(start.shape)}")
    elif config.random_start:
        if key is None:
            raise TypeError("pgd_linf needs key= (a typed PRNG key) for its random start "
                            "(or start=, or config.random_start=False)")
    if key is not None:
        check_key(key)
    return pgd_linf_unchecked(model_fn, params, images, labels, key=key, config=config,
                              start=start)
