"""Coalition values: log-probabilities of the true label on filtered images, for many
coalitions x images, as batched jitted calls through `model_fn` over the device mesh.

The unit of work is one (coalition, group): the group's g images filtered with the
coalition's bands and normalised together (the min-max couples the images of a group, so a
group is never split). `lst_jax.parallel.sharded_apply` evaluates a vector of unit indices:
chunks of a fixed number of units (a multiple of the device count, or planned from a
per-device memory budget), each split over the mesh's `"data"` axis, one compiled program
for every chunk and every block. The model parameters, the spectra of all images (FFT once
per image) and the block's small index arrays are replicated; each device gathers the
spectra of its own units, filters, and runs the model on `units x g` images. Numbers do
not depend on the chunking or the device count (tested: 8 devices == 1 to 1e-6).

Blocks of coalitions (the resumable unit: `store.save` after each) all have the same shape
(the last is padded with copies of its last coalition), so one program serves them all.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Callable, NamedTuple, Protocol

import jax
import jax.numpy as jnp
import numpy as np

from lst_jax.parallel import data_mesh, num_shards, put_replicated, sharded_apply
from lst_jax.parallel import distributed as dist
from lst_jax.spectral.bands import band_index_map, check_num_bands, check_square_side
from lst_jax.spectral.config import SpectralConfig
from lst_jax.spectral.filters import filter_groups, gaussian_fill, image_spectra
from lst_jax.spectral.sampling import GroupLayout, group_layout, sample_block
from lst_jax.utils.checks import (check_images, check_labels, check_positive_int,
                                   num_classes_of)
from lst_jax.utils.progress import Progress

DEFAULT_BLOCK = 16             # coalitions per block (one store file)
DEFAULT_IMAGES_PER_DEVICE = 128  # images per device and model call (no budget given)


class SpectralTable(NamedTuple):
    """What every unit reads (replicated on every device).

    Shape:
        spectra: (N, H, W, C) complex64, `image_spectra` of the images;
        labels: (N,) int32; band_map: (H, W) int32 (natural layout);
        noise_key: (2,) uint32, raw data of the threefry key of the Gaussian fill.
    """

    spectra: jax.Array
    labels: jax.Array
    band_map: jax.Array
    noise_key: jax.Array


class CoalitionBlock(NamedTuple):
    """A block of coalitions and the images they see.

    Shape:
        bits: (C, M) bool; members, partners: (C, G, g) int32 rows of the table;
        noise_tag: (C,) uint32.
    """

    bits: np.ndarray
    members: np.ndarray
    partners: np.ndarray
    noise_tag: np.ndarray


@dataclasses.dataclass(frozen=True)
class UnitLogProbs:
    """`fn(params_data, units) -> (n, g)` for `sharded_apply`: the log-softmax of the label
    of every image of every unit (unit u = coalition u // G, group u % G of the block).

    Hashable by value (the model function and the static filter settings), so every block
    and every later call with the same model, settings and shapes reuse one program.
    """

    model_fn: Callable
    fill: str = "random"
    post: str = "abs"
    normalize: str = "group"

    def images(self, table: SpectralTable, block: CoalitionBlock, units):
        """Filtered images and labels of `units`. Shape: (n,) -> (n, g, H, W, C), (n, g)."""
        n_groups = block.members.shape[1]
        c, j = units // n_groups, units % n_groups
        members = block.members[c, j]                                # (n, g)
        keep = block.bits[c][:, table.band_map]                      # (n, H, W)
        spectra = table.spectra[members]                             # (n, g, H, W, C)
        fill = None
        if self.fill == "random":
            fill = table.spectra[block.partners[c, j]]
        elif self.fill == "gaussian":
            base = jax.random.wrap_key_data(table.noise_key)
            keys = jax.vmap(jax.random.fold_in, (None, 0))(base, block.noise_tag[c])
            keys = jax.vmap(jax.vmap(jax.random.fold_in, (None, 0)), (0, 0))(keys, members)
            fill = gaussian_fill(keys, spectra.shape[2:])
        x = filter_groups(spectra, fill, keep, post=self.post, normalize=self.normalize)
        return x, table.labels[members]

    def __call__(self, params_data, units):
        params, table, block = params_data
        x, labels = self.images(table, block, units)
        n, g = labels.shape
        logits = self.model_fn(params, x.reshape((n * g,) + x.shape[2:]))
        logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
        return jnp.take_along_axis(logp, labels.reshape(-1, 1), axis=-1).reshape(n, g)


class BlockStore(Protocol):
    """Where finished blocks go (e.g. a run directory); None keeps them in memory."""

    def load(self, block: int) -> np.ndarray | None:
        """The stored (C_b, K) log-probabilities of block `block`, or None."""

    def save(self, block: int, coalitions: np.ndarray, log_probs: np.ndarray,
             seconds: float) -> None:
        """Persists a finished block (atomically)."""


def _fft_images(_, x):
    return image_spectra(x)


def check_value_inputs(model_fn, params, images, labels, config: SpectralConfig,
                       k: int | None):
    """Validates everything before any compilation; returns (images, labels, K) on the host.

    Raises:
        ValueError naming the argument: images (rank, dtype, NaN, range, not square, smaller
        than 16), labels (shape, dtype, out of the model's classes), k, config.num_bands.
    """
    if not isinstance(config, SpectralConfig):
        raise ValueError(f"config must be a SpectralConfig, got {type(config).__name__}")
    check_images("images", images)
    side = check_square_side("images", images.shape)
    check_num_bands(config.num_bands, side)
    n = int(images.shape[0])
    labels = check_labels("labels", labels, batch=n,
                          num_classes=num_classes_of(model_fn, params, images.shape[1:]))
    if k is None:
        if config.resample:
            raise ValueError("k is required with resample=True (the number of images each "
                             "coalition draws from the images passed)")
        k = n
    k = check_positive_int("k", k)
    if k > n:
        raise ValueError(f"k={k} exceeds the {n} images passed")
    if not config.resample and k != n:
        raise ValueError(f"k={k} differs from the {n} images passed: with common random "
                         "numbers the images passed are the sample (pass images[:k])")
    return np.asarray(images, np.float32), np.asarray(labels, np.int32), k


def build_table(images, labels, num_bands: int, seed: int, mesh) -> SpectralTable:
    """The replicated table: spectra (one sharded FFT pass), labels, band map, noise key."""
    spectra = sharded_apply(_fft_images, (), images, mesh,
                            chunk_size=DEFAULT_IMAGES_PER_DEVICE * num_shards(mesh))
    table = SpectralTable(spectra, np.asarray(labels, np.int32),
                          band_index_map(images.shape[1], num_bands),
                          np.asarray(jax.device_get(jax.random.key_data(
                              jax.random.key(jax.device_put(np.uint32(seed))))), np.uint32))
    return put_replicated(table, mesh)


def _blocks(n: int, size: int) -> list[tuple[int, int]]:
    return [(s, min(s + size, n)) for s in range(0, n, size)]


def _block_arrays(bits, layout: GroupLayout, size: int, num_images: int,
                  config: SpectralConfig) -> CoalitionBlock:
    padded = np.concatenate([bits, np.repeat(bits[-1:], size - len(bits), axis=0)])
    s = sample_block(padded, layout, num_images=num_images, resample=config.resample,
                     seed=config.seed)
    return CoalitionBlock(padded, s.members, s.partners, s.noise_tag)


def coalition_log_probs(model_fn, params, images, labels, coalitions,
                        config: SpectralConfig = SpectralConfig(), *, k: int | None = None,
                        mesh=None, images_per_call: int | None = None, memory_budget=None,
                        block_size: int = DEFAULT_BLOCK, store: BlockStore | None = None,
                        progress: bool = False, desc: str = "I-ASIDE") -> np.ndarray:
    """Log-probability of the true label of every image under every coalition's filter.

    Args:
        model_fn, params: the classifier (`model_fn(params, images) -> logits`).
        images, labels: with `config.resample=False` the K images (grouped in order into
            groups of `config.group_size`); with `resample=True` the N images each
            coalition draws its own K from.
        coalitions: bit vectors (index 0 = lowest band).
        k: images per coalition (default: all images passed; required with resample).
        mesh: a mesh with a `"data"` axis (default: all devices).
        images_per_call: images per sharded model call over all devices (rounded down to
            whole groups, at least one, then up to the device count; default 128 images per
            device).
        memory_budget: per-device bytes (or "2GiB") one call may use, planned from XLA's
            memory analysis (`lst_jax.parallel.plan_chunk_size`); replaces the default
            (with `images_per_call` too, the smaller chunk wins).
        block_size: coalitions per block (`store` saves one block at a time).
        store: resumable storage of finished blocks (see `BlockStore`; with several
            processes only process 0's store is used).
        progress, desc: progress bar over coalition-images (rate and ETA) and its label.

    Several processes (`jax.distributed`): call it on every process with the same
    arguments; each process computes whole blocks on its own devices (`mesh` must be local;
    default: `jax.local_devices()`), process 0 stores them (`distributed.share_work`) and
    every process returns the whole table.

    Returns:
        (C, K) float32: entry [c, i] is `log softmax(model(filter(x_i, c)))[y_i]`, images in
        the order passed (resample: coalition c's i-th drawn image).

    Shape:
        images: (N, H, W, C) float32 in [0, 1], square, side >= 16; labels: (N,) int;
        coalitions: (C, M) bool -> (C, K) float32.
    """
    images, labels, k = check_value_inputs(model_fn, params, images, labels, config, k)
    bits = np.asarray(coalitions)
    m = config.num_bands
    if bits.ndim != 2 or bits.shape[1] != m or bits.shape[0] == 0 or bits.dtype != bool:
        raise ValueError(f"coalitions must be a non-empty bool array (C, {m}), got "
                         f"{bits.dtype} {bits.shape}")
    check_positive_int("block_size", block_size)
    multi = jax.process_count() > 1
    if mesh is None:         # several processes: each computes whole blocks on its devices
        mesh = data_mesh(jax.local_devices() if multi else None)
    elif multi and not all(d.process_index == jax.process_index() for d in mesh.devices.flat):
        raise ValueError("in a multi-process run each process computes whole coalition "
                         "blocks on its own devices: pass a mesh of jax.local_devices() "
                         "(or mesh=None)")
    g = config.group_size
    layout = group_layout(k, g)
    n_groups = layout.num_groups
    chunk = None                      # units per call; with a budget only: planned
    if images_per_call is not None:
        chunk = max(1, check_positive_int("images_per_call", images_per_call) // g)
    elif memory_budget is None:
        chunk = max(1, DEFAULT_IMAGES_PER_DEVICE // g) * num_shards(mesh)
    fn = UnitLogProbs(model_fn, config.fill, config.post, config.normalize)
    block_size = min(block_size, len(bits))
    units = np.arange(block_size * n_groups, dtype=np.int32)
    real = layout.real.reshape(-1)
    bounds = _blocks(len(bits), block_size)
    main = dist.is_main_process()
    stored = {}

    def load_stored():      # only process 0 has the store (a run directory)
        for b in range(len(bounds)):
            z = store.load(b) if store is not None else None
            if z is not None:
                stored[b] = np.asarray(z, np.float32)

    dist.on_main(load_stored)
    todo = dist.pending_items(len(bounds), lambda b: b in stored)
    cache = {}                        # params and table on this process's devices, once

    def compute(b):
        s, e = bounds[b]
        t0 = time.perf_counter()
        if not cache:
            cache["params"] = put_replicated(params, mesh)
            cache["table"] = build_table(images, labels, m, config.seed, mesh)
        block = _block_arrays(bits[s:e], layout, block_size, len(images), config)
        lp = sharded_apply(fn, (cache["params"], cache["table"], block), units, mesh,
                           chunk_size=chunk, memory_budget=memory_budget)
        return {"log_probs": lp.reshape(block_size, n_groups * g)[: e - s, real],
                "seconds": np.float64(time.perf_counter() - t0)}

    with Progress(len(bits) * k, desc=desc, unit="img", enabled=progress and main) as bar:
        bar.update(sum((e - s) * k for b, (s, e) in enumerate(bounds) if b in stored))

        def save(b, arrays):
            s, e = bounds[b]
            stored[b] = arrays["log_probs"]
            if store is not None:
                store.save(b, bits[s:e], arrays["log_probs"], float(arrays["seconds"]))
            bar.update((e - s) * k)

        dist.share_work(todo, compute, save)
    out = np.zeros((len(bits), k), np.float32)
    for b, (s, e) in enumerate(bounds):
        if main:
            out[s:e] = stored[b]
    return dist.broadcast_arrays_from_main(out)   # every process gets the whole table


def coalition_filter(images, coalition, config: SpectralConfig = SpectralConfig(), *,
                     k: int | None = None) -> np.ndarray:
    """The images one coalition's filter feeds the model (the same code as the values).

    Images are grouped in order into groups of `config.group_size` (min-max per group, or
    per image); `resample=True` draws k of them as the coalition would.

    Shape:
        images: (N, H, W, C) float32 in [0, 1]; coalition: (M,) bool -> (K, H, W, C).
    """
    images = np.asarray(check_images("images", images), np.float32)
    check_square_side("images", images.shape)
    bits = np.asarray(coalition)
    if bits.shape != (config.num_bands,) or bits.dtype != bool:
        raise ValueError(f"coalition must be a bool array ({config.num_bands},), got "
                         f"{bits.dtype} {bits.shape}")
    k = len(images) if k is None else check_positive_int("k", k)
    if k > len(images):
        raise ValueError(f"k={k} exceeds the {len(images)} images passed")
    mesh = data_mesh(jax.devices()[:1])
    layout = group_layout(k, config.group_size)
    table = build_table(images, np.zeros(len(images), np.int32), config.num_bands,
                        config.seed, mesh)
    block = _block_arrays(bits[None], layout, 1, len(images), config)
    fn = UnitLogProbs(None, config.fill, config.post, config.normalize)
    x, _ = _filter_jit(fn, table, block, np.arange(layout.num_groups, dtype=np.int32))
    x = np.asarray(x).reshape((-1,) + images.shape[1:])
    return x[layout.real.reshape(-1)]


_filter_jit = jax.jit(UnitLogProbs.images, static_argnums=0)


__all__ = ["SpectralTable", "CoalitionBlock", "UnitLogProbs", "BlockStore",
           "coalition_log_probs", "coalition_filter", "check_value_inputs", "build_table",
           "num_classes_of", "DEFAULT_BLOCK", "DEFAULT_IMAGES_PER_DEVICE"]
