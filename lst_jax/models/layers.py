"""Shared layers. `Conv` is `flax.linen.Conv` computed with the formulations XLA:CPU runs
fastest, forward and input gradient chosen separately.

Why: LST spends all its time in one forward and one input-gradient pass per iteration,
inside a `lax.scan`. XLA:CPU's own convolution (Eigen or YNNPACK) is fast for mid-size
maps and channel counts, but
- differentiated inside a loop body, it keeps the input-gradient convolution with a kernel in
  `01oi` layout, which misses the fast path and runs ~6x slower than outside a loop;
- with 3 input channels (every stem) it reaches ~4 GFLOP/s, and on small maps (a ResNet's last
  stage, 1x1 to 7x7 pixels) it drops to 1-25 GFLOP/s, where a matrix product of the same
  numbers runs at 20-70 GFLOP/s.

`conv_nhwc` therefore has a custom VJP and picks, from static shapes only:

| case | forward | input gradient |
|---|---|---|
| 1x1 kernel, no padding | matrix product of the (strided) pixels | matrix product, scattered back |
| patch embedding (stride = kernel, no padding) | patches reshaped, matrix product | matrix product, patches reshaped back |
| <= `tiny_cin` input channels, <= 3x3 kernel (stems) | broadcast multiply-adds, one fused loop | matrix product to columns, then col2im (sum of shifted pads) |
| output map <= 49 pixels, or <= 64 pixels with >= 256 input channels | im2col matrix product | matrix product to columns, then col2im |
| otherwise | `lax.conv_general_dilated` | convolution with the explicitly flipped `HWIO` kernel |

All formulations compute the same sums in a different order: values agree with lax's own
rules to float32 round-off (tests/models/test_layers.py). The kernel gradient (training only) is
lax's. Measurements: experiments/benchmark.py and docs/benchmarks.md.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

_DN = ("NHWC", "HWIO", "NHWC")

# Formulation thresholds (see the module docstring); module-level so experiments can tune them.
POLICY = {"dot_1x1": True, "patchify": True, "tiny_cin": 4, "tiny_max_taps": 9,
          "im2col_max_out_hw": 49, "im2col_wide_max_out_hw": 64, "im2col_wide_min_cin": 256}


def _pads(padding, in_hw, kernel_hw, strides):
    if isinstance(padding, str):
        return lax.padtype_to_pads(in_hw, kernel_hw, strides, padding)
    return [tuple(p) for p in padding]


def _out_hw(in_hw, kernel_hw, strides, pads):
    return tuple((n + lo + hi - k) // s + 1
                 for n, k, s, (lo, hi) in zip(in_hw, kernel_hw, strides, pads))


def _kind(lhs_shape, rhs_shape, strides, pads, direction: str) -> str:
    """Which formulation computes this convolution ("fwd") or its input gradient ("bwd")."""
    kh, kw, cin, _ = rhs_shape
    no_pad = all(p == (0, 0) for p in pads)
    if POLICY["dot_1x1"] and (kh, kw) == (1, 1) and no_pad:
        return "dot1x1"
    if (POLICY["patchify"] and tuple(strides) == (kh, kw) and no_pad
            and lhs_shape[1] % kh == 0 and lhs_shape[2] % kw == 0):
        return "patchify"
    if cin <= POLICY["tiny_cin"] and kh * kw <= POLICY["tiny_max_taps"]:
        return "fma" if direction == "fwd" else "col2im"
    ho, wo = _out_hw(lhs_shape[1:3], (kh, kw), strides, pads)
    if ho * wo <= POLICY["im2col_max_out_hw"] or (
            ho * wo <= POLICY["im2col_wide_max_out_hw"] and cin >= POLICY["im2col_wide_min_cin"]):
        return "im2col" if direction == "fwd" else "col2im"
    return "lax"


def conv_nhwc(lhs, rhs, strides, padding):
    """2-D convolution, NHWC input, HWIO kernel, no dilation, one feature group.

    Forward and input gradient each use the formulation of the table in the module
    docstring (same values up to float32 summation order).

    Shape:
        lhs: (B, H, W, Cin), rhs: (kh, kw, Cin, Cout) -> (B, H', W', Cout).
    """
    strides = tuple(int(s) for s in strides)
    pads = tuple(tuple(int(v) for v in p)
                 for p in _pads(padding, lhs.shape[1:3], rhs.shape[:2], strides))
    return _conv(lhs, rhs, strides, pads)


# ----------------------------------------------------------------------------- forward
def _lax_conv(lhs, rhs, strides, pads):
    return lax.conv_general_dilated(lhs, rhs, strides, pads, dimension_numbers=_DN)


def _fwd_dot1x1(lhs, rhs, strides):
    x = lhs[:, ::strides[0], ::strides[1], :]
    return jnp.einsum("bhwc,cd->bhwd", x, rhs[0, 0])


def _patches(x, kh, kw):
    b, h, w, c = x.shape
    x = x.reshape(b, h // kh, kh, w // kw, kw, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(b, h // kh, w // kw, kh * kw * c)


def _fwd_patchify(lhs, rhs):
    kh, kw, cin, cout = rhs.shape
    return jnp.einsum("bhwk,kd->bhwd", _patches(lhs, kh, kw), rhs.reshape(kh * kw * cin, cout))


def _taps(x, kernel_hw, strides, out_hw):
    """The kh*kw shifted, strided views of a padded input, each (B, Ho, Wo, C)."""
    (kh, kw), (sh, sw), (ho, wo) = kernel_hw, strides, out_hw
    return [x[:, i:i + sh * (ho - 1) + 1:sh, j:j + sw * (wo - 1) + 1:sw, :]
            for i in range(kh) for j in range(kw)]


def _pad_input(lhs, pads):
    return jnp.pad(lhs, ((0, 0), pads[0], pads[1], (0, 0)))


def _fwd_im2col(lhs, rhs, strides, pads):
    kh, kw, cin, cout = rhs.shape
    out_hw = _out_hw(lhs.shape[1:3], (kh, kw), strides, pads)
    cols = jnp.concatenate(_taps(_pad_input(lhs, pads), (kh, kw), strides, out_hw), axis=-1)
    return jnp.einsum("bhwk,kd->bhwd", cols, rhs.reshape(kh * kw * cin, cout))


def _fwd_fma(lhs, rhs, strides, pads):
    """Sum over taps and input channels of (shifted input channel) x (kernel row): one fused
    elementwise loop, vectorised over the output channels."""
    kh, kw, cin, _ = rhs.shape
    out_hw = _out_hw(lhs.shape[1:3], (kh, kw), strides, pads)
    acc = None
    for t, x in enumerate(_taps(_pad_input(lhs, pads), (kh, kw), strides, out_hw)):
        i, j = divmod(t, kw)
        for c in range(cin):
            term = x[..., c:c + 1] * rhs[i, j, c].astype(x.dtype).reshape(1, 1, 1, -1)
            acc = term if acc is None else acc + term
    return acc


def _forward(lhs, rhs, strides, pads):
    kind = _kind(lhs.shape, rhs.shape, strides, pads, "fwd")
    if kind == "dot1x1":
        return _fwd_dot1x1(lhs, rhs, strides)
    if kind == "patchify":
        return _fwd_patchify(lhs, rhs)
    if kind == "fma":
        return _fwd_fma(lhs, rhs, strides, pads)
    if kind == "im2col":
        return _fwd_im2col(lhs, rhs, strides, pads)
    return _lax_conv(lhs, rhs, strides, pads)


# ----------------------------------------------------------------------------- input gradient
def _bwd_dot1x1(g, rhs, in_shape, strides):
    gx = jnp.einsum("bhwd,cd->bhwc", g, rhs[0, 0])
    if strides == (1, 1):
        return gx
    cfg = [(0, 0, 0)]
    for n, o, s in zip(in_shape[1:3], g.shape[1:3], strides):
        cfg.append((0, n - (s * (o - 1) + 1), s - 1))
    return lax.pad(gx, jnp.zeros((), gx.dtype), cfg + [(0, 0, 0)])


def _bwd_patchify(g, rhs, in_shape):
    kh, kw, cin, cout = rhs.shape
    b, h, w, _ = in_shape
    cols = jnp.einsum("bhwd,kd->bhwk", g, rhs.reshape(kh * kw * cin, cout))
    cols = cols.reshape(b, h // kh, w // kw, kh, kw, cin).transpose(0, 1, 3, 2, 4, 5)
    return cols.reshape(b, h, w, cin)


def _bwd_col2im(g, rhs, in_shape, strides, pads):
    """Columns = g @ kernel^T, then each tap's column block is added back at its shifted,
    strided position (a sum of pads, fused by XLA) and the padding is cropped."""
    kh, kw, cin, cout = rhs.shape
    b, ho, wo, _ = g.shape
    cols = jnp.einsum("bhwd,kd->bhwk", g, rhs.reshape(kh * kw * cin, cout))
    cols = cols.reshape(b, ho, wo, kh * kw, cin)
    hp = in_shape[1] + pads[0][0] + pads[0][1]
    wp = in_shape[2] + pads[1][0] + pads[1][1]
    (sh, sw) = strides
    zero = jnp.zeros((), g.dtype)
    acc = None
    for t in range(kh * kw):
        i, j = divmod(t, kw)
        cfg = [(0, 0, 0), (i, hp - i - (sh * (ho - 1) + 1), sh - 1),
               (j, wp - j - (sw * (wo - 1) + 1), sw - 1), (0, 0, 0)]
        term = lax.pad(cols[:, :, :, t], zero, cfg)
        acc = term if acc is None else acc + term
    return acc[:, pads[0][0]:pads[0][0] + in_shape[1], pads[1][0]:pads[1][0] + in_shape[2]]


def _bwd_lax(g, rhs, in_shape, strides, pads):
    """Convolution of g with the flipped, transposed kernel (explicit HWIO layout)."""
    k = rhs.shape[:2]
    out_dilated = [1 + s * (o - 1) for s, o in zip(strides, g.shape[1:3])]
    before = [kk - lo - 1 for kk, (lo, _) in zip(k, pads)]
    after = [i + kk - 1 - o - bb for i, kk, o, bb in zip(in_shape[1:3], k, out_dilated, before)]
    rhs_t = jnp.flip(rhs, (0, 1)).transpose(0, 1, 3, 2)
    return lax.conv_general_dilated(g, rhs_t, (1, 1), list(zip(before, after)),
                                    lhs_dilation=strides, dimension_numbers=_DN)


def _input_grad(g, rhs, in_shape, strides, pads):
    kind = _kind(in_shape, rhs.shape, strides, pads, "bwd")
    if kind == "dot1x1":
        return _bwd_dot1x1(g, rhs, in_shape, strides)
    if kind == "patchify":
        return _bwd_patchify(g, rhs, in_shape)
    if kind == "col2im":
        return _bwd_col2im(g, rhs, in_shape, strides, pads)
    return _bwd_lax(g, rhs, in_shape, strides, pads)


# ----------------------------------------------------------------------------- custom VJP
@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _conv(lhs, rhs, strides, pads):
    return _forward(lhs, rhs, strides, pads)


def _conv_fwd(lhs, rhs, strides, pads):
    return _forward(lhs, rhs, strides, pads), (lhs, rhs)


def _conv_bwd(strides, pads, res, g):
    lhs, rhs = res
    grad_lhs = _input_grad(g, rhs, lhs.shape, strides, pads).astype(lhs.dtype)
    _, vjp_rhs = jax.vjp(lambda r: _lax_conv(lhs, r, strides, pads), rhs)
    return grad_lhs, vjp_rhs(g)[0]


_conv.defvjp(_conv_fwd, _conv_bwd)


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

# BatchNorm with PyTorch's defaults (running-average momentum 0.1, eps 1e-5): the zoo's layout.
BatchNorm = functools.partial(nn.BatchNorm, momentum=0.9, epsilon=1e-5)


# ----------------------------------------------------------------------------- pooling
def max_pool(x, window, strides, pads):
    """Max pool of NHWC input: the elementwise maximum of the kh*kw shifted, strided views of
    the input padded with -inf.

    Same values as `flax.linen.max_pool(x, window, strides, pads)`. Its input gradient is a
    chain of elementwise selects, which XLA:CPU runs about twice as fast as the
    select-and-scatter of `reduce_window` (GoogLeNet at 224, batch 8: forward + input
    gradient 1.72 s -> 0.94 s, forward 0.27 s -> 0.16 s). Exact ties split the gradient
    equally (reduce_window and PyTorch give it to one element); behind a ReLU, ties are at 0,
    where the ReLU's derivative is 0 in both frameworks.

    Shape:
        x: (B, H, W, C); window, strides: (kh, kw), (sh, sw); pads: ((top, bottom),
        (left, right)), negative values crop -> (B, (H + top + bottom - kh) // sh + 1, ...,
        C).
    """
    (kh, kw), strides = tuple(window), tuple(strides)
    (t, b), (left, r) = (tuple(int(v) for v in p) for p in pads)
    # negative padding crops (as in reduce_window)
    x = x[:, max(-t, 0):x.shape[1] - max(-b, 0), max(-left, 0):x.shape[2] - max(-r, 0)]
    pads = ((max(t, 0), max(b, 0)), (max(left, 0), max(r, 0)))
    out_hw = _out_hw(x.shape[1:3], (kh, kw), strides, pads)
    xp = jnp.pad(x, ((0, 0), pads[0], pads[1], (0, 0)), constant_values=-jnp.inf)
    return functools.reduce(jnp.maximum, _taps(xp, (kh, kw), strides, out_hw))


# ----------------------------------------------------------------------------- attention
def softmax_last(x):
    """Softmax over the last axis. The subtracted max is a constant for autodiff (it cancels
    exactly), which gives XLA a simpler backward graph than `jax.nn.softmax`'s."""
    e = jnp.exp(x - lax.stop_gradient(jnp.max(x, axis=-1, keepdims=True)))
    return e / jnp.sum(e, axis=-1, keepdims=True)


def dot_product_attention(q, k, v, scale=None):
    """Softmax attention computed heads-major: on XLA:CPU ~4x faster than the einsum over
    (B, N, heads, D) operands, whose batch dimensions are not leading (the scaled
    scores, softmax and weighted sum are the same).

    Shape:
        q: (B, Nq, heads, D), k, v: (B, Nk, heads, D) -> (B, Nq, heads, D).
    """
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    qh, kh, vh = (t.transpose(0, 2, 1, 3) for t in (q, k, v))
    att = softmax_last((qh * scale) @ kh.swapaxes(-1, -2))
    return (att @ vh).transpose(0, 2, 1, 3)


def flax_attention_fn(query, key, value, bias=None, mask=None, *, dropout_rate=0.0,
                      deterministic=True, **unused):
    """`attention_fn` for `flax.linen.MultiHeadDotProductAttention` (inference, no mask,
    bias or dropout) using `dot_product_attention`."""
    if bias is not None or mask is not None or (dropout_rate > 0 and not deterministic):
        raise ValueError("flax_attention_fn supports attention without mask, bias or dropout")
    return dot_product_attention(query, key, value).astype(query.dtype)
