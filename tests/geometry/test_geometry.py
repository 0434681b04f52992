"""Barycentric grids, hull statistics (hand-computed case), chunked evaluator, paths,
triangle embedding and path widths."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import tiny_cnn
from lst_jax.geometry import (
    WidthConfig,
    embed_grid,
    hull_confidences,
    linear_path_confidences,
    multi_hull_confidences,
    path_widths,
    per_source_statistics,
    round_pairs,
    triangle_embedding,
    triangle_grid,
    triangle_statistics,
    width_directions,
)
from lst_jax.geometry.probes import class_confidence
from lst_jax.geometry.widths import unit_orthogonal_vector
from lst_jax.utils.compiles import compile_count
from tolerances import float64_atol, reduction_atol

SHAPE = (16, 16, 3)


@pytest.fixture(scope="module")
def model():
    return tiny_cnn(0, SHAPE, logit_scale=10.0)


def _images(n, seed):
    return jax.random.uniform(jax.random.key(seed), (n,) + SHAPE)


def _conf_atol(model_fn, params, images, labels):
    """Tolerance for class confidences of `images` computed by another program (other batch
    size or chunking: another float32 summation order in the convolutions, as on another
    CPU): from their float32 error against the same model in float64 (tests/tolerances.py)."""
    c32 = np.asarray(class_confidence(model_fn, params, images, labels))
    with jax.enable_x64(True):
        p64 = jax.tree.map(lambda v: np.asarray(v, np.float64), params)
        logits = model_fn(p64, jnp.asarray(np.asarray(images), jnp.float64))
        c64 = np.asarray(jax.nn.softmax(logits, -1))[np.arange(len(c32)), np.asarray(labels)]
    assert c64.dtype == np.float64
    return float64_atol(c32, c64)


def test_reference_grid_has_64_points_and_exact_has_66():
    g = triangle_grid()
    assert g.num_points == 64 and g.kind == "reference" and g.n == 10
    pts = {tuple(np.round(t, 6)) for t in g.t}
    assert (0.8, 0.2) not in pts and (0.9, 0.1) not in pts and (0.7, 0.3) in pts
    assert g.leg1.sum() == 11 and g.leg2.sum() == 11
    assert tuple(g.t[g.source]) == (0.0, 0.0)
    np.testing.assert_allclose(g.weights.sum(1), 1.0, atol=1e-6)
    # Reference order: t1 outer, t2 inner.
    assert tuple(g.t[1]) == (0.0, 0.1) and tuple(g.t[11]) == (0.1, 0.0)
    e = triangle_grid(kind="exact")
    assert e.num_points == 66 and e.leg1.sum() == 11 and e.leg2.sum() == 11
    assert triangle_grid(kind="exact", n=20).num_points == 231
    assert triangle_grid(kind="reference", n=4).leg1.sum() == 5
    with pytest.raises(ValueError, match="grid must be one of"):
        triangle_grid(kind="fine")
    with pytest.raises(ValueError, match="resolution n"):
        triangle_grid(kind="exact", n=0)
    assert round_pairs(5)[:4] == [(0, 1), (0, 2), (0, 3), (0, 4)] and len(round_pairs(5)) == 10
    with pytest.raises(ValueError, match="rounds"):
        round_pairs(1)


def test_triangle_statistics_hand_computed():
    # n = 2 grid: points (t1, t2) = (0,0) (0,.5) (0,1) (.5,0) (.5,.5) (1,0).
    g = triangle_grid(kind="reference", n=2)
    assert [tuple(t) for t in g.t] == [(0, 0), (0, .5), (0, 1), (.5, 0), (.5, .5), (1, 0)]
    conf = np.array([0.8, 0.8, 0.65, 0.9, 0.55, 0.75], np.float32)
    s = np.asarray(triangle_statistics(conf, grid=g))
    expected = [
        0.8,                      # p_src
        4.45 / 6,                 # mean of all 6 points
        1 / 6,                    # > 0.8 strictly: only 0.9 (the 0.8s, source included, fail)
        4 / 6,                    # > 0.7
        5 / 6,                    # > 0.6
        6 / 6,                    # > 0.5
        (0.8 + 0.9 + 0.75 + 0.8 + 0.8 + 0.65) / 6,   # legs concatenated, source twice
        0.65 - 0.8,               # min over legs of conf - p_src
    ]
    np.testing.assert_allclose(s, expected, atol=1e-6)
    # Batched: (B, T, P) -> (B, T, 8); per source: mean of the first 7, min of edge_min.
    tri = np.asarray(triangle_statistics(np.stack([[conf, conf * 0.5]]), grid=g))
    assert tri.shape == (1, 2, 8)
    per = np.asarray(per_source_statistics(tri))
    np.testing.assert_allclose(per[0, :7], tri[0, :, :7].mean(0), atol=1e-7)
    assert per[0, 7] == tri[0, :, 7].min()


def _reference_stats(conf, g):
    """Table-2 statistics written out from the spec's prose (lst.md 3.4), in numpy."""
    p = conf[g.source]
    fr = [(conf > p - d).mean() for d in (0.0, 0.1, 0.2, 0.3)]
    legs = np.concatenate([conf[g.leg1], conf[g.leg2]])
    return [p, conf.mean(), *fr, legs.mean(), min((conf[g.leg1] - p).min(),
                                                 (conf[g.leg2] - p).min())]


