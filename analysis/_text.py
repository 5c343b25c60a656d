"""Numbers as text, shared by the command line (which must not import NumPy at start) and the
result summaries."""

from __future__ import annotations

import math
from typing import Any


def format_number(x: Any, digits: int = 4, *, sci_at: float = math.inf) -> str:
    """``x`` with ``digits`` decimals; ``-`` for None, ``NaN``, ``Inf``/``-Inf``; scientific
    notation below ``10**-digits`` (not zero) and from ``sci_at`` up in absolute value."""
    if x is None:
        return "-"
    x = float(x)
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Inf" if x > 0 else "-Inf"
    if x != 0 and (abs(x) < 10 ** (-digits) or abs(x) >= sci_at):
        return f"{x:.{digits - 1}e}"
    return f"{x:.{digits}f}"
