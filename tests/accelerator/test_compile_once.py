"""Compile once (issue 20): the programs a job builds are a bounded, stated number that does
not depend on the data, counted with the public `lst_jax.utils.compiles.compile_count()`.

Programs are matched by the jitted function's name (module names such as "jit__run_jit"), so
the small eager helpers around them are not counted against the model programs."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from lst_jax.connectivity import BypassConfig, ConnectConfig, connect, path_losses
from lst_jax.connectivity import optimize as opt_mod
from lst_jax.utils.compiles import compile_count, ladder_size
from subproc import fast_tiny_cnn

SHAPE = (8, 8, 3)


def _images(n, seed=0):
    return np.random.default_rng(seed).uniform(size=(n,) + SHAPE).astype(np.float32)


def test_compile_count_counts_programs():
    f = jax.jit(lambda x: x * 2)
    x, y = jax.device_put(np.ones(3, np.float32)), jax.device_put(np.ones(4, np.float32))
    with compile_count() as c:
        f(x), f(x), f(y)
    assert c.matching("lambda") == 2 and c.total >= 2 and c.seconds > 0


def test_ladder_sizes():
    sizes = [ladder_size(n) for n in range(1, 65)]
    assert all(s >= n and s <= max(1.5 * n, n + 1) for n, s in zip(range(1, 65), sizes))
    assert len(set(sizes)) <= 2 * 6 + 1


def test_path_losses_of_different_row_counts_share_a_program():
    """9, 10, 11 and 12 pairs: one evaluation program (all padded to 12 rows), the same
    numbers as row by row; 6, 12 and 18 pairs: the ladder sizes 6, 12, 24, three programs."""
    model, params = fast_tiny_cnn(0, SHAPE, 10)
    a, c = _images(18, 1), _images(18, 2)
    y = np.arange(18) % 10
    with compile_count() as cnt:
        out = [np.asarray(path_losses(model, params, a[:n], c[:n], y[:n], num_points=9))
               for n in (9, 10, 11, 12)]
    assert cnt.matching("_evaluate_jit") == 1
    for o in out:
        np.testing.assert_array_equal(o, out[-1][:len(o)])
    with compile_count() as cnt:
        for n in (6, 12, 18):
            path_losses(model, params, a[:n], c[:n], y[:n], num_points=9)
    assert cnt.matching("_evaluate_jit") == 2        # 12 is compiled already: 6 and 24


def test_compacting_optimizer_compiles_at_most_the_ladder():
    """12 rows stopping at many different steps, compacted on the ladder 12, 8, 4, 2: at most
    4 loop programs and 3 compactions; other thresholds (other stopping steps) compile none."""
    tiny, params = fast_tiny_cnn(0, SHAPE, 10, logit_scale=10.0)
    # A model function of this test's own (a new object: a new key of the jit caches), so the
    # count does not depend on which tests ran before in this process.
    model = lambda p, x: tiny(p, x)  # noqa: E731
    x0, y = _images(12, 7), np.arange(12) % 10
    cfg = opt_mod.OptimizerConfig(steps=30, stop="post_step", keep_best=True, record=True,
                                  lr=0.05, weight_decay=1e-3, tv_weight=1e-4)
    kw = dict(anchor=np.zeros_like(x0), min_batch=2)
    ladder = opt_mod._ladder(12, 2)
    assert ladder == [12, 8, 4, 2]
    with compile_count() as first:
        r1 = opt_mod.run_batches(model, params, x0, y, cfg.static,
                                 cfg.replace(threshold=np.linspace(0.2, 2.5, 12)).hyper(12),
                                 **kw)
    assert len(set(r1.steps.tolist())) > 4                  # rows really stop apart
    assert 1 <= first.matching("_run_jit") <= len(ladder)
    assert first.matching("_compact_jit") <= len(ladder) - 1
    with compile_count() as again:
        opt_mod.run_batches(model, params, x0[::-1].copy(), y, cfg.static,
                            cfg.replace(threshold=np.linspace(2.5, 0.2, 12)).hyper(12), **kw)
    assert again.matching("_run_jit") + again.matching("_compact_jit") \
        <= len(ladder) - first.matching("_run_jit") + len(ladder) - 1 \
        - first.matching("_compact_jit")


def _bump_model(params, x):
    """Class 0 everywhere except two Gaussian bumps of class 1 next to the diagonal (the
    analytic toy of tests/connectivity/test_connectivity.py): a path from 0 to t * ones crosses a
    barrier
    at 0.3 and one at 0.7 where it reaches them."""
    z = x.reshape(x.shape[0], -1)
    bump = 0.0
    for m, h in ((params["m1"], params["h1"]), (params["m2"], params["h2"])):
        bump = bump + h * jnp.exp(-jnp.sum((z - m[None]) ** 2, axis=1) / (2 * 0.3 ** 2))
    return jnp.stack([jnp.full_like(bump, 6.0), bump], axis=-1)


def test_connect_compiles_one_optimizer_program_over_rounds():
    """connect on 6 pairs, 2 rounds of bypassing, two sets of pairs: the barrier points per
    round differ (5 per round; 6 per round), yet the bypass optimiser compiles one loop program
    (chunks of exactly 6 rows; a 6-row chunk's ladder is [6]) and the path losses at most the
    ladder sizes of 6..24 rows (6, 12, 24)."""
    u = np.zeros(16, np.float32)
    u[0], u[1] = 1 / np.sqrt(2), -1 / np.sqrt(2)
    ones = np.ones(16, np.float32)
    params = dict(m1=0.3 * ones + 0.1 * u, m2=0.7 * ones + 0.1 * u, h1=np.float32(10.0),
                  h2=np.float32(6.0))
    img = lambda t: np.full((4, 4, 1), t, np.float32)
    sets = ([(0, 1), (0, 1), (0, 0.5), (0, 0.5), (0.9, 1), (0, 1)], [(0, 1)] * 6)
    counts = []
    with compile_count() as cnt:
        for pairs in sets:
            a = np.stack([img(s) for s, _ in pairs])
            c = np.stack([img(e) for _, e in pairs])
            res = connect(_bump_model, params, a, c, np.zeros(6, int), config=ConnectConfig(
                points=51, segment_points=51, threshold=1e-3, max_depth=2,
                bypass=BypassConfig(lr=0.05, steps=200)))
            counts.append(np.bincount(np.asarray(res.optimized_round), minlength=2).tolist())
    assert len({n for cs in counts for n in cs}) >= 2, counts   # different numbers of points
    assert cnt.matching("_run_jit") == 1
    assert cnt.matching("_evaluate_jit") <= 3


def test_pgd_radius_sweep_is_one_program():
    """eps and step size are traced: four radii run one PGD program (steps stays static, the
    scan's length); the results still change with the radius."""
    from lst_jax.robustness import PGDAttackConfig, pgd_accuracy
    from lst_jax.robustness.accuracy import pgd_examples

    model, params = fast_tiny_cnn(0, SHAPE, 10, logit_scale=10.0)
    x, y = _images(8, 5), np.arange(8) % 10
    key = jax.random.key(0)
    with compile_count() as cnt:
        advs = [pgd_examples(model, params, x, y, key=key,
                             config=PGDAttackConfig(eps=e, steps=3))
                for e in (1 / 255, 2 / 255, 4 / 255, 8 / 255)]
    assert cnt.matching("_apply") == 1
    dist = [float(np.abs(a - x).max()) for a in advs]
    assert dist == sorted(dist) and dist[-1] > dist[0]
    assert all(d <= e + 1e-6 for d, e in zip(dist, (1 / 255, 2 / 255, 4 / 255, 8 / 255)))
    with compile_count() as cnt:
        for e in (3 / 255, 16 / 255):
            pgd_accuracy(model, params, x, y, key=key, config=PGDAttackConfig(eps=e, steps=3))
    assert cnt.matching("_apply") == 1             # the accuracy variant: one more program
