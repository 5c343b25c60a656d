"""Workbooks written by other programs, the fast reading paths, and RJafroc's sheet-name rule.

* openxlsx (RJafroc's ``DfWriteExcelDataFile``) writes ``<dimension ref="A1"/>`` on full sheets
  and a drawing reference without its part; a read-only openpyxl reader trusting the dimension
  sees column A only.  The files here are made the same way (the XML patched after writing).
* The vectorised mark reader (``analysis/formats/_fast_marks.py``) and the typed-column reader
  (fastexcel, strict types) must give exactly what the row-by-row path gives.
* Every file :func:`write_jafroc_excel` writes must pass RJafroc 2.1.3's sheet check: the
  upper-cased sheet names sorted, FP/NL first, TP/LL second, TRUTH third.
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

import numpy as np
import openpyxl
import pandas as pd
import pytest

import analysis.formats.jafroc_excel as jx
from analysis import (
    ObserverData,
    ObserverDataError,
    fom_matrix,
    read_jafroc_excel,
    write_jafroc_excel,
)
from analysis.formats.jafroc_excel import rjafroc_sheet_order_ok
from tests.analysis._workbooks import write_book
from tests.analysis.rjafroc_reference import DATASETS_DIR, dataset_index

SUPPORTED = [
    n
    for n, v in dataset_index().items()
    if (DATASETS_DIR / f"{n}.xlsx").exists()
    and v.get("type") in ("ROC", "FROC", "ROI")
    and not n.startswith("datasetBinned")
    and n != "datasetCadLroc"
]


def _openxlsx_style(src: Path, dst: Path, *, dangling_drawing: bool = False) -> Path:
    """Copy ``src`` with every sheet's dimension set to A1 (and a drawing without its part)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if re.match(r"xl/worksheets/sheet\d+\.xml$", item.filename):
                data, n = re.subn(rb'<dimension ref="[^"]*"\s*/>', b'<dimension ref="A1"/>', data)
                assert n == 1
                if dangling_drawing:
                    data = data.replace(
                        b"</worksheet>",
                        b'<drawing xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships" r:id="rId9"/></worksheet>',
                    )
            zout.writestr(item, data)
    return dst


def _same(a: ObserverData, b: ObserverData) -> None:
    assert a.treatments == b.treatments and a.readers == b.readers
    assert a.case_ids == b.case_ids and a.lesions == b.lesions and a.paradigm == b.paradigm
    np.testing.assert_array_equal(a.nl, b.nl)
    np.testing.assert_array_equal(a.ll, b.ll)
    assert a.reader_groups == b.reader_groups


def _old_format_openxlsx_book(path: Path) -> Path:
    """RJafroc's writer layout: old three-column TRUTH, sheets LL/NL/TRUTH, NLRating/LLRating."""
    return write_book(
        path,
        {
            "LL": [
                ["ReaderID", "ModalityID", "CaseID", "LesionID", "LLRating"],
                [1, 1, 3, 1, 4.0],
                [1, 1, 4, 1, 5.0],
                [1, 1, 4, 2, 2.0],
                [1, 2, 3, 1, 3.0],
                [2, 1, 3, 1, 1.0],
                [2, 2, 4, 2, 4.0],
            ],
            "NL": [["ReaderID", "ModalityID", "CaseID", "NLRating"], [1, 1, 1, 2.5], [1, 2, 2, 1.0], [2, 1, 3, 3.0], [2, 2, 1, 0.5]],
            "TRUTH": [["CaseID", "LesionID", "Weight"], [1, 0, 0], [2, 0, 0], [3, 1, 1.0], [4, 1, 0.5], [4, 2, 0.5]],
        },
    )


def test_openxlsx_dimension_a1_workbook_is_read_completely(tmp_path):
    plain = _old_format_openxlsx_book(tmp_path / "plain.xlsx")
    odd = _openxlsx_style(plain, tmp_path / "openxlsx.xlsx")
    # the file really is the trap: openpyxl's read-only mode trusting the dimension sees cell A1
    wb = openpyxl.load_workbook(odd, read_only=True)
    assert list(wb["LL"].iter_rows(values_only=True)) == [("ReaderID",)]
    wb.close()
    expected = read_jafroc_excel(plain)
    got = read_jafroc_excel(odd)
    _same(got, expected)
    assert got.readers == ("1", "2") and got.treatments == ("1", "2")
    assert got.nl.shape == (2, 2, 4, 1) and got.ll[0, 0, 1, 1] == 2.0
    # the openpyxl fallback (python-calamine missing) resets the dimension too
    _same(jx._finish(read_with_openpyxl(odd), False, {}, str(odd)), expected)


def read_with_openpyxl(path: Path) -> ObserverData:
    sheets = jx._load_workbook_openpyxl(path)
    assert [len(r) for r in sheets["LL"].rows][:2] == [5, 5]
    original = jx._load_workbook
    jx._load_workbook = lambda p: jx._load_workbook_openpyxl(p)  # type: ignore[assignment]
    try:
        return read_jafroc_excel(path)
    finally:
        jx._load_workbook = original  # type: ignore[assignment]


