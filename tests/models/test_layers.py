"""The fast convolution formulations give the values of lax's own rules (to round-off)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from lst_jax.models import layers
from lst_jax.models.layers import fast_conv_general_dilated
from tolerances import assert_close_to_float64, reduction_atol

DN = ("NHWC", "HWIO", "NHWC")


@pytest.mark.parametrize("shape,kernel,strides,padding,kinds", [
    ((2, 9, 9, 5), (3, 3), (1, 1), ((1, 1), (1, 1)), ("lax", "lax")),
    ((2, 9, 9, 5), (3, 3), (1, 1), "SAME", ("lax", "lax")),
    ((2, 9, 9, 5), (3, 3), (2, 2), ((1, 1), (1, 1)), ("im2col", "col2im")),
    ((2, 10, 10, 5), (3, 3), (2, 2), ((1, 1), (1, 1)), ("im2col", "col2im")),
    ((2, 9, 9, 5), (3, 3), (2, 2), ((0, 1), (1, 0)), ("im2col", "col2im")),
    ((2, 9, 7, 5), (7, 7), (2, 2), ((3, 3), (3, 3)), ("im2col", "col2im")),
    ((2, 1, 1, 5), (3, 3), (1, 1), ((1, 1), (1, 1)), ("im2col", "col2im")),
    ((1, 8, 8, 5), (3, 3), (1, 1), ((1, 1), (1, 1)), ("lax", "lax")),
    ((1, 8, 8, 256), (3, 3), (1, 1), ((1, 1), (1, 1)), ("im2col", "col2im")),
    ((2, 8, 8, 5), (1, 1), (2, 2), "VALID", ("dot1x1", "dot1x1")),
    ((2, 9, 9, 5), (1, 1), (2, 2), "VALID", ("dot1x1", "dot1x1")),
    ((2, 9, 9, 5), (1, 1), (1, 1), "VALID", ("dot1x1", "dot1x1")),
    ((2, 16, 16, 3), (4, 4), (4, 4), "VALID", ("patchify", "patchify")),
    ((2, 12, 12, 3), (3, 3), (1, 1), ((1, 1), (1, 1)), ("fma", "col2im")),
    ((2, 13, 11, 3), (5, 5), (2, 2), ((2, 2), (2, 2)), ("im2col", "col2im")),
    ((2, 16, 16, 3), (5, 5), (1, 1), ((2, 2), (2, 2)), ("lax", "lax")),
])
def test_fast_conv_matches_lax(shape, kernel, strides, padding, kinds):
    pads = layers._pads(padding, shape[1:3], kernel, strides)
    w_shape = kernel + (shape[-1], 6)
    assert (layers._kind(shape, w_shape, strides, pads, "fwd"),
            layers._kind(shape, w_shape, strides, pads, "bwd")) == kinds
    rng = np.random.default_rng(0)   # numpy: eager jax.random compiles slowly on loaded CPUs
    x = jnp.asarray(rng.standard_normal(shape), jnp.float32)
    w = jnp.asarray(rng.standard_normal(kernel + (shape[-1], 6)), jnp.float32)
    ref = lambda x, w: lax.conv_general_dilated(x, w, strides, padding, dimension_numbers=DN)
    new = lambda x, w: fast_conv_general_dilated(x, w, strides, padding, dimension_numbers=DN)
    out = jax.eval_shape(ref, x, w)
    ct = jnp.asarray(rng.standard_normal(out.shape), jnp.float32)
    # One jitted program per formulation: value and both gradients.
    run = jax.jit(lambda f, x, w, ct: (f(x, w), jax.vjp(f, x, w)[1](ct)), static_argnums=0)
    out_ref, g_ref = run(ref, x, w, ct)
    out_new, g_new = run(new, x, w, ct)
    np.testing.assert_allclose(out_new, out_ref, atol=1e-5, rtol=1e-5)
    for a, b in zip(g_new, g_ref):
        np.testing.assert_allclose(a, b, atol=1e-4, rtol=1e-5)


def test_other_convolutions_fall_back_to_lax():
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.standard_normal((1, 8, 8, 4)), jnp.float32)
    w = jnp.asarray(rng.standard_normal((3, 3, 2, 4)), jnp.float32)
    got = fast_conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=DN,
                                    feature_group_count=2)
    want = lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=DN,
                                    feature_group_count=2)
    np.testing.assert_array_equal(got, want)


def test_attention_matches_einsum_reference_and_flax():
    import flax.linen as nn

    rng = np.random.default_rng(2)
    q, k, v = (jnp.asarray(rng.standard_normal((2, 5, 3, 4)), jnp.float32) for _ in range(3))

    def ref(q, k, v):
        att = jax.nn.softmax(jnp.einsum("bqhd,bkhd->bhqk", q / 2.0, k), axis=-1)
        return jnp.einsum("bhqk,bkhd->bqhd", att, v)

    ct = jnp.asarray(rng.standard_normal(q.shape), jnp.float32)
    got, vjp_got = jax.vjp(layers.dot_product_attention, q, k, v)
    want, vjp_want = jax.vjp(ref, q, k, v)
    with jax.enable_x64(True):                  # the reference's own float32 round-off
        want64 = np.asarray(ref(*(jnp.asarray(np.asarray(t), jnp.float64) for t in (q, k, v))))
    assert_close_to_float64(want, want64, got, what="attention")
    for a, b in zip(vjp_got(ct), vjp_want(ct)):
        np.testing.assert_allclose(a, b, atol=1e-5)
    # As flax's attention_fn: same outputs as flax's default with the same parameters.
    x = jnp.asarray(rng.standard_normal((2, 5, 12)), jnp.float32)
    fast = nn.MultiHeadDotProductAttention(num_heads=3, attention_fn=layers.flax_attention_fn)
    slow = nn.MultiHeadDotProductAttention(num_heads=3)
    params = slow.init(jax.random.key(0), x, x)
    np.testing.assert_allclose(fast.apply(params, x, x), slow.apply(params, x, x), atol=1e-5)
    with pytest.raises(ValueError, match="mask"):
        fast.apply(params, x, x, mask=jnp.ones((2, 3, 5, 5), bool))


@pytest.mark.parametrize("shape,window,strides,pads", [
    ((2, 9, 8, 3), (3, 3), (2, 2), ((1, 1), (1, 1))),     # ResNet stem pool
    ((2, 10, 11, 4), (3, 3), (2, 2), ((0, 1), (0, 2))),   # ceil-mode overhang
    ((1, 7, 7, 5), (3, 3), (1, 1), ((1, 1), (1, 1))),     # GoogLeNet branch4
    ((2, 5, 6, 2), (2, 2), (2, 2), ((0, 1), (0, 0))),
])
def test_max_pool_matches_flax_values_and_input_gradient(shape, window, strides, pads):
    import flax.linen as nn

    x = jnp.asarray(np.random.default_rng(0).normal(size=shape).astype(np.float32))
    want, vjp_want = jax.vjp(lambda x: nn.max_pool(x, window, strides, pads), x)
    got, vjp_got = jax.vjp(lambda x: layers.max_pool(x, window, strides, pads), x)
    np.testing.assert_array_equal(got, want)       # a max is exact in any order
    g = jnp.asarray(np.random.default_rng(1).normal(size=want.shape).astype(np.float32))
    # the input gradient sums the cotangents of the windows that share an input pixel, in an
    # order that may differ: Higham's bound for that many terms of at most max |g|
    shared = int(np.prod([-(-w // s) for w, s in zip(window, strides)]))
    np.testing.assert_allclose(vjp_got(g)[0], vjp_want(g)[0], rtol=0,
                               atol=reduction_atol(shared * float(jnp.max(jnp.abs(g))), shared))
