"""Shared layers. `Conv` is `flax.linen.Conv` with an input-gradient rule that XLA:CPU runs
fast inside loops.

Why: differentiated inside a `lax.scan`/`while` body (the LST loop, PGD), XLA:CPU keeps the
input-gradient convolution with a kernel in `01oi` layout, which misses the Eigen fast path
and runs ~6x slower than the same gradient outside a loop. `conv_nhwc` has a custom VJP that
computes the input gradient as a convolution with an explicitly flipped and transposed
(`HWIO`) kernel; values are identical to `lax.conv_general_dilated`'s own transpose rule
(tests/test_layers.py). Measured in experiments/benchmark_lst.py and docs/benchmarks.md.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

_DN = ("NHWC", "HWIO", "NHWC")


def _pads(padding, in_hw, kernel_hw, strides):
    if isinstance(padding, str):
        return lax.padtype_to_pads(in_hw, kernel_hw, strides, padding)
    return [tuple(p) for p in padding]


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def conv_nhwc(lhs, rhs, strides, padding):
    """2-D convolution, NHWC input, HWIO kernel, no dilation, one feature group.

    Shape:
        lhs: (B, H, W, Cin), rhs: (kh, kw, Cin, Cout) -> (B, H', W', Cout).
    """
    return lax.conv_general_dilated(lhs, rhs, strides, padding, dimension_numbers=_DN)


def _conv_fwd(lhs, rhs, strides, padding):
    return conv_nhwc(lhs, rhs, strides, padding), (lhs, rhs)


def _conv_bwd(strides, padding, res, g):
    lhs, rhs = res
    k = rhs.shape[:2]
    pads = _pads(padding, lhs.shape[1:3], k, strides)
    out_dilated = [1 + s * (o - 1) for s, o in zip(strides, g.shape[1:3])]
    before = [kk - lo - 1 for kk, (lo, _) in zip(k, pads)]
    after = [i + kk - 1 - o - b for i, kk, o, b in zip(lhs.shape[1:3], k, out_dilated, before)]
    rhs_t = jnp.flip(rhs, (0, 1)).transpose(0, 1, 3, 2)
    grad_lhs = lax.conv_general_dilated(g, rhs_t, (1, 1), list(zip(before, after)),
                                        lhs_dilation=strides, dimension_numbers=_DN)
    _, vjp_rhs = jax.vjp(lambda r: lax.conv_general_dilated(
        lhs, r, strides, padding, dimension_numbers=_DN), rhs)
    return grad_lhs, vjp_rhs(g)[0]


conv_nhwc.defvjp(_conv_fwd, _conv_bwd)


def fast_conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None,
                              rhs_dilation=None, dimension_numbers=None,
                              feature_group_count=1, precision=None, **kw):
    """Drop-in for `lax.conv_general_dilated` (as called by flax.linen.Conv) that routes
    plain 2-D NHWC convolutions through `conv_nhwc`, everything else to lax."""
    plain = (lhs.ndim == 4 and feature_group_count == 1 and precision is None and not kw
             and all(d == 1 for d in (lhs_dilation or (1, 1)))
             and all(d == 1 for d in (rhs_dilation or (1, 1)))
             and lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
             == lax.conv_dimension_numbers(lhs.shape, rhs.shape, _DN))
    if plain:
        return conv_nhwc(lhs, rhs, tuple(window_strides),
                         padding if isinstance(padding, str) else tuple(map(tuple, padding)))
    return lax.conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation,
                                    rhs_dilation, dimension_numbers, feature_group_count,
                                    precision=precision, **kw)


Conv = functools.partial(nn.Conv, conv_general_dilated=fast_conv_general_dilated)