def test_hull_confidences_vertices_multi_and_stats(model):
    model_fn, params = model
    xs, x1, x2 = _images(3, 1), _images(3, 2), _images(3, 3)
    labels = jnp.argmax(model_fn(params, xs), -1)
    g = triangle_grid()
    conf = np.asarray(hull_confidences(model_fn, params, xs, x1, x2, labels, grid=g,
                                       batch_size=50))
    assert conf.shape == (3, 64)
    tol = max(_conf_atol(model_fn, params, x, labels) for x in (xs, x1, x2))
    # Grid vertices reproduce the three images exactly.
    for img, idx in ((xs, g.source), (x1, int(np.flatnonzero(g.t[:, 0] == 1)[0])),
                     (x2, int(np.flatnonzero(g.t[:, 1] == 1)[0]))):
        np.testing.assert_allclose(conf[:, idx], class_confidence(model_fn, params, img, labels),
                                   atol=tol)
    stats = np.asarray(triangle_statistics(conf, grid=g))
    for b in range(3):             # means of 64 (legs: 22) confidences, in another order
        np.testing.assert_allclose(stats[b], _reference_stats(conf[b], g),
                                   atol=reduction_atol(np.sum(conf[b]), 64) / 22 + 1e-7)
    # All round pairs in one evaluation equal the per-triangle evaluations.
    outs = jnp.stack([x1, x2, _images(3, 4)])
    multi = np.asarray(multi_hull_confidences(model_fn, params, xs, outs, labels, grid=g,
                                              batch_size=64))
    assert multi.shape == (3, 3, 64)
    for t, (r1, r2) in enumerate(round_pairs(3)):
        one = hull_confidences(model_fn, params, xs, outs[r1], outs[r2], labels, grid=g)
        np.testing.assert_allclose(multi[:, t], one, atol=tol)
    with pytest.raises(ValueError, match="points per triangle"):
        triangle_statistics(conf[:, :10], grid=g)


def test_chunked_evaluator_compiles_once_and_ignores_chunking(model):
    model_fn, params = model
    xs, x1, x2 = _images(2, 5), _images(2, 6), _images(2, 7)
    labels = jnp.array([1, 2])
    a = hull_confidences(model_fn, params, xs, x1, x2, labels, batch_size=32)
    with compile_count() as count:
        b = hull_confidences(model_fn, params, x2, xs, x1, labels, batch_size=32)
    assert count.matching("_evaluate_jit") == 0
    c = hull_confidences(model_fn, params, xs, x1, x2, labels, batch_size=128)
    tol = max(_conf_atol(model_fn, params, x, labels) for x in (xs, x1, x2))
    np.testing.assert_allclose(a, c, atol=tol)
    assert not np.allclose(a, b)
    # A custom evaluator (e.g. a sharded one) plugs in as evaluate_fn.
    calls = []

    def eager(model_fn_, params_, probe_fn, data, total):
        calls.append(total)
        imgs, labs = probe_fn(data, jnp.arange(total))
        return class_confidence(model_fn_, params_, imgs, labs)

    d = hull_confidences(model_fn, params, xs, x1, x2, labels, evaluate_fn=eager)
    assert calls == [2 * 64]
    np.testing.assert_allclose(a, d, atol=tol)


