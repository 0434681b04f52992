"""Streaming a labelled image source through a model, batch by batch.

A split is never held in memory whole: `scan_logits` reads `batch` images at a time, so a
selection over ImageNet's 50 000 validation images (or its 1.28 M training images) holds one
batch of images plus one row of logits per image at most.
"""

from __future__ import annotations

from typing import Callable, Iterator

import numpy as np

from lst_jax.data.pool import predict_logits
from lst_jax.utils.progress import Progress


def scan_logits(source, model_fn, params, *, prepare: Callable | None = None,
                batch: int = 256, desc: str = "scan", progress: bool = False,
                ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """Yields `(indices, images, labels, logits)` for consecutive batches of `source`, in
    source order; stop iterating to stop reading.

    Each batch's logits come from `predict_logits(model_fn, params, prepare(images), batch)`,
    the computation that `predict_logits` does on the whole split (the same batches of
    `batch` rows, the last one padded), so a streamed selection equals the selection over the
    split loaded whole.

    Args:
        source: an `ImageSource` (`get(indices)` -> pixels in [0, 1], labels).
        prepare: pixels -> the model's inputs (default: the pixels).
        batch: images read and evaluated at a time.

    Shape:
        yields indices (b,) int64, images (b, H, W, 3) pixels, labels (b,) int32,
        logits (b, K) float32, with b <= batch.
    """
    n = len(source)
    with Progress(n, desc=desc, unit="img", enabled=progress) as bar:
        for start in range(0, n, batch):
            idx = np.arange(start, min(start + batch, n), dtype=np.int64)
            images, labels = source.get(idx)
            x = images if prepare is None else np.asarray(prepare(images))
            yield idx, images, np.asarray(labels, np.int32), predict_logits(
                model_fn, params, x, batch)
            bar.update(len(idx))


def first_correct(source, model_fn, params, *, limit: int | None = None,
                  prepare: Callable | None = None, batch: int = 256,
                  progress: bool = False) -> np.ndarray:
    """Source indices of the first `limit` correctly classified images (all when None),
    streamed: reading stops once `limit` are found.

    Shape:
        -> (n,) int64 ascending, n <= limit.
    """
    found: list[np.ndarray] = []
    count = 0
    for idx, _, labels, logits in scan_logits(source, model_fn, params, prepare=prepare,
                                              batch=batch, desc="clean images",
                                              progress=progress):
        ok = idx[logits.argmax(-1) == labels]
        found.append(ok)
        count += len(ok)
        if limit is not None and count >= limit:
            break
    out = np.concatenate(found + [np.zeros(0, np.int64)])
    return out if limit is None else out[:limit]


def lowest_loss_correct(source, model_fn, params, loss_fn: Callable, *,
                        prepare: Callable | None = None, batch: int = 256,
                        progress: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per class, the correctly classified image of lowest `loss_fn(logits, labels)` (the
    first such image on ties), over the whole source, streamed.

    Classes without a correctly classified image are left out.

    Returns:
        (classes (K',) int32 ascending, their losses (K',) float32, source indices (K',)
        int64).
    """
    best: dict[int, tuple[float, int]] = {}
    for idx, _, labels, logits in scan_logits(source, model_fn, params, prepare=prepare,
                                              batch=batch, desc="references",
                                              progress=progress):
        loss = np.asarray(loss_fn(logits, labels), np.float32)
        ok = logits.argmax(-1) == labels
        for c in np.unique(labels[ok]):
            rows = np.flatnonzero(ok & (labels == c))
            r = rows[np.argmin(loss[rows])]
            if int(c) not in best or loss[r] < best[int(c)][0]:
                best[int(c)] = (float(loss[r]), int(idx[r]))
    classes = np.asarray(sorted(best), np.int32)
    return (classes, np.asarray([best[int(c)][0] for c in classes], np.float32),
            np.asarray([best[int(c)][1] for c in classes], np.int64))
