"""Reading and writing observer-study files.

Supported formats (details in ``docs/analysis-data.md`` and each module's docstring):

* JAFROC Excel workbooks (``.xlsx``; RJafroc / Windows JAFROC), ROC and FROC:
  :func:`read_jafroc_excel`, :func:`write_jafroc_excel`.
* iMRMC long tables (``.imrmc``; FDA iMRMC), ROC only: :func:`read_imrmc`, :func:`write_imrmc`.
* One tidy CSV file per study (``.csv``), ROC and FROC: :func:`read_tidy_csv`,
  :func:`write_tidy_csv`.

Every reader raises :class:`~analysis.data.ObserverDataError` (a ``ValueError``) naming the file,
sheet, row and column of each problem, and :class:`UnsupportedDataError` for valid data of a
kind that is not analysed here (LROC data for this reader, split-plot designs, cross-modality files).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from analysis.data import ObserverData, ObserverDataError
from analysis.formats._common import UnsupportedDataError

if TYPE_CHECKING:  # loaded on first use by __getattr__ below
    from analysis.formats.imrmc import read_imrmc, write_imrmc
    from analysis.formats.jafroc_excel import read_jafroc_excel, write_jafroc_excel
    from analysis.formats.tidy_csv import TIDY_COLUMNS, read_tidy_csv, write_tidy_csv

__all__ = [
    "TIDY_COLUMNS",
    "UnsupportedDataError",
    "read_imrmc",
    "read_jafroc_excel",
    "read_observer_data",
    "read_tidy_csv",
    "write_imrmc",
    "write_jafroc_excel",
    "write_observer_data",
    "write_tidy_csv",
]

#: spreadsheet extensions read as JAFROC workbooks (python-calamine reads all of them: Excel
#: 2007+, Excel 97-2003 as LibreOffice saves it, and OpenDocument)
EXCEL_SUFFIXES = (".xlsx", ".xlsm", ".xls", ".xlsb", ".ods")

#: each format's module, loaded on first use: the tidy-CSV reader imports pandas, which reading
#: a workbook does not need (``tsct analyze st`` on an .xlsx file never loads it)
_MODULES = {
    "read_jafroc_excel": "analysis.formats.jafroc_excel",
    "write_jafroc_excel": "analysis.formats.jafroc_excel",
    "read_imrmc": "analysis.formats.imrmc",
    "write_imrmc": "analysis.formats.imrmc",
    "read_tidy_csv": "analysis.formats.tidy_csv",
    "write_tidy_csv": "analysis.formats.tidy_csv",
    "TIDY_COLUMNS": "analysis.formats.tidy_csv",
}
_READERS = {**{s: "read_jafroc_excel" for s in EXCEL_SUFFIXES}, ".imrmc": "read_imrmc", ".csv": "read_tidy_csv"}
_WRITERS = {".xlsx": "write_jafroc_excel", ".imrmc": "write_imrmc", ".csv": "write_tidy_csv"}


def __getattr__(name: str) -> Any:
    """The readers and writers re-exported here, imported from their module on first use (PEP 562)."""
    if name not in _MODULES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_MODULES[name]), name)
    globals()[name] = value
    return value


def _function(name: str) -> Callable[..., Any]:
    return __getattr__(name)


def read_observer_data(path: str | Path) -> ObserverData:
    """Read a study, choosing the format from the file extension.

    ``.xlsx`` (also ``.xlsm``, ``.xls``, ``.xlsb``, ``.ods``) -> JAFROC Excel, ``.imrmc`` ->
    iMRMC, ``.csv`` -> tidy CSV.
    """
    path = Path(path)
    reader_name = _READERS.get(path.suffix.lower())
    if reader_name is None:
        raise ObserverDataError(
            f"Cannot tell the format of {str(path)!r} from its extension {path.suffix!r}; "
            f"use one of {sorted(_READERS)} (JAFROC Excel, iMRMC, tidy CSV)."
        )
    return _function(reader_name)(path)


def write_observer_data(data: ObserverData, path: str | Path) -> Path:
    """Write a study, choosing the format from the file extension (see :func:`read_observer_data`)."""
    path = Path(path)
    writer_name = _WRITERS.get(path.suffix.lower())
    if writer_name is not None:
        return _function(writer_name)(data, path)
    raise ObserverDataError(
        f"Cannot tell the format of {str(path)!r} from its extension {path.suffix!r}; use "
        ".xlsx (JAFROC Excel), .imrmc (iMRMC, ROC only) or .csv (tidy CSV)."
    )
