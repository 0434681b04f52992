"""Tolerances of float32 comparisons, derived from the computation rather than from one CPU.

XLA:CPU compiles for the CPU it runs on: the vector width (SSE 4, AVX/AVX2 8, AVX-512 16 float32
lanes), FMA contraction and the blocking of dot/convolution kernels change the order of float32
sums, so the same program gives results a few ulps apart on two CPUs, and a batch of 1 and a batch
of 2 (other blocking) differ the same way on one CPU. Bitwise equality is guaranteed only for
the same compiled program on the same machine (same process, or same machine and flags).

Two ways to a tolerance, both used by the tests:

- `reduction_atol`: the worst-case bound of one float32 reduction (a sum, dot product, mean):
  any summation order of n terms is within gamma_{n-1} * sum|x_i| of the exact sum, with
  gamma_k = k u / (1 - k u) and u = eps/2 (Higham, Accuracy and Stability of Numerical
  Algorithms, 2nd ed., eq. 3.4), so two orders differ by at most 2 gamma_{n-1} sum|x_i|.
- `float64_atol`: for deep programs (a network, an optimiser) whose worst case is far too loose,
  the same program run in float64 measures this run's float32 error; another CPU's float32 run
  has an error of the same size, so two float32 runs differ by at most about twice the largest
  error seen here; `factor` (default 4) is that 2 times a margin of 2 for the spread of the
  largest error over CPUs and inputs. Floored at `ulps` ulps of the largest magnitude.
"""

from __future__ import annotations

import numpy as np

EPS32 = float(np.finfo(np.float32).eps)      # 2**-23: 1 ulp at 1.0
UNIT_ROUNDOFF32 = EPS32 / 2


def ulp(x) -> float:
    """The float32 ulp at the largest magnitude of `x` (np.spacing of max |x|)."""
    return float(np.spacing(np.float32(np.max(np.abs(np.asarray(x, np.float64))))))


def gamma(n: int) -> float:
    """Higham's gamma_n = n u / (1 - n u) for float32."""
    nu = n * UNIT_ROUNDOFF32
    return nu / (1 - nu)


def reduction_atol(abs_sum, length: int, orders: int = 2) -> float:
    """Largest difference of `orders` float32 evaluations of a sum of `length` terms.

    Args:
        abs_sum: sum of |terms| (an upper bound of it is fine), e.g. sum |w_i x_i| of a dot
            product, or length * max|x| of a mean's numerator.
        length: number of terms summed.
        orders: 2 for two evaluations compared with each other, 1 for one against the exact
            (or a float64) value.
    """
    return orders * gamma(max(int(length) - 1, 1)) * float(np.max(abs_sum))


def float64_atol(result32, result64, factor: float = 4.0, ulps: float = 4.0) -> float:
    """Tolerance for comparing `result32` with the same program's float32 result computed
    elsewhere (another CPU, another batch composition).

    Args:
        result32: this machine's float32 result.
        result64: the same program's result in float64 (same inputs, parameters cast).
        factor: multiple of the largest float32 error observed here (see the module docstring).
        ulps: floor, in ulps of the largest magnitude of `result64`.
    """
    r32, r64 = np.asarray(result32, np.float64), np.asarray(result64, np.float64)
    err = float(np.max(np.abs(r32 - r64))) if r32.size else 0.0
    return max(factor * err, ulps * ulp(r64))


def assert_close_to_float64(result32, result64, other32, factor: float = 4.0,
                            ulps: float = 4.0, what: str = "result"):
    """Asserts that `other32` (a float32 result of the same computation made elsewhere) is within
    `float64_atol(result32, result64)` of `result32` and names the tolerance when it is not."""
    tol = float64_atol(result32, result64, factor, ulps)
    diff = float(np.max(np.abs(np.asarray(other32, np.float64) - np.asarray(result32, np.float64))))
    assert diff <= tol, (f"{what}: max |difference| {diff:.3g} > tolerance {tol:.3g} "
                         f"({factor} x this run's float32 error vs float64, floor {ulps} ulps)")