def test_openxlsx_dangling_drawing_reference_is_read(tmp_path):
    plain = _old_format_openxlsx_book(tmp_path / "plain.xlsx")
    odd = _openxlsx_style(plain, tmp_path / "openxlsx.xlsx", dangling_drawing=True)
    _same(read_jafroc_excel(odd), read_jafroc_excel(plain))


@pytest.mark.parametrize("name", ["dataset02", "dataset04", "dataset07", "dataset11"])
def test_openxlsx_style_copies_of_the_reference_datasets(tmp_path, name):
    src = DATASETS_DIR / f"{name}.xlsx"
    _same(read_jafroc_excel(_openxlsx_style(src, tmp_path / f"{name}.xlsx")), read_jafroc_excel(src))


# ----------------------------------------------------------------------------------------------
# the fast paths give what the row-by-row path gives
# ----------------------------------------------------------------------------------------------


def _row_by_row(path: Path, monkeypatch) -> ObserverData:
    with monkeypatch.context() as m:
        m.setattr(jx, "_fast_read", lambda *a, **k: None)
        m.setattr(jx, "_typed_columns", lambda *a, **k: None)
        return read_jafroc_excel(path)


@pytest.mark.parametrize("name", SUPPORTED)
def test_fast_paths_equal_the_row_path_on_every_reference_dataset(name, monkeypatch):
    path = DATASETS_DIR / f"{name}.xlsx"
    slow = _row_by_row(path, monkeypatch)
    _same(read_jafroc_excel(path), slow)
    with monkeypatch.context() as m:  # typed columns (fastexcel) for every mark sheet
        m.setattr(jx, "_TYPED_MIN_BYTES", 0)
        _same(read_jafroc_excel(path), slow)


def _study_with_ids() -> ObserverData:
    truth = pd.DataFrame(
        [
            {"case_id": "n-1", "lesion_id": None},
            {"case_id": "n 2", "lesion_id": None},
            {"case_id": "a-1", "lesion_id": "L7", "weight": 0.3},
            {"case_id": "a-1", "lesion_id": "0", "weight": 0.7},
            {"case_id": "a 2", "lesion_id": "x", "weight": 1.0},
        ]
    )
    nl = pd.DataFrame(
        [
            {"treatment": "CT", "reader": "Dr A", "case_id": "n-1", "rating": 2.0},
            {"treatment": "CT", "reader": "Dr A", "case_id": "n-1", "rating": 3.5},
            {"treatment": "TS", "reader": "r,2", "case_id": "a 2", "rating": 1.25},
        ]
    )
    ll = pd.DataFrame(
        [
            {"treatment": "CT", "reader": "Dr A", "case_id": "a-1", "lesion_id": "0", "rating": 9.0},
            {"treatment": "TS", "reader": "r,2", "case_id": "a-1", "lesion_id": "L7", "rating": 4.0},
            {"treatment": "TS", "reader": "Dr A", "case_id": "a 2", "lesion_id": "x", "rating": 5.0},
        ]
    )
    return ObserverData.from_marks(
        truth, nl, ll, treatments=["CT", "TS"], readers=["Dr A", "r,2"], reader_groups={"Dr A": "radiologist", "r,2": "resident"}
    )


@pytest.mark.parametrize("compatible", [False, True])
def test_fast_paths_apply_the_id_map_like_the_row_path(tmp_path, monkeypatch, compatible):
    d = _study_with_ids()
    path = write_jafroc_excel(d, tmp_path / "ids.xlsx", rjafroc_compatible=compatible)
    slow = _row_by_row(path, monkeypatch)
    _same(slow, d)
    _same(read_jafroc_excel(path), d)
    with monkeypatch.context() as m:
        m.setattr(jx, "_TYPED_MIN_BYTES", 0)
        _same(read_jafroc_excel(path), d)


def test_errors_keep_their_row_and_column_when_typed_columns_are_used(tmp_path, monkeypatch):
    monkeypatch.setattr(jx, "_TYPED_MIN_BYTES", 0)
    wb = openpyxl.load_workbook(DATASETS_DIR / "dataset04.xlsx")
    ws = wb["TP"]
    ws.cell(row=7, column=5).value = "high"  # a text rating in a number column
    ws.cell(row=9, column=1).value = 99  # an unknown reader
    wb.save(tmp_path / "bad.xlsx")
    with pytest.raises(ObserverDataError) as info:
        read_jafroc_excel(tmp_path / "bad.xlsx")
    text = str(info.value)
    assert "row 7" in text and "'high'" in text
    assert "row 9" in text and "'99'" in text


def test_duplicate_marks_fall_back_to_the_located_message(tmp_path):
    wb = openpyxl.load_workbook(DATASETS_DIR / "dataset04.xlsx")
    ws = wb["TP"]
    ws.append([ws.cell(row=2, column=c).value for c in range(1, 6)])
    wb.save(tmp_path / "dup.xlsx")
    with pytest.raises(ObserverDataError, match="marked twice"):
        read_jafroc_excel(tmp_path / "dup.xlsx")