def test_linear_paths_and_embedding(model):
    model_fn, params = model
    xs, xe = _images(2, 8), _images(2, 9)
    labels = jnp.array([3, 4])
    c = np.asarray(linear_path_confidences(model_fn, params, xs, xe, labels, num_points=11))
    assert c.shape == (2, 11)
    np.testing.assert_allclose(c[:, 0], class_confidence(model_fn, params, xs, labels),
                               atol=_conf_atol(model_fn, params, xs, labels))
    np.testing.assert_allclose(c[:, -1], class_confidence(model_fn, params, xe, labels),
                               atol=_conf_atol(model_fn, params, xe, labels))
    with pytest.raises(ValueError, match="num_points"):
        linear_path_confidences(model_fn, params, xs, xe, labels, num_points=1)
    # score="log_prob": the log-softmax of the label (minus the cross-entropy), same probes.
    lp = np.asarray(linear_path_confidences(model_fn, params, xs, xe, labels, num_points=11,
                                            score="log_prob"))
    np.testing.assert_allclose(lp, np.log(c), atol=1e-5)
    with pytest.raises(ValueError, match="score must be one of"):
        linear_path_confidences(model_fn, params, xs, xe, labels, num_points=11, score="logit")
    # The 2-D embedding preserves the ratios of all three side lengths.
    x0, x1, x2 = xs[0], xe[0], xs[1]
    co = np.asarray(triangle_embedding(x0, x1, x2))
    d = lambda a, b: float(jnp.linalg.norm(a - b))
    sides_img = np.array([d(x0, x1), d(x0, x2), d(x1, x2)])
    sides_2d = np.array([np.linalg.norm(co[0] - co[1]), np.linalg.norm(co[0] - co[2]),
                         np.linalg.norm(co[1] - co[2])])
    np.testing.assert_allclose(sides_2d / sides_2d[0], sides_img / sides_img[0], rtol=1e-4)
    assert co[2, 1] >= 0 and np.allclose(co[:2], [[0, 0], [1, 0]])
    pts = np.asarray(embed_grid(co, grid=triangle_grid()))
    assert pts.shape == (64, 2)
    assert np.isnan(np.asarray(triangle_embedding(x0, x0, x2))).all()


def test_path_widths(model):
    model_fn, params = model
    x, t = _images(3, 10), _images(3, 11)
    labels = jnp.argmax(model_fn(params, x), -1)
    d = width_directions(model_fn, params, x, t, labels)
    np.testing.assert_allclose(jnp.sqrt(jnp.sum(d * d, axis=(1, 2, 3))), 1.0, atol=1e-5)
    u = unit_orthogonal_vector(jax.random.key(0), d[0])
    assert abs(float(jnp.vdot(u, d[0]))) < 1e-5 and abs(float(jnp.linalg.norm(u)) - 1) < 1e-5
    d = d.at[2].set(0.0)                                   # a zero direction is unmeasured
    conf = class_confidence(model_fn, params, x, labels)
    gate = float(jnp.sort(conf)[0]) + 1e-6                 # the least confident is gated out
    cfg = WidthConfig(radii=(0.5, 1.0, 2.0), num_dirs=16, gate=gate)
    res = path_widths(model_fn, params, x, d, labels, key=jax.random.key(1), config=cfg,
                      batch_size=40)
    w = np.asarray(res.widths)
    assert w.shape == (3, 4, 2)
    expected_mask = (np.asarray(conf) >= gate) & np.array([True, True, False])
    np.testing.assert_array_equal(np.asarray(res.mask), expected_mask)
    for b in range(3):
        if expected_mask[b]:
            assert np.all(w[b, :, 0] <= w[b, :, 1] + 1e-7)
            np.testing.assert_allclose(w[b, 0], conf[b], atol=1e-6)
        else:
            assert np.isnan(w[b]).all()
    again = path_widths(model_fn, params, x, d, labels, key=jax.random.key(1), config=cfg,
                        batch_size=40)
    np.testing.assert_array_equal(np.asarray(again.widths), w)
    with pytest.raises(ValueError, match="radii"):
        WidthConfig(radii=())
