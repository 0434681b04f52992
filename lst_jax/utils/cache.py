"""Small per-model caches that neither grow without bound nor keep models alive.

Shape inference (`jax.eval_shape`) and memory planning are cached per `model_fn`; a plain
module-level dict keyed by `model_fn` would keep every model (and its closure: parameters,
datasets) alive for the life of the process. `ModelCache` holds the model weakly and at most
`maxsize` entries per model (oldest dropped first).
"""

from __future__ import annotations

import weakref
from collections import OrderedDict

_MISSING = object()


class ModelCache:
    """`cache.get(model_fn, key)` / `cache.put(model_fn, key, value)`: per-model entries held
    while `model_fn` lives (weak key), at most `maxsize` per model. Models that cannot be
    weakly referenced or hashed are not cached (every lookup misses)."""

    def __init__(self, maxsize: int = 32):
        self.maxsize = maxsize
        self._data: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def _entries(self, model_fn, create: bool):
        try:
            entries = self._data.get(model_fn)
            if entries is None and create:
                entries = self._data[model_fn] = OrderedDict()
            return entries
        except TypeError:            # not weak-referenceable or not hashable
            return None

    def get(self, model_fn, key, default=None):
        entries = self._entries(model_fn, create=False)
        try:
            value = _MISSING if entries is None else entries.get(key, _MISSING)
        except TypeError:            # unhashable key
            value = _MISSING
        return default if value is _MISSING else value

    def put(self, model_fn, key, value) -> None:
        entries = self._entries(model_fn, create=True)
        if entries is None:
            return
        try:
            entries[key] = value
        except TypeError:
            return
        entries.move_to_end(key)
        while len(entries) > self.maxsize:
            entries.popitem(last=False)

    def __len__(self) -> int:
        """Number of cached entries over all live models."""
        return sum(len(v) for v in list(self._data.values()))
