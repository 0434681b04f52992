"""Coalition values: log-probabilities of the true label on filtered images, for many
coalitions x images, as batched jitted calls through `model_fn` over the device mesh.

The unit of work is one (coalition, group): the group's g images filtered with the
coalition's bands and normalised together (the min-max couples the images of a group, so a
group is never split). `lst_jax.parallel.sharded_apply` evaluates a vector of unit indices:
chunks of a fixed number of units (a multiple of the device count, or planned from a
per-device memory budget), each split over the mesh's `"data"` axis (`mesh=None`: one
device), one compiled program
for every chunk and every block. The model parameters and the block's small index arrays
are replicated; the spectra of all images (FFT once per image, on the devices) and their
labels are split by rows over `"data"` (N / D images per device, padded to a multiple of the
device count), so the table's memory is spread over the devices rather than copied on each.
Each device fetches the spectra of its own units' images from every shard
(`lst_jax.parallel.gather_rows`: the shards travel around the ring of devices), filters, and
runs the model on `units x g` images. Numbers do not depend on the chunking or the device
count (tested: 8 devices == 1 to 1e-6).

Blocks of coalitions (the resumable unit: `store.save` after each) all have the same shape
(the last is padded with copies of its last coalition), so one program serves them all.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from typing import Callable, NamedTuple, Protocol

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from lst_jax.parallel import (
    data_mesh,
    gather_rows,
    num_shards,
    pad_to_multiple,
    per_shard,
    put_batch,
    put_replicated,
    sharded_apply,
)
from lst_jax.parallel import distributed as dist
from lst_jax.spectral.bands import band_index_map, check_num_bands, check_square_side
from lst_jax.spectral.config import SpectralConfig
from lst_jax.spectral.filters import filter_groups, gaussian_fill, image_spectra
from lst_jax.spectral.sampling import GroupLayout, group_layout, numpy_seed, sample_block
from lst_jax.utils.checks import check_images, check_labels, check_positive_int, num_classes_of
from lst_jax.utils.progress import Progress

DEFAULT_BLOCK = 16             # coalitions per block (one store file)
DEFAULT_IMAGES_PER_DEVICE = 128  # images per device and model call (no budget given)


class SpectralTable(NamedTuple):
    """What every unit reads: the rows (spectra, labels) split over the mesh's `"data"` axis
    by `build_table`, the band map and the noise key replicated.

    Shape:
        spectra: (N_pad, H, W, C) complex64, `image_spectra` of the images (N_pad: N rounded
        up to a multiple of the device count; the padding repeats the last image);
        labels: (N_pad,) int32; band_map: (H, W) int32 (natural layout);
        noise_key: raw data of the key of the Gaussian fill (threefry: (2,) uint32).
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

    Hashable by value (the model function, the static filter settings and the mesh), so
    every block and every later call with the same model, settings and shapes reuse one
    program. `mesh`: the mesh the table's rows are split over (`gather_rows`); None: the
    table is whole on every device (plain indexing).
    """

    model_fn: Callable
    fill: str = "random"
    post: str = "abs"
    normalize: str = "group"
    key_impl: str = "threefry2x32"
    mesh: Mesh | None = None

    def images(self, table: SpectralTable, block: CoalitionBlock, units):
        """Filtered images and labels of `units`. Shape: (n,) -> (n, g, H, W, C), (n, g)."""
        n_groups = block.members.shape[1]
        c, j = units // n_groups, units % n_groups
        members = block.members[c, j]                                # (n, g)
        keep = block.bits[c][:, table.band_map]                      # (n, H, W)
        rows = members
        if self.fill == "random":                                    # one ring pass for both
            rows = jnp.stack([members, block.partners[c, j]], axis=1)   # (n, 2, g)
        spectra, labels = gather_rows((table.spectra, table.labels), rows, self.mesh)
        fill = None
        if self.fill == "random":
            spectra, fill, labels = spectra[:, 0], spectra[:, 1], labels[:, 0]
        elif self.fill == "gaussian":
            base = jax.random.wrap_key_data(table.noise_key, impl=self.key_impl)
            keys = jax.vmap(jax.random.fold_in, (None, 0))(base, block.noise_tag[c])
            keys = jax.vmap(jax.vmap(jax.random.fold_in, (None, 0)), (0, 0))(keys, members)
            fill = gaussian_fill(keys, spectra.shape[2:])
        filt = functools.partial(filter_groups, post=self.post, normalize=self.normalize)
        if fill is None:
            x = per_shard(lambda s, k: filt(s, None, k), self.mesh)(spectra, keep)
        else:                            # each device filters its own units (no all-gather)
            x = per_shard(filt, self.mesh)(spectra, fill, keep)
        return x, labels

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


def check_config(config) -> SpectralConfig:
    if not isinstance(config, SpectralConfig):
        raise TypeError(f"config must be a SpectralConfig, got {type(config).__name__}")
    return config


def check_value_inputs(model_fn, params, images, labels, config: SpectralConfig):
    """Validates everything before any compilation; returns (images, labels, K) on the host.

    Raises:
        ValueError naming the argument: images (rank, dtype, NaN, range, not square, smaller
        than 16), labels (shape, dtype, out of the model's classes), config.k,
        config.num_bands; TypeError: config not a SpectralConfig.
    """
    check_config(config)
    k = config.k
    check_images("images", images)
    side = check_square_side("images", images.shape)
    check_num_bands(config.num_bands, side)
    n = int(images.shape[0])
    labels = check_labels("labels", labels, batch=n,
                          num_classes=num_classes_of(model_fn, params, images.shape[1:]))
    if k is None:
        if config.resample:
            raise ValueError("config.k is required with resample=True (the number of images "
                             "each coalition draws from the images passed)")
        k = n
    if k > n:
        raise ValueError(f"config.k={k} exceeds the {n} images passed")
    if not config.resample and k != n:
        raise ValueError(f"config.k={k} differs from the {n} images passed: with common random "
                         "numbers the images passed are the sample (pass images[:k])")
    return (np.asarray(jax.device_get(images), np.float32),
            np.asarray(jax.device_get(labels), np.int32), k)


def noise_key_data(key) -> np.ndarray:
    """The raw data of the Gaussian fill's key (host uint32)."""
    with jax.ensure_compile_time_eval():          # a concrete key inside a user's jit
        return np.asarray(jax.device_get(jax.random.key_data(key)), np.uint32)


@functools.partial(jax.jit, static_argnames=("mesh",))
def _row_spectra(images, mesh):
    """FFT of rows split over "data": each device transforms its own images (`per_shard`:
    XLA's propagation would all-gather the images before the FFT)."""
    return per_shard(image_spectra, mesh)(images)


def build_table(images, labels, num_bands: int, key, mesh) -> SpectralTable:
    """The table: spectra and labels split by rows over `mesh`'s `"data"` axis (padded to a
    multiple of the device count with copies of the last image; the FFT runs on the devices
    holding the rows), the band map and the noise key replicated.

    Shape:
        images: (N, H, W, C) float32 host; labels: (N,) -> `SpectralTable` of N_pad rows.
    """
    (images, labels), _ = pad_to_multiple((np.asarray(images, np.float32),
                                           np.asarray(labels, np.int32)), num_shards(mesh))
    images, labels = put_batch((images, labels), mesh)
    small = put_replicated((band_index_map(images.shape[1], num_bands=num_bands),
                            noise_key_data(key)), mesh)
    return SpectralTable(_row_spectra(images, mesh), labels, *small)


def _blocks(n: int, size: int) -> list[tuple[int, int]]:
    return [(s, min(s + size, n)) for s in range(0, n, size)]


def _block_arrays(bits, layout: GroupLayout, size: int, num_images: int,
                  config: SpectralConfig, seed: int) -> CoalitionBlock:
    padded = np.concatenate([bits, np.repeat(bits[-1:], size - len(bits), axis=0)])
    s = sample_block(padded, layout, num_images=num_images, resample=config.resample,
                     seed=seed)
    return CoalitionBlock(padded, s.members, s.partners, s.noise_tag)


def _check_coalitions(coalitions, m: int) -> np.ndarray:
    bits = np.asarray(coalitions)
    if bits.ndim != 2 or bits.shape[1] != m or bits.shape[0] == 0 or bits.dtype != bool:
        raise ValueError(f"coalitions must be a non-empty bool array (C, {m}), got "
                         f"{bits.dtype} {bits.shape}")
    return bits


def _units_per_device(batch_size, g: int) -> int:
    """Units (groups of g images) per device in one call for `batch_size` images."""
    return max(1, check_positive_int("batch_size", batch_size) // g)


def coalition_log_probs(model_fn, params, images, labels, coalitions, *, key,
                        config: SpectralConfig = SpectralConfig(), mesh=None,
                        batch_size: int | None = None, memory_budget=None,
                        block_size: int = DEFAULT_BLOCK, store: BlockStore | None = None,
                        progress: bool = False, desc: str = "I-ASIDE") -> jax.Array:
    """Log-probability of the true label of every image under every coalition's filter.

    Args:
        model_fn, params: the classifier (`model_fn(params, images) -> logits`).
        images, labels: with `config.resample=False` the K images (grouped in order into
            groups of `config.group_size`); with `resample=True` the N images each
            coalition draws its own `config.k` from.
        coalitions: bit vectors (index 0 = lowest band).
        key: typed key of the random-fill pairings, the Gaussian noise and the resampled
            images (drawn on the host: `lst_jax.spectral.sampling.numpy_seed`).
        config: `SpectralConfig`.
        mesh: None (one device) or a mesh with a `"data"` axis
            (`lst_jax.parallel.data_mesh()`: all devices).
        batch_size: images per device in one model call (rounded down to whole groups, at
            least one group). None: planned from `memory_budget`, or 128 images per device
            when that is None too (the whole table of coalitions x images would rarely fit).
        memory_budget: per-device bytes (or "2GiB") one call may use, planned from XLA's
            memory analysis (`lst_jax.parallel.plan_chunk_size`); with `batch_size` too the
            smaller chunk wins.
        block_size: coalitions per stored block, the storage and resume granularity of
            `store` (one `store.save` per block; it never changes the numbers).
        store: resumable storage of finished blocks (see `BlockStore`; with several
            processes only process 0's store is used).
        progress, desc: progress bar over coalition-images (rate and ETA) and its label.

    Several processes (`jax.distributed`): call it on every process with the same
    arguments; each process computes whole blocks on its own devices (`mesh` must be local;
    None: the process's first local device), process 0 stores them
    (`distributed.share_work`) and every process returns the whole table. The numbers never
    depend on the mesh, `batch_size`, `memory_budget` or `block_size` beyond float round-off.

    Returns:
        (C, K) float32 jax.Array: entry [c, i] is `log softmax(model(filter(x_i, c)))[y_i]`,
        images in the order passed (resample: coalition c's i-th drawn image).

    Shape:
        images: (N, H, W, C) float32 in [0, 1], square, side >= 16; labels: (N,) int;
        coalitions: (C, M) bool -> (C, K) float32.

    Examples:
        >>> import jax, numpy as np
        >>> from lst_jax.spectral import SpectralConfig, all_coalitions, coalition_log_probs
        >>> w = np.linspace(-1, 1, 16 * 16 * 3 * 2, dtype=np.float32).reshape(-1, 2)
        >>> model_fn = lambda p, x: x.reshape(len(x), -1) @ p
        >>> x = np.random.default_rng(0).uniform(size=(4, 16, 16, 3)).astype(np.float32)
        >>> lp = coalition_log_probs(model_fn, w, x, np.array([0, 1, 0, 1]),
        ...                          all_coalitions(2), key=jax.random.key(0),
        ...                          config=SpectralConfig(num_bands=2, group_size=2))
        >>> lp.shape, bool((lp <= 0).all())
        ((4, 4), True)
    """
    seed = numpy_seed(key)
    images, labels, k = check_value_inputs(model_fn, params, images, labels, config)
    m = config.num_bands
    bits = _check_coalitions(coalitions, m)
    check_positive_int("block_size", block_size)
    multi = jax.process_count() > 1
    if mesh is None:         # one device (several processes: each its own first device)
        mesh = data_mesh(jax.local_devices()[:1])
    elif multi and not all(d.process_index == jax.process_index() for d in mesh.devices.flat):
        raise ValueError("in a multi-process run each process computes whole coalition "
                         "blocks on its own devices: pass a mesh of jax.local_devices() "
                         "(or mesh=None)")
    g = config.group_size
    layout = group_layout(k, g)
    n_groups = layout.num_groups
    chunk = None                      # units per call; with a budget only: planned
    if batch_size is not None:
        chunk = _units_per_device(batch_size, g) * num_shards(mesh)
    elif memory_budget is None:
        chunk = max(1, DEFAULT_IMAGES_PER_DEVICE // g) * num_shards(mesh)
    fn = UnitLogProbs(model_fn, config.fill, config.post, config.normalize,
                      str(jax.random.key_impl(key)), mesh)
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
            cache["table"] = build_table(images, labels, m, key, mesh)
        block = _block_arrays(bits[s:e], layout, block_size, len(images), config, seed)
        lp = sharded_apply(fn, (cache["params"], cache["table"], block), units, mesh,
                           chunk_size=chunk, memory_budget=memory_budget)
        return {"log_probs": lp.reshape(block_size, n_groups * g)[: e - s, real],
                "seconds": np.float64(time.perf_counter() - t0)}

    with Progress(len(bits) * k, desc=desc, unit="img", enabled=progress and main) as bar:
        bar.update(sum((e - s) * k for b, (s, e) in enumerate(bounds) if b in stored))

        def save(b, arrays):
            s, e = bounds[b]
            stored[b] = arrays["log_probs"]
            if store is not None:   # a block's compute time is storage metadata of the job
                store.save(b, bits[s:e], arrays["log_probs"], float(arrays["seconds"]))
            bar.update((e - s) * k)

        dist.share_work(todo, compute, save)
    out = np.zeros((len(bits), k), np.float32)
    for b, (s, e) in enumerate(bounds):
        if main:
            out[s:e] = stored[b]
    out = dist.broadcast_arrays_from_main(out)    # every process gets the whole table
    return jax.device_put(out, jax.local_devices()[0])


def coalition_log_probs_unchecked(model_fn, params, images, labels, coalitions, *, key,
                                  config: SpectralConfig, batch_size: int | None = None):
    """`coalition_log_probs` without validation, placement, blocks or store: one traceable
    computation (usable inside `jax.jit`; `params`, `images` and `labels` may be traced).

    `coalitions`, `key` and `config` must be concrete (the pairings and resampled images
    are drawn on the host from the key); `config.k` must be consistent with the images.
    `batch_size`: images per model call (`jax.lax.map` over chunks of whole groups);
    None: all coalitions x images in one call.

    Shape:
        images: (N, H, W, C); labels: (N,) int; coalitions: (C, M) bool -> (C, K) float32.

    Examples:
        >>> import jax, numpy as np
        >>> from lst_jax.spectral import (SpectralConfig, all_coalitions,
        ...                               coalition_log_probs_unchecked)
        >>> model_fn = lambda p, x: x.reshape(len(x), -1) @ p
        >>> w = np.zeros((16 * 16 * 3, 2), np.float32)            # uniform: log(1/2)
        >>> x = np.random.default_rng(0).uniform(size=(4, 16, 16, 3)).astype(np.float32)
        >>> key = jax.random.key(0)                  # concrete: closed over, not an argument
        >>> f = jax.jit(lambda p: coalition_log_probs_unchecked(
        ...     model_fn, p, x, np.zeros(4, int), all_coalitions(2), key=key,
        ...     config=SpectralConfig(num_bands=2, group_size=2), batch_size=2))
        >>> lp = f(w)
        >>> lp.shape, bool(np.allclose(lp, np.log(0.5)))
        ((4, 4), True)
    """
    seed = numpy_seed(key)
    bits = np.asarray(coalitions, bool)
    n = images.shape[0]
    k = n if config.k is None else config.k
    g = config.group_size
    layout = group_layout(k, g)
    n_groups = layout.num_groups
    table = SpectralTable(image_spectra(images), jnp.asarray(labels, jnp.int32),
                          band_index_map(images.shape[1], num_bands=config.num_bands),
                          noise_key_data(key))
    block = jax.tree.map(jnp.asarray, _block_arrays(bits, layout, len(bits), n, config, seed))
    table = table._replace(band_map=jnp.asarray(table.band_map),
                           noise_key=jnp.asarray(table.noise_key))
    fn = UnitLogProbs(model_fn, config.fill, config.post, config.normalize,
                      str(jax.random.key_impl(key)))
    total = len(bits) * n_groups
    per_call = total if batch_size is None else min(total, _units_per_device(batch_size, g))
    calls = -(-total // per_call)
    units = np.minimum(np.arange(calls * per_call, dtype=np.int32), total - 1)
    lp = jax.lax.map(lambda u: fn((params, table, block), u), units.reshape(calls, per_call))
    lp = lp.reshape(-1, g)[:total].reshape(len(bits), n_groups * g)
    return lp[:, np.flatnonzero(layout.real.reshape(-1))]


def coalition_filter(images, coalition, *, key,
                     config: SpectralConfig = SpectralConfig()) -> jax.Array:
    """The images one coalition's filter feeds the model (the same code as the values).

    Images are grouped in order into groups of `config.group_size` (min-max per group, or
    per image); `resample=True` draws `config.k` of them as the coalition would. `key`:
    the random-fill pairing, the noise and the resampled images (as in
    `coalition_log_probs`).

    Shape:
        images: (N, H, W, C) float32 in [0, 1]; coalition: (M,) bool -> (K, H, W, C).

    Examples:
        >>> import jax, numpy as np
        >>> from lst_jax.spectral import SpectralConfig, coalition_filter
        >>> x = np.random.default_rng(0).uniform(size=(2, 16, 16, 3)).astype(np.float32)
        >>> low = coalition_filter(x, np.array([True, False]), key=jax.random.key(0),
        ...                        config=SpectralConfig(num_bands=2, fill="zero"))
        >>> low.shape, float(low.min()), round(float(low.max()), 6)
        ((2, 16, 16, 3), 0.0, 1.0)
    """
    seed = numpy_seed(key)
    check_config(config)
    images = np.asarray(jax.device_get(check_images("images", images)), np.float32)
    check_square_side("images", images.shape)
    bits = np.asarray(coalition)
    if bits.shape != (config.num_bands,) or bits.dtype != bool:
        raise ValueError(f"coalition must be a bool array ({config.num_bands},), got "
                         f"{bits.dtype} {bits.shape}")
    k = len(images) if config.k is None else config.k
    if k > len(images):
        raise ValueError(f"config.k={k} exceeds the {len(images)} images passed")
    mesh = data_mesh(jax.devices()[:1])
    layout = group_layout(k, config.group_size)
    table = build_table(images, np.zeros(len(images), np.int32), config.num_bands, key, mesh)
    block = _block_arrays(bits[None], layout, 1, len(images), config, seed)
    fn = UnitLogProbs(None, config.fill, config.post, config.normalize,
                      str(jax.random.key_impl(key)))
    x, _ = _filter_jit(fn, table, jax.device_put(block),
                       jax.device_put(np.arange(layout.num_groups, dtype=np.int32)))
    x = x.reshape((-1,) + images.shape[1:])
    return x[jax.device_put(np.flatnonzero(layout.real.reshape(-1)))]


_filter_jit = jax.jit(UnitLogProbs.images, static_argnums=0)


__all__ = ["SpectralTable", "CoalitionBlock", "UnitLogProbs", "BlockStore",
           "coalition_log_probs", "coalition_log_probs_unchecked", "coalition_filter",
           "check_value_inputs", "check_config", "build_table", "num_classes_of",
           "DEFAULT_BLOCK", "DEFAULT_IMAGES_PER_DEVICE"]
