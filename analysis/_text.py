"""Numbers as text, shared by the command line (which must not import NumPy at start), the
result summaries and the HTML report."""

from __future__ import annotations

import math
from typing import Any


def format_number(
    x: Any,
    digits: int = 4,
    *,
    sci_at: float = math.inf,
    sci_digits: int | None = None,
    none: str = "-",
    infinities: tuple[str, str] = ("Inf", "-Inf"),
    minus: str = "-",
) -> str:
    """``x`` with ``digits`` decimals, in scientific notation (``sci_digits`` decimals, default
    ``digits - 1``) below ``10**-digits`` (not zero) and from ``sci_at`` up in absolute value.

    ``none`` stands for None, ``infinities`` for +inf and -inf, ``minus`` for every minus sign
    (the report uses the typographic "−").
    """
    if x is None:
        return none
    x = float(x)
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return infinities[0] if x > 0 else infinities[1]
    if x != 0 and (abs(x) < 10 ** (-digits) or abs(x) >= sci_at):
        text = f"{x:.{digits - 1 if sci_digits is None else sci_digits}e}"
    else:
        text = f"{x:.{digits}f}"
    return text if minus == "-" else text.replace("-", minus)
