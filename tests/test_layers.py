"""The loop-friendly convolution gives exactly the values of lax's own rules."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from lst_jax.models.layers import fast_conv_general_dilated

DN = ("NHWC", "HWIO", "NHWC")


@pytest.mark.parametrize("shape,kernel,strides,padding", [
    ((2, 9, 9, 5), (3, 3), (1, 1), ((1, 1), (1, 1))),
    ((2, 9, 9, 5), (3, 3), (2, 2), ((1, 1), (1, 1))),
    ((2, 10, 10, 5), (3, 3), (2, 2), ((1, 1), (1, 1))),
    ((2, 8, 8, 5), (1, 1), (2, 2), "VALID"),
    ((2, 16, 16, 3), (4, 4), (4, 4), "VALID"),
    ((2, 9, 7, 5), (7, 7), (2, 2), ((3, 3), (3, 3))),
    ((2, 9, 9, 5), (3, 3), (1, 1), "SAME"),
])
def test_fast_conv_matches_lax(shape, kernel, strides, padding):
    k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
    x = jax.random.normal(k1, shape)
    w = jax.random.normal(k2, kernel + (shape[-1], 6))
    ref = lambda x, w: lax.conv_general_dilated(x, w, strides, padding, dimension_numbers=DN)
    new = lambda x, w: fast_conv_general_dilated(x, w, strides, padding, dimension_numbers=DN)
    np.testing.assert_allclose(new(x, w), ref(x, w), atol=1e-5)
    out = ref(x, w)
    ct = jax.random.normal(k3, out.shape)
    g_ref = jax.vjp(ref, x, w)[1](ct)
    g_new = jax.vjp(new, x, w)[1](ct)
    for a, b in zip(g_new, g_ref):
        np.testing.assert_allclose(a, b, atol=1e-4, rtol=1e-5)


def test_other_convolutions_fall_back_to_lax():
    x = jax.random.normal(jax.random.key(0), (1, 8, 8, 4))
    w = jax.random.normal(jax.random.key(1), (3, 3, 2, 4))
    got = fast_conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=DN,
                                    feature_group_count=2)
    want = lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=DN,
                                    feature_group_count=2)
    np.testing.assert_array_equal(got, want)
