"""Which images each coalition sees, grouped for the min-max normalisation, and who fills in
whose removed bands (host-side, numpy; deterministic from the seed and the coalition).

K images are cut into G = ceil(K / g) consecutive groups of g = `group_size` (the reference's
batches of 10); a ragged last group of n < g images is padded to g slots with copies of its
own images (same image, same fill partner, same noise), which leaves its min and max, and so
every real image's result, unchanged; the copies get no weight. Every (coalition, group) is
one unit of work of fixed shape, whatever K.

The integer `seed` below is `numpy_seed(key)` of the key passed to the public functions.

- Common random numbers (`resample=False`, default): the images passed are the sample, in
  order; the random-fill pairing (one uniform permutation per group, an image may draw
  itself, as the reference) comes from `default_rng([seed, 1])` and is shared by every
  coalition; the Gaussian noise is keyed by the image alone.
- `resample=True` (the reference): coalition `c` draws its own K of the N images passed
  (without replacement) and its own pairing from `default_rng([seed, 2, M, *packbits(c)])`
  and its own noise tag, so the numbers of a coalition never depend on which other
  coalitions are evaluated or how they are chunked.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import numpy as np

from lst_jax.utils.checks import check_key, is_concrete


def numpy_seed(key, name: str = "key") -> int:
    """The integer that seeds the host (numpy) draws of a typed key: the key's data read as
    one big-endian integer of 32-bit words. For `jax.random.key(seed)` (threefry,
    0 <= seed < 2^32) it is `seed` itself, so a job's int seed gives the same draws as before
    keys replaced seeds.

    Raises:
        TypeError: not a typed key, or a traced one (the draws are made on the host).
    """
    check_key(key, name)
    if not is_concrete(key):
        raise TypeError(f"{name} must be a concrete key, not a traced value: I-ASIDE draws its "
                        "image pairings, resampled images and permutations on the host "
                        "(close over the key instead of passing it as a jit argument)")
    if key.shape != ():
        raise ValueError(f"{name} must be a single key (shape ()), got shape {key.shape}")
    out = 0
    with jax.ensure_compile_time_eval():          # a concrete key inside a user's jit
        data = np.asarray(jax.device_get(jax.random.key_data(key)))
    for word in data.ravel():
        out = (out << 32) | int(word)
    return out


class GroupLayout(NamedTuple):
    """Slots of the G groups: `position[j, s]` is the image (0..K-1) in slot s of group j.

    Shape:
        position: (G, g) int64; real: (G, g) bool (False for the padding copies).
    """

    position: np.ndarray
    real: np.ndarray

    @property
    def num_groups(self) -> int:
        return self.position.shape[0]

    @property
    def group_size(self) -> int:
        return self.position.shape[1]


def group_layout(k: int, group_size: int) -> GroupLayout:
    """Consecutive groups of `group_size` of K images, the last padded with its own images."""
    g = int(group_size)
    n_groups = -(-int(k) // g)
    flat = np.arange(n_groups * g)
    real = flat < k
    last = (n_groups - 1) * g
    n_last = k - last
    pos = np.where(real, flat, last + (flat - last) % n_last)
    return GroupLayout(pos.reshape(n_groups, g), real.reshape(n_groups, g))


def group_pairing(layout: GroupLayout, rng: np.random.Generator) -> np.ndarray:
    """Random-fill partners: a uniform permutation of each group's real images.

    Shape:
        -> (G, g) int64 positions; `partner[j, s]` fills the removed bands of slot s.
    """
    partner = np.empty_like(layout.position)
    for j in range(layout.num_groups):
        n = int(layout.real[j].sum())
        perm = rng.permutation(n)
        src = np.arange(layout.group_size) % n        # padding slot s copies slot s % n
        partner[j] = layout.position[j, perm[src]]
    return partner


def crn_partners(layout: GroupLayout, seed: int) -> np.ndarray:
    """The random-fill pairing shared by all coalitions under common random numbers.

    Shape:
        -> (G, g) int64 positions (`group_pairing` with `default_rng([seed, 1])`).
    """
    return group_pairing(layout, np.random.default_rng([seed, 1]))


def coalition_seed(bits) -> list[int]:
    """Seed entropy of one coalition: `[M, *packbits(bits)]` (any M)."""
    bits = np.asarray(bits, bool)
    return [int(bits.size)] + [int(v) for v in np.packbits(bits)]


class SampleBlock(NamedTuple):
    """Images, partners and noise tags of a block of coalitions (indices into the table of
    images passed).

    Shape:
        members, partners: (C, G, g) int32; noise_tag: (C,) uint32.
    """

    members: np.ndarray
    partners: np.ndarray
    noise_tag: np.ndarray


def sample_block(coalitions, layout: GroupLayout, *, num_images: int, resample: bool,
                 seed: int) -> SampleBlock:
    """The images each coalition of the block sees (CRN: all the same).

    Args:
        coalitions: (C, M) bool.
        num_images: N, images in the table (CRN: N = K; resample: the pool drawn from).
    """
    bits = np.asarray(coalitions, bool)
    c = bits.shape[0]
    if not resample:
        partner = crn_partners(layout, seed)
        members = np.broadcast_to(layout.position, (c,) + layout.position.shape)
        partners = np.broadcast_to(partner, members.shape)
        tags = np.zeros(c, np.uint32)
    else:
        k = int(layout.real.sum())
        members, partners, tags = [], [], []
        for row in bits:
            rng = np.random.default_rng([seed, 2] + coalition_seed(row))
            subset = rng.choice(num_images, size=k, replace=False)
            members.append(subset[layout.position])
            partners.append(subset[group_pairing(layout, rng)])
            tags.append(rng.integers(2 ** 32, dtype=np.uint32))
        members, partners, tags = np.stack(members), np.stack(partners), np.array(tags)
    return SampleBlock(np.ascontiguousarray(members, np.int32),
                       np.ascontiguousarray(partners, np.int32), np.asarray(tags, np.uint32))


__all__ = ["numpy_seed", "GroupLayout", "group_layout", "group_pairing", "crn_partners",
           "SampleBlock", "sample_block", "coalition_seed"]
