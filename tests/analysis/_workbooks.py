"""Small hand-written JAFROC workbooks for the reader tests (openpyxl, one sheet per entry)."""

from __future__ import annotations

from pathlib import Path

import openpyxl

TRUTH_HEADER = ["CaseID", "LesionID", "Weight", "ReaderID", "ModalityID", "Paradigm"]
FP_HEADER = ["ReaderID", "ModalityID", "CaseID", "FP_Rating"]
TP_HEADER = ["ReaderID", "ModalityID", "CaseID", "LesionID", "TP_Rating"]


def write_book(path: Path, sheets: dict[str, list[list]]) -> Path:
    """A workbook with one sheet per ``sheets`` entry (title -> rows, header included)."""
    wb = openpyxl.Workbook()
    wb.remove(wb.active)
    for title, rows in sheets.items():
        ws = wb.create_sheet(title)
        for row in rows:
            ws.append(row)
    wb.save(path)
    return path


def write_jafroc_book(path: Path, truth: list[list], fp: list[list], tp: list[list]) -> Path:
    """A current-format JAFROC workbook (TRUTH, FP, TP) from data rows; headers added."""
    return write_book(path, {"TRUTH": [TRUTH_HEADER, *truth], "FP": [FP_HEADER, *fp], "TP": [TP_HEADER, *tp]})
