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

from pathlib import Path

from analysis.data import ObserverData, ObserverDataError
from analysis.formats._common import UnsupportedDataError
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

_READERS = {**{s: read_jafroc_excel for s in EXCEL_SUFFIXES}, ".imrmc": read_imrmc, ".csv": read_tidy_csv}


def read_observer_data(path: str | Path) -> ObserverData:
    """Read a study, choosing the format from the file extension.

    ``.xlsx`` (also ``.xlsm``, ``.xls``, ``.xlsb``, ``.ods``) -> JAFROC Excel, ``.imrmc`` ->
    iMRMC, ``.csv`` -> tidy CSV.
    """
    path = Path(path)
    reader = _READERS.get(path.suffix.lower())
    if reader is None:
        raise ObserverDataError(
            f"Cannot tell the format of {str(path)!r} from its extension {path.suffix!r}; "
            f"use one of {sorted(_READERS)} (JAFROC Excel, iMRMC, tidy CSV)."
        )
    return reader(path)


def write_observer_data(data: ObserverData, path: str | Path) -> Path:
    """Write a study, choosing the format from the file extension (see :func:`read_observer_data`)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".xlsx":
        return write_jafroc_excel(data, path)
    if suffix == ".imrmc":
        return write_imrmc(data, path)
    if suffix == ".csv":
        return write_tidy_csv(data, path)
    raise ObserverDataError(
        f"Cannot tell the format of {str(path)!r} from its extension {path.suffix!r}; use "
        ".xlsx (JAFROC Excel), .imrmc (iMRMC, ROC only) or .csv (tidy CSV)."
    )
