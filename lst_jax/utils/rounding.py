"""Numbers printed to the digits their error supports."""

from __future__ import annotations

import math


def decimals_for(se: float, sig: int = 2) -> int:
    """Decimal places that show `sig` significant digits of a standard error `se`."""
    if se is None or not math.isfinite(se) or se <= 0:
        return 3
    return max(0, sig - 1 - math.floor(math.log10(se)))


def format_estimate(value, se=None, sig: int = 3) -> str:
    """`value` rounded to its error: "0.907 ± 0.012" (two significant digits of the standard
    error, the value to the same decimal place); without an error, `sig` significant digits.
    None -> "-", non-finite -> "nan"."""
    if value is None:
        return "-"
    value = float(value)
    if not math.isfinite(value):
        return "nan"
    if se is not None and math.isfinite(float(se)) and float(se) > 0:
        d = decimals_for(float(se))
        return f"{value:.{d}f} ± {float(se):.{d}f}"
    return f"{value:.0f}" if abs(value) >= 10 ** sig else f"{value:.{sig}g}"


__all__ = ["decimals_for", "format_estimate"]