@pytest.mark.parametrize("value", [True, False])
def test_a_boolean_id_cell_among_numbers_is_refused_with_its_row(tmp_path, value):
    """TRUE equals 1 and FALSE 0 as dictionary keys; the fast path must not read TRUE as reader 1."""
    wb = openpyxl.load_workbook(DATASETS_DIR / "dataset04.xlsx")
    ws = wb["FP"]
    for row in range(2, ws.max_row + 1):  # reader IDs as numbers (the file has text '1'...'4')
        ws.cell(row=row, column=1).value = int(ws.cell(row=row, column=1).value)
    ws.cell(row=12, column=1).value = value
    wb.save(tmp_path / "bool.xlsx")
    with pytest.raises(ObserverDataError) as info:
        read_jafroc_excel(tmp_path / "bool.xlsx")
    assert "row 12" in str(info.value) and f"{value!r} is not a valid ID" in str(info.value)


def test_fast_factorize_keeps_first_appearance_and_refuses_blanks():
    from analysis.formats._fast_marks import _factorize

    codes, uniques = _factorize(np.array(["b", 1, "a", 1.0, "b"], dtype=object))
    assert uniques == ["b", 1, "a"] and codes.tolist() == [0, 1, 2, 1, 0]
    codes, uniques = _factorize(np.array([3.0, 1.0, 3.0]))
    assert [uniques[c] for c in codes] == [3.0, 1.0, 3.0]
    for bad in ([1, None], [1.0, float("nan")], [1, True], [True, 1], [0, False], [[1], 2]):
        arr = np.empty(len(bad), dtype=object)
        arr[:] = bad
        assert _factorize(arr) is None, bad
    assert _factorize(np.array([1.0, np.nan])) is None


# ----------------------------------------------------------------------------------------------
# RJafroc's sheet-name rule
# ----------------------------------------------------------------------------------------------


def test_sheet_rule_replay_matches_rjafroc_behaviour():
    assert rjafroc_sheet_order_ok(["TRUTH", "FP", "TP"])[0]
    assert rjafroc_sheet_order_ok(["truth", "tp", "fp", "TSCT_ID_MAP", "TSCT_READERS"])[0]
    # the failures RJafroc 2.1.3 reports (issue 15): an ID_MAP or READERS sheet sorts before TP
    ok, why = rjafroc_sheet_order_ok(["TRUTH", "FP", "TP", "ID_MAP"])
    assert not ok and "TP or LL sheet not found" in why
    assert not rjafroc_sheet_order_ok(["TRUTH", "FP", "TP", "READERS"])[0]
    # NL/LL names sort as LL < NL, so the new-format reader never finds FP/NL first
    assert "FP or NL sheet not found" in rjafroc_sheet_order_ok(["TRUTH", "NL", "LL"])[1]


def _write_every_kind(tmp_path: Path) -> list[Path]:
    paths = []
    d = _study_with_ids()
    for compatible in (False, True):
        paths.append(write_jafroc_excel(d, tmp_path / f"ids-{compatible}.xlsx", rjafroc_compatible=compatible))
    for name in ("dataset02", "dataset04", "dataset07", "dataset11"):
        ds = read_jafroc_excel(DATASETS_DIR / f"{name}.xlsx")
        groups = {r: ("g1" if n % 2 else "g2") for n, r in enumerate(ds.readers)}
        ds = ds._replace(reader_groups=groups)
        for compatible in (False, True):
            paths.append(write_jafroc_excel(ds, tmp_path / f"{name}-{compatible}.xlsx", rjafroc_compatible=compatible))
    return paths


def test_every_file_we_write_passes_rjafroc_sheet_rule(tmp_path):
    paths = _write_every_kind(tmp_path)
    extension_sheets = 0
    for path in paths:
        wb = openpyxl.load_workbook(path, read_only=True)
        names = wb.sheetnames
        wb.close()
        ok, why = rjafroc_sheet_order_ok(names)
        assert ok, f"{path.name}: {names}: {why}"
        extension_sheets += sum(n.startswith("TSCT_") for n in names)
        back = read_jafroc_excel(path)
        assert back.reader_groups  # the TSCT_READERS sheet is read back
    assert extension_sheets >= len(paths)  # the rule was exercised with extra sheets present


def test_old_sheet_names_are_still_read(tmp_path):
    d = _study_with_ids()
    path = write_jafroc_excel(d, tmp_path / "new.xlsx")
    wb = openpyxl.load_workbook(path)
    wb[jx.ID_MAP_SHEET].title = "ID_MAP"
    wb[jx.READERS_SHEET].title = "READERS"
    wb.save(tmp_path / "old.xlsx")
    _same(read_jafroc_excel(tmp_path / "old.xlsx"), d)


def test_writer_is_atomic_and_keeps_foms(tmp_path):
    d = read_jafroc_excel(DATASETS_DIR / "dataset04.xlsx")
    path = write_jafroc_excel(d, tmp_path / "out.xlsx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.xlsx"]  # no temporary left
    np.testing.assert_array_equal(fom_matrix(read_jafroc_excel(path), "wAFROC"), fom_matrix(d, "wAFROC"))
