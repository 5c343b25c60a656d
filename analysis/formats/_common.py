"""Helpers shared by the file-format modules: cell parsing, ID ordering, error locators."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import Any

import numpy as np

from analysis.data import ObserverDataError, Problem

__all__ = [
    "UnsupportedDataError",
    "natural_key",
    "natural_sorted",
    "parse_id",
    "parse_number",
    "is_blank",
    "norm_header",
]

_NUM_CHUNK = re.compile(r"(\d+)")


class UnsupportedDataError(ObserverDataError, NotImplementedError):
    """Valid data of a kind this package does not analyse (LROC data for the ROC/FROC/ROI readers, split-plot designs)."""


def natural_key(value: str) -> tuple:
    """Sort key that orders embedded numbers numerically: "2" < "10", "R2" < "R10".

    Used for reader/treatment IDs of old-format Excel files and for case and lesion IDs, so
    that integer IDs come out in numeric order (as RJafroc orders them) while any string ID
    still sorts deterministically.
    """
    parts = _NUM_CHUNK.split(value)
    return tuple((0, int(p), p) if p.isdigit() else (1, 0, p) for p in parts if p != "")


def natural_sorted(values: Iterable[str]) -> list[str]:
    """``sorted(values, key=natural_key)``."""
    return sorted(values, key=natural_key)


def is_blank(value: Any) -> bool:
    """True for an empty cell: None, NaN, or a string of whitespace."""
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and value.strip() == ""


def parse_id(value: Any) -> tuple[str | None, str | None]:
    """Parse an ID cell.

    Returns
    -------
    (id, error)
        ``id`` is the ID as a string (integers and integral floats without '.0', strings
        stripped), or None for a blank cell; ``error`` is a message if the cell is not a valid
        ID (a non-integral number, a boolean, a date...).
    """
    if is_blank(value):
        return None, None
    if isinstance(value, bool):
        return None, f"{value!r} is not a valid ID"
    if isinstance(value, (int, np.integer)):
        return str(int(value)), None
    if isinstance(value, (float, np.floating)):
        x = float(value)
        if math.isfinite(x) and x.is_integer():
            return str(int(x)), None
        return None, (f"{value!r} is a non-integer number; IDs must be integers or text (type it as text if the decimal point is intended)")
    if isinstance(value, str):
        return value.strip(), None
    return None, f"{value!r} ({type(value).__name__}) is not a valid ID"


def parse_number(value: Any, *, allow_minus_inf: bool = False) -> float | None:
    """Parse a numeric cell (numbers or numeric text); None if not a finite number.

    With ``allow_minus_inf`` the text "-inf"/"-Inf"/"-infinity" gives ``-inf`` (the writer's
    spelling of an ROC rating below every finite rating).
    """
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float, np.integer, np.floating)):
        x = float(value)
    elif isinstance(value, str):
        s = value.strip()
        if allow_minus_inf and s.lower() in ("-inf", "-infinity"):
            return -math.inf
        try:
            x = float(s)
        except ValueError:
            return None
    else:
        return None
    if math.isnan(x) or math.isinf(x):
        return -math.inf if (allow_minus_inf and x == -math.inf) else None
    return x


def norm_header(value: Any) -> str:
    """Normalise a column header for matching: lower case, letters and digits only."""
    if value is None:
        return ""
    return re.sub(r"[^a-z0-9]", "", str(value).lower())


def raise_if(problems: list[Problem]) -> None:
    """Raise :class:`ObserverDataError` if any problem was collected."""
    if problems:
        raise ObserverDataError(problems)
