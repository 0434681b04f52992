"""Streamed selections (`lst_jax.data.scan`) equal the selections over a split loaded whole,
read at most one batch at a time, and stop reading when done; `connectivity detect` selects
its clean inputs and references through them (issue 18: ImageNet's splits do not fit in
memory)."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from lst_jax.connectivity import select_references
from lst_jax.connectivity.objective import cross_entropy
from lst_jax.data.pool import predict_logits
from lst_jax.data.scan import first_correct, lowest_loss_correct, scan_logits
from lst_jax.data.sources import ArraySource

N, BATCH = 300, 64


class CountingSource(ArraySource):
    """An `ArraySource` that records the size of every read."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.reads: list[int] = []

    def get(self, indices):
        self.reads.append(len(indices))
        return super().get(indices)


def _linear(p, x):
    return (x - 0.5).reshape(len(x), -1) @ p


@pytest.fixture(scope="module")
def model_and_data():
    """A random linear classifier of 4 classes on 16x16 noise images (centred, so that its
    predictions vary), labelled so that about half of them are classified correctly (every
    class has a correct image)."""
    rng = np.random.default_rng(0)
    params = jnp.asarray(rng.normal(size=(16 * 16 * 3, 4)).astype(np.float32))
    images = rng.uniform(size=(N, 16, 16, 3)).astype(np.float32)
    pred = predict_logits(_linear, params, images).argmax(-1)
    wrong = (pred + 1 + rng.integers(0, 3, N)) % 4
    labels = np.where(rng.uniform(size=N) < 0.5, pred, wrong).astype(np.int32)
    assert set(labels[pred == labels].tolist()) == {0, 1, 2, 3}
    return _linear, params, images, labels


def _ce(logits, labels):
    return cross_entropy(jnp.asarray(logits), jnp.asarray(labels))


def test_scan_reads_one_batch_at_a_time_in_source_order(model_and_data):
    model_fn, params, images, labels = model_and_data
    source = CountingSource(images, labels)
    seen = list(scan_logits(source, model_fn, params, batch=BATCH))
    assert source.reads == [64, 64, 64, 64, 44]
    idx = np.concatenate([s[0] for s in seen])
    assert np.array_equal(idx, np.arange(N))
    logits = np.concatenate([s[3] for s in seen])
    # the same batches as predict_logits over the whole split: equal bit for bit
    assert np.array_equal(logits, predict_logits(model_fn, params, images, BATCH))


@pytest.mark.parametrize("limit", [None, 1, 20, 10_000])
def test_first_correct_equals_the_whole_split_selection_and_stops_early(model_and_data,
                                                                        limit):
    model_fn, params, images, labels = model_and_data
    source = CountingSource(images, labels)
    got = first_correct(source, model_fn, params, limit=limit, prepare=lambda x: 2 * x - 1,
                        batch=BATCH)
    pred = predict_logits(model_fn, params, 2 * images - 1, BATCH).argmax(-1)
    want = np.flatnonzero(pred == labels)[:limit]
    assert np.array_equal(got, want)
    assert max(source.reads) <= BATCH
    correct = np.flatnonzero(pred == labels)
    if limit is None or limit > len(correct):        # every image read
        assert sum(source.reads) == N
    else:                                            # up to the batch of the limit-th one
        assert len(source.reads) == correct[limit - 1] // BATCH + 1


def test_lowest_loss_correct_equals_select_references(model_and_data):
    model_fn, params, images, labels = model_and_data
    source = CountingSource(images, labels)
    classes, ce, index = lowest_loss_correct(source, model_fn, params, _ce, batch=BATCH)
    assert max(source.reads) <= BATCH
    refs, want_cls, want_ce, want_idx = select_references(model_fn, params, images, labels)
    assert np.array_equal(classes, np.asarray(want_cls))
    assert np.array_equal(index, np.asarray(want_idx))
    # the same rows' CE; per-row reductions over K = 4 logits (a few ulps at most)
    np.testing.assert_allclose(ce, np.asarray(want_ce), rtol=1e-6, atol=1e-7)
    assert np.array_equal(images[index], np.asarray(refs))


def test_lowest_loss_correct_leaves_out_classes_without_a_correct_image(model_and_data):
    model_fn, params, images, labels = model_and_data
    pred = predict_logits(model_fn, params, images).argmax(-1)
    relabelled = labels.copy()
    relabelled[labels == 2] = (pred[labels == 2] + 1) % 4   # class 2: never correct
    relabelled[relabelled == 2] = 0
    classes, _, index = lowest_loss_correct(ArraySource(images, relabelled), model_fn,
                                            params, _ce, batch=BATCH)
    assert 2 not in classes.tolist() and len(classes) >= 2
    assert np.all(pred[index] == relabelled[index])


def test_detect_reads_its_splits_in_batches(monkeypatch, tmp_path):
    """`connectivity detect` on the shipped digits model: no read larger than a scan batch
    except the selected clean images and the references."""
    from lst_jax.data import sources
    from lst_jax.jobs.connectivity.job import DetectRunConfig, detect_model_run

    reads = []
    get = sources.ArraySource.get

    def counting(self, indices):
        reads.append(len(indices))
        return get(self, indices)

    monkeypatch.setattr(sources.ArraySource, "get", counting)
    cfg = DetectRunConfig(num_samples=10, points=5, attacks=("pgd",),
                          reference_split="test")
    out = detect_model_run("digits_resnet-normal", cfg, tmp_path, progress=False)
    assert out["n_clean"] == 10
    # the clean split until 10 correct images (one batch of 256 read) and those 10 images;
    # then the reference split whole (297 images) and the 10 class references
    assert reads == [256, 10, 256, 41, 10], reads
