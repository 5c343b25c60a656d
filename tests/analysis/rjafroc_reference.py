"""Loader for the RJafroc 2.1.3 reference outputs in ``tests/data/rjafroc/``.

Shared by the analysis tests (figures of merit, pseudovalues, significance tests).  JSON
conventions (see ``tests/data/rjafroc/README-upstream.md``): an array is
``{"__type__": "array", "dim": [...], "values": [...]}`` in R's column-major order, a data frame
is ``{"__type__": "data.frame", "rownames": [...], "columns": {...}}``, and ``-Inf``, ``Inf``,
``NA``, ``NaN`` are strings.

The reference numbers were produced by RJafroc 2.1.3 (commit 44b0e39e) on R 4.2.2 with, e.g.,
``UtilFigureOfMerit(dataset04, FOM = "wAFROC")`` and
``UtilPseudoValues(dataset04, FOM = "wAFROC")``.
"""

from __future__ import annotations

import json
import math
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

DATA_DIR = Path(__file__).resolve().parents[1] / "data" / "rjafroc"
DATASETS_DIR = DATA_DIR / "datasets"
EXPECTED_DIR = DATA_DIR / "expected"
EXAMPLES_DIR = DATA_DIR / "excel-examples"

#: datasets with full reference outputs (fom, pseudovalues, st)
REFERENCE_DATASETS = ("dataset02", "dataset03", "dataset04", "dataset05")

_SPECIAL = {"-Inf": -math.inf, "Inf": math.inf, "NA": math.nan, "NaN": math.nan}


def _num(v: Any) -> Any:
    if isinstance(v, str) and v in _SPECIAL:
        return _SPECIAL[v]
    return v


def decode(obj: Any) -> Any:
    """Decode the JSON conventions recursively: arrays -> ndarray, data frames -> DataFrame."""
    if isinstance(obj, dict):
        kind = obj.get("__type__")
        if kind == "array":
            values = np.array([_num(v) for v in obj["values"]], dtype=float)
            return values.reshape(obj["dim"], order="F")
        if kind == "data.frame":
            cols = {k: [_num(v) for v in (vals if isinstance(vals, list) else [vals])] for k, vals in obj["columns"].items()}
            return pd.DataFrame(cols, index=obj.get("rownames"))
        return {k: decode(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [decode(v) for v in obj]
    return _num(obj)


@lru_cache(maxsize=None)
def _load(path: str) -> Any:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def expected_foms(dataset: str) -> dict[str, np.ndarray]:
    """``{fom_name: ndarray (I, J)}`` from ``expected/fom/<dataset>.json``.

    Besides the FOM names, the key ``Wilcoxon_of_DfFroc2Roc`` holds
    ``UtilFigureOfMerit(DfFroc2Roc(dataset), "Wilcoxon")`` for FROC datasets.
    """
    raw = _load(str(EXPECTED_DIR / "fom" / f"{dataset}.json"))["foms"]
    return {name: decode(arr) for name, arr in raw.items()}


def expected_pseudovalues(dataset: str) -> dict[str, dict[str, np.ndarray]]:
    """``{fom: {"jkFomValues": (I, J, K), "jkPseudoValues": (I, J, K)}}``."""
    raw = _load(str(EXPECTED_DIR / "pseudovalues" / f"{dataset}.json"))["pseudovalues"]
    return {fom: {key: decode(arr) for key, arr in entry.items()} for fom, entry in raw.items()}


def expected_st(dataset: str) -> dict[str, Any]:
    """``St()`` outputs keyed ``"<FOM>|<DBM|OR>|<RRRC|FRRC|RRFC>"`` (decoded)."""
    raw = _load(str(EXPECTED_DIR / "st" / f"{dataset}.json"))
    return decode(raw)


def raw_st(dataset: str) -> dict[str, Any]:
    """The ``"st"`` node of ``expected/st/<dataset>.json`` as stored (not decoded; shared, do
    not modify)."""
    return _load(str(EXPECTED_DIR / "st" / f"{dataset}.json"))["st"]


def raw_pseudovalues(dataset: str) -> dict[str, Any]:
    """The ``"pseudovalues"`` node of ``expected/pseudovalues/<dataset>.json`` as stored."""
    return _load(str(EXPECTED_DIR / "pseudovalues" / f"{dataset}.json"))["pseudovalues"]


@lru_cache(maxsize=None)
def reference_data(dataset: str):
    """``datasets/<dataset>.xlsx`` read by our reader (cached: one read per test session)."""
    from analysis import read_jafroc_excel

    return read_jafroc_excel(dataset_path(dataset))


def dataset_index() -> dict[str, dict[str, Any]]:
    """``datasets/index.json``: per dataset I, J, K1, K2, lesion counts, IDs, type."""
    return _load(str(DATASETS_DIR / "index.json"))


def roundtrip_check() -> dict[str, dict[str, Any]]:
    """``datasets/roundtrip_check.json``: what RJafroc read back from each dataset file."""
    return _load(str(DATASETS_DIR / "roundtrip_check.json"))


def example_read_results() -> dict[str, dict[str, Any]]:
    """``excel-examples/_rjafroc_read_results.json``: RJafroc's reading of each example file.

    Keys look like ``"toyFiles/FROC/frocCr.xlsx [newExcelFileFormat=TRUE]"``; values hold the
    type, IDs, dims, perCase, lesion IDs/weights and FOMs, or ``{"error": message}``.
    """
    return _load(str(EXAMPLES_DIR / "_rjafroc_read_results.json"))


def dataset_path(name: str) -> Path:
    """Path of ``datasets/<name>.xlsx``."""
    return DATASETS_DIR / f"{name}.xlsx"


def assert_close(actual: np.ndarray, expected: np.ndarray, *, rtol: float = 1e-9, atol: float = 1e-12, what: str = "") -> None:
    """Element-wise ``|a - e| <= atol + rtol * |e|`` with NaN == NaN; names the worst cell."""
    actual = np.asarray(actual, dtype=float)
    expected = np.asarray(expected, dtype=float)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    both_nan = np.isnan(actual) & np.isnan(expected)
    err = np.where(both_nan, 0.0, np.abs(actual - expected))
    tol = atol + rtol * np.abs(expected)
    bad = ~(err <= tol)
    if bad.any():
        idx = tuple(int(x) for x in np.argwhere(bad)[0])
        raise AssertionError(f"{what}: {int(bad.sum())} of {bad.size} values differ; first at {idx}: {actual[idx]!r} vs expected {expected[idx]!r}")
