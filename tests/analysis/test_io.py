"""File formats: JAFROC Excel (both TRUTH layouts), iMRMC, tidy CSV; good and bad input.

Reference: the 21 datasets shipped with RJafroc 2.1.3 (``tests/data/rjafroc/datasets``, with
``index.json``: I, J, K1, K2, lesion counts and IDs as RJafroc reads them) and RJafroc's own
example files with what ``DfReadDataFile`` returned for each
(``excel-examples/_rjafroc_read_results.json``).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import openpyxl
import pandas as pd
import pytest

from analysis import (
    ObserverData,
    ObserverDataError,
    UnsupportedDataError,
    fom_matrix,
    read_imrmc,
    read_jafroc_excel,
    read_observer_data,
    read_tidy_csv,
    valid_foms,
    write_imrmc,
    write_jafroc_excel,
    write_observer_data,
    write_tidy_csv,
)
from tests.analysis._workbooks import write_book
from tests.analysis.rjafroc_reference import (
    DATASETS_DIR,
    EXAMPLES_DIR,
    dataset_index,
    example_read_results,
    roundtrip_check,
)

INDEX = dataset_index()
XLSX_DATASETS = sorted(p.stem for p in DATASETS_DIR.glob("*.xlsx"))
UNSUPPORTED = {"datasetCadLroc": "LROC"}
BIG = {"datasetBinned123", "datasetBinned124", "datasetBinned125"}


@pytest.fixture(scope="module")
def datasets() -> dict[str, ObserverData]:
    return {n: read_jafroc_excel(DATASETS_DIR / f"{n}.xlsx") for n in XLSX_DATASETS if n not in UNSUPPORTED}


# ----------------------------------------------------------------------------------------------
# the 21 RJafroc datasets
# ----------------------------------------------------------------------------------------------


def test_all_21_datasets_are_present():
    assert len(XLSX_DATASETS) == 21


@pytest.mark.parametrize("name", [n for n in XLSX_DATASETS if n not in UNSUPPORTED])
def test_dataset_reads_with_rjafroc_dimensions_and_ids(datasets, name):
    d = datasets[name]
    ref = INDEX[name]
    assert d.paradigm == ref["type"]
    assert (d.n_treatments, d.n_readers, d.n_normal, d.n_abnormal) == (ref["I"], ref["J"], ref["K1"], ref["K2"])
    assert d.n_lesions == ref["totalLesions"]
    assert list(d.nl.shape) == ref["dimNL"] and list(d.ll.shape) == ref["dimLL"]
    per_case = pd.Series(d.lesions_per_case).value_counts()
    assert {str(k): int(v) for k, v in per_case.items()} == ref["perCaseTable"]
    # IDs exactly as in the file, in RJafroc's order (index.json lists them as RJafroc read them)
    assert list(d.treatments) == ref["modalityID"]
    assert list(d.readers) == ref["readerID"]


@pytest.mark.parametrize("name,kind", sorted(UNSUPPORTED.items()))
def test_lroc_dataset_is_refused_clearly(name, kind):
    with pytest.raises(UnsupportedDataError, match=f"{kind}.*not supported"):
        read_jafroc_excel(DATASETS_DIR / f"{name}.xlsx")


def test_ten_readers_keep_their_numeric_order(datasets):
    # RJafroc's new-format reader labels these "1","10","2",...; we keep the TRUTH order
    assert datasets["dataset09"].readers == tuple(str(r) for r in range(1, 11))
    assert datasets["datasetCadSimuFroc"].readers == tuple(str(r) for r in range(1, 11))


def test_non_numeric_and_non_consecutive_ids(datasets):
    assert datasets["dataset03"].readers == ("READER_1", "READER_2", "READER_3", "READER_4")
    assert datasets["dataset03"].treatments == ("TREAT1", "TREAT2")
    assert datasets["dataset04"].readers == ("1", "3", "4", "5")
    assert datasets["dataset07"].treatments == ("1", "2", "3", "4", "6")
    # dataset07/11/13 use the older TRUTH layout with non-consecutive lesion IDs
    ids = {les for case in datasets["dataset07"].lesion_ids for les in case}
    assert not ids <= {"1", "2", "3"}


def _round_trip_cases():
    for name in XLSX_DATASETS:
        if name in UNSUPPORTED:
            continue
        formats = ["xlsx", "compat.xlsx", "csv"] + (["imrmc"] if INDEX[name]["type"] == "ROC" else [])
        for fmt in formats:
            marks = [pytest.mark.slow] if name in BIG and fmt.endswith("xlsx") else []
            yield pytest.param(name, fmt, marks=marks, id=f"{name}-{fmt}")


@pytest.mark.parametrize("name,fmt", list(_round_trip_cases()))
def test_round_trip_keeps_every_fom(datasets, tmp_path, name, fmt):
    d = datasets[name]
    path = tmp_path / f"{name}.{fmt}"
    if fmt == "compat.xlsx":
        write_jafroc_excel(d, path, rjafroc_compatible=True)
    else:
        write_observer_data(d, path)
    back = read_observer_data(path)
    for fom in valid_foms(d):
        np.testing.assert_array_equal(fom_matrix(back, fom), fom_matrix(d, fom), err_msg=fom)
    assert back.equals(d)


def test_rjafroc_read_back_labels_differ_only_by_its_string_sort(datasets):
    # roundtrip_check.json holds the IDs RJafroc's own reader assigned when reading these
    # files back: string-sorted, so "10" comes second for 10 readers (its labelling bug).
    # We keep the TRUTH order; the sets of IDs are the same.
    check = roundtrip_check()
    differs = []
    for name, entry in check.items():
        if name not in datasets or not isinstance(entry, dict) or "readReaderIDs" not in entry:
            continue
        d = datasets[name]
        for ours, theirs in ((d.readers, entry["readReaderIDs"]), (d.treatments, entry["readModalityIDs"])):
            theirs = [theirs] if isinstance(theirs, str) else theirs
            assert sorted(ours) == sorted(theirs), name
            if list(ours) != theirs:
                assert sorted(ours) == theirs, name  # exactly R's string sort
                differs.append(name)
    assert set(differs) == {"dataset09", "datasetCadSimuFroc"}


# ----------------------------------------------------------------------------------------------
# RJafroc's example files (good and bad)
# ----------------------------------------------------------------------------------------------


def _examples():
    results = example_read_results()
    files = sorted({key.split(" [")[0] for key in results})
    for f in files:
        entries = {k.split("=")[1].rstrip("]"): v for k, v in results.items() if k.startswith(f + " [")}
        yield f, entries


GOOD = [
    (f, e)
    for f, e in _examples()
    if any("error" not in v for v in e.values()) and "LROC" not in f and not any(v.get("design", "FCTRL") != "FCTRL" for v in e.values())
]


@pytest.mark.parametrize("file,entries", GOOD, ids=[g[0] for g in GOOD])
def test_example_files_rjafroc_reads_give_the_same_foms(file, entries):
    if "rocSpC" in file:  # split-plot designs that RJafroc's old reader mistakes for FROC
        with pytest.raises(UnsupportedDataError, match="SPLIT-PLOT"):
            read_jafroc_excel(EXAMPLES_DIR / file)
        return
    if file.startswith("toyFiles/FROC/bad/frocCrNonChar"):
        # RJafroc's old-format reader ignores the ReaderID/ModalityID lists; one case there is
        # read by only some readers/treatments, which is not a fully crossed design
        with pytest.raises(ObserverDataError, match="only fully crossed designs"):
            read_jafroc_excel(EXAMPLES_DIR / file)
        return
    ref = next(v for v in entries.values() if "error" not in v)
    d = read_jafroc_excel(EXAMPLES_DIR / file)
    assert d.paradigm == ref["type"]
    assert [d.n_treatments, d.n_readers, d.n_cases] == ref["dimNL"][:3]
    assert list(d.ll.shape) == ref["dimLL"]
    assert d.lesions_per_case.tolist() == ref["perCase"]
    ref_w = np.array([[np.nan if x == "-Inf" else x for x in row] for row in ref["weights"]])
    np.testing.assert_allclose(np.where(d.lesion_mask, d.lesion_weights, np.nan), ref_w, rtol=1e-6)
    checked = 0
    for fom, out in ref["foms"].items():
        if "error" in out:
            with pytest.raises(ObserverDataError):
                fom_matrix(d, fom)
            continue
        expected = np.array(out["values"], dtype=float).reshape(d.n_treatments, d.n_readers)
        np.testing.assert_allclose(fom_matrix(d, fom), expected, rtol=1e-9, atol=1e-12, err_msg=f"{file} {fom}")
        checked += 1
    assert checked >= 1


def test_example_lroc_files_are_refused():
    for name in ("lroc.xlsx", "lroc1.xlsx", "lroc2.xlsx"):
        with pytest.raises(UnsupportedDataError, match="LROC"):
            read_jafroc_excel(EXAMPLES_DIR / "toyFiles" / "LROC" / name)


def test_example_blank_rows_are_ignored():
    # RJafroc refuses blank rows inside TRUTH; they carry no information, so we skip them
    a = read_jafroc_excel(EXAMPLES_DIR / "toyFiles/FROC/bad/frocCr2BlankRows.xlsx")
    b = read_jafroc_excel(EXAMPLES_DIR / "toyFiles/FROC/frocCr.xlsx")
    np.testing.assert_array_equal(fom_matrix(a, "wAFROC"), fom_matrix(b, "wAFROC"))


def test_example_blank_weight_of_single_lesion_case_means_weight_one():
    # RJafroc refuses the empty Weight cell; a case's blank weights mean equal weights here
    d = read_jafroc_excel(EXAMPLES_DIR / "toyFiles/ROC/bad/missing1CellRow5.xlsx")
    assert d.lesion_weights[0, 0] == 1.0


@pytest.mark.parametrize(
    "file,match,row,column",
    [
        ("toyFiles/ROC/bad/incorrectSheetName.xlsx", "no TRUTH sheet", None, None),
        ("toyFiles/ROC/bad/duplicatedRow.xlsx", "listed twice", 7, "LesionID"),
        ("toyFiles/ROC/bad/incorrectWeights.xlsx", "sum to 0.5", 5, "Weight"),
        ("toyFiles/ROC/bad/non-integerCaseID.xlsx", "non-integer number", 7, "CaseID"),
        ("toyFiles/ROC/bad/non-integerLesionID.xlsx", "non-integer number", 2, "LesionID"),
        ("toyFiles/ROC/bad/non-numeric-weight.xlsx", "not a number", 5, "Weight"),
        ("toyFiles/ROC/bad/non-integerCellsRows5and7.xlsx", "not a number", 5, "Weight"),
        ("toyFiles/ROC/bad/rocCrStrRdrsNonUnique.xlsx", "more than once", 2, "ReaderID"),
        ("toyFiles/ROC/bad/missingCells.xlsx", "case ID is empty", 3, "CaseID"),
        ("toyFiles/ROC/bad/missingEntireRow5.xlsx", "not in the truth table", None, "CaseID"),
        ("toyFiles/FROC/bad/incorrectCaseIDsInTP.xlsx", "not in the truth table", 7, "CaseID"),
    ],
)
def test_example_bad_files_are_rejected_with_location(file, match, row, column):
    with pytest.raises(ObserverDataError) as err:
        read_jafroc_excel(EXAMPLES_DIR / file)
    hits = [p for p in err.value.problems if match in p.message]
    assert hits, str(err.value)
    assert all(p.file and p.file.endswith(Path(file).name) for p in err.value.problems if p.file)
    if row is not None:
        assert any(p.row == row for p in hits), [str(p) for p in hits]
    if column is not None:
        assert any(p.column == column for p in hits), [str(p) for p in hits]


def test_example_split_plot_and_cross_modality_are_unsupported():
    for f in ("toyFiles/ROC/rocSpA.xlsx", "toyFiles/ROC/rocSpC.xlsx", "XModDataFile.xlsx"):
        with pytest.raises(UnsupportedDataError):
            read_jafroc_excel(EXAMPLES_DIR / f)


# ----------------------------------------------------------------------------------------------
# our own malformed files
# ----------------------------------------------------------------------------------------------

TRUTH = [
    ["CaseID", "LesionID", "Weight", "ReaderID", "ModalityID", "Paradigm"],
    [1, 0, 0, "A,B", "T1", "FROC"],
    [2, 0, 0, "A,B", "T1", "FCTRL"],
    [10, 1, 0.5, "A,B", "T1", None],
    [10, 2, 0.5, "A,B", "T1", None],
    [11, 1, 1, "A,B", "T1", None],
]
FP = [["ReaderID", "ModalityID", "CaseID", "FP_Rating"], ["A", "T1", 1, 2.5], ["A", "T1", 10, 1.0], ["B", "T1", 2, 3.0]]
TP = [["ReaderID", "ModalityID", "CaseID", "LesionID", "TP_Rating"], ["A", "T1", 10, 1, 4.0], ["A", "T1", 11, 1, 5.0], ["B", "T1", 10, 2, 2.0]]


def test_small_handwritten_file_reads(tmp_path):
    d = read_jafroc_excel(write_book(tmp_path / "ok.xlsx", {"TRUTH": TRUTH, "NL": FP, "LL": TP}))
    assert d.readers == ("A", "B") and d.case_ids == ("1", "2", "10", "11")
    assert d.lesion_ids == (("1", "2"), ("1",))
    # reader A: normals FP (2.5, -inf); lesions 4 (w .5), -inf (w .5), 5 (w 1)
    # wAFROC = [ (0.5*1 + .5*0 + 1) + (.5 + .5*.5 + 1) ] / (2 * 2)
    assert fom_matrix(d, "wAFROC")[0, 0] == pytest.approx((1.5 + 1.75) / 4)


def _replace(rows, r, c, value):
    rows = [list(x) for x in rows]
    rows[r][c] = value
    return rows


@pytest.mark.parametrize(
    "sheets,match,sheet,row,column",
    [
        ({"TRUTH": TRUTH, "FP": FP}, "no TP/LL", None, None, None),
        ({"TRUTH": TRUTH, "FP": FP, "TP": _replace(TP, 1, 2, 99)}, "case '99' is not in the truth", "TP", 2, "CaseID"),
        ({"TRUTH": TRUTH, "FP": FP, "TP": TP + [["B", "T1", 1, 1, 3.0]]}, "is a normal case", "TP", 5, "CaseID"),
        ({"TRUTH": TRUTH, "FP": FP, "TP": TP + [["A", "T1", 10, 1, 3.0]]}, "marked twice", "TP", 5, "LesionID"),
        ({"TRUTH": TRUTH, "FP": FP, "TP": _replace(TP, 2, 3, 3)}, "lesion '3' of case '11' is not", "TP", 3, "LesionID"),
        ({"TRUTH": _replace(TRUTH, 3, 2, 0.9), "FP": FP, "TP": TP}, "sum to 1.4", "TRUTH", 4, "Weight"),
        ({"TRUTH": TRUTH, "FP": _replace(FP, 2, 3, "high"), "TP": TP}, "not a number", "FP", 3, "FP_Rating"),
        ({"TRUTH": TRUTH, "FP": [r[:3] for r in FP], "TP": TP}, "FP_Rating", "FP", 1, "FP_Rating"),
        ({"TRUTH": [r[:2] for r in TRUTH], "FP": FP, "TP": TP}, "Weight", "TRUTH", 1, "Weight"),
        ({"TRUTH": TRUTH, "FP": FP, "TP": _replace(TP, 1, 0, "Z")}, "reader 'Z' is not one", "TP", 2, "ReaderID"),
        ({"TRUTH": _replace(TRUTH, 5, 3, "A"), "FP": FP, "TP": TP}, "only fully crossed", "TRUTH", 6, "ReaderID"),
        ({"TRUTH": TRUTH, "FP": FP, "NL": FP, "TP": TP}, "keep only one", None, None, None),
    ],
)
def test_malformed_files_name_sheet_row_and_column(tmp_path, sheets, match, sheet, row, column):
    path = write_book(tmp_path / "bad.xlsx", sheets)
    with pytest.raises(ObserverDataError) as err:
        read_jafroc_excel(path)
    hits = [p for p in err.value.problems if match in p.message]
    assert hits, str(err.value)
    p = hits[0]
    assert p.file == str(path)
    assert (p.sheet, p.row, p.column) == (sheet, row, column)
    assert str(path) in str(err.value)


def test_all_problems_of_a_sheet_are_reported_together(tmp_path):
    fp = _replace(_replace(FP, 1, 3, "x"), 3, 3, None)
    tp = _replace(TP, 1, 2, 99)
    path = write_book(tmp_path / "bad.xlsx", {"TRUTH": TRUTH, "FP": fp, "TP": tp})
    with pytest.raises(ObserverDataError) as err:
        read_jafroc_excel(path)
    rows = sorted((p.sheet, p.row) for p in err.value.problems)
    assert rows == [("FP", 2), ("FP", 4), ("TP", 2)]


def test_empty_and_corrupt_files(tmp_path):
    empty = tmp_path / "empty.xlsx"
    empty.write_bytes(b"")
    with pytest.raises(ObserverDataError, match="empty"):
        read_jafroc_excel(empty)
    junk = tmp_path / "junk.xlsx"
    junk.write_text("not a workbook")
    with pytest.raises(ObserverDataError, match="cannot be opened"):
        read_jafroc_excel(junk)
    with pytest.raises(FileNotFoundError):
        read_jafroc_excel(tmp_path / "missing.xlsx")
    no_cases = write_book(tmp_path / "nocases.xlsx", {"TRUTH": TRUTH[:1], "FP": FP[:1], "TP": TP[:1]})
    with pytest.raises(ObserverDataError, match="no cases"):
        read_jafroc_excel(no_cases)


def test_old_three_column_layout_infers_roc_and_froc(tmp_path):
    truth = [["CaseID", "LesionID", "Weight"], [1, 0, 0], [2, 0, 0], [5, 1, 1]]
    fp = [["ReaderID", "ModalityID", "CaseID", "NL_Rating"], ["r2", "m", 1, 1], ["r2", "m", 2, 2], ["r10", "m", 1, 3], ["r10", "m", 2, 1]]
    tp = [["ReaderID", "ModalityID", "CaseID", "LesionID", "LL_Rating"], ["r2", "m", 5, 1, 3], ["r10", "m", 5, 1, 2]]
    roc = read_jafroc_excel(write_book(tmp_path / "roc.xlsx", {"TRUTH": truth, "NL": fp, "LL": tp}))
    assert roc.paradigm == "ROC" and roc.readers == ("r2", "r10")  # natural order
    froc = read_jafroc_excel(write_book(tmp_path / "froc.xlsx", {"TRUTH": truth, "NL": fp + [["r2", "m", 5, 1.5]], "LL": tp}))
    assert froc.paradigm == "FROC"


# ----------------------------------------------------------------------------------------------
# writing: awkward IDs, RJafroc-compatible mode, attributes and groups
# ----------------------------------------------------------------------------------------------


def awkward_study() -> ObserverData:
    truth = pd.DataFrame(
        [
            {"case_id": "pt-007", "lesion_id": None},
            {"case_id": "0042", "lesion_id": None},
            {"case_id": "p 9", "lesion_id": "0", "weight": 0.25, "lesion_type": "lytic"},
            {"case_id": "p 9", "lesion_id": "T12 vertebra", "weight": 0.75, "lesion_type": "mixed"},
            {"case_id": "3", "lesion_id": "5", "weight": 1.0, "lesion_type": "lytic"},
        ]
    )
    nl = pd.DataFrame(
        [
            {"treatment": "CT, bone window", "reader": "Dr. A", "case_id": "pt-007", "rating": 40},
            {"treatment": "TS", "reader": "Dr. A", "case_id": "p 9", "rating": 12.5},
            {"treatment": "TS", "reader": "r,2", "case_id": "0042", "rating": 77.25},
        ]
    )
    ll = pd.DataFrame(
        [
            {"treatment": "CT, bone window", "reader": "Dr. A", "case_id": "p 9", "lesion_id": "0", "rating": 90},
            {"treatment": "TS", "reader": "r,2", "case_id": "p 9", "lesion_id": "T12 vertebra", "rating": 1e-9},
            {"treatment": "TS", "reader": "Dr. A", "case_id": "3", "lesion_id": "5", "rating": 55},
        ]
    )
    return ObserverData.from_marks(
        truth,
        nl,
        ll,
        treatments=["CT, bone window", "TS"],
        readers=["Dr. A", "r,2"],
        reader_groups={"Dr. A": "radiologist", "r,2": "resident"},
        name="awkward",
    )


@pytest.mark.parametrize("compatible", [False, True])
def test_awkward_ids_round_trip_through_excel(tmp_path, compatible):
    d = awkward_study()
    path = write_jafroc_excel(d, tmp_path / "a.xlsx", rjafroc_compatible=compatible)
    back = read_jafroc_excel(path)
    assert back.equals(d)
    assert back.reader_groups == d.reader_groups
    assert back.case_ids == d.case_ids or set(back.case_ids) == set(d.case_ids)
    for fom in valid_foms(d):
        np.testing.assert_array_equal(fom_matrix(back, fom), fom_matrix(d, fom))


def test_rjafroc_compatible_file_layout(tmp_path):
    d = awkward_study()
    path = write_jafroc_excel(d, tmp_path / "c.xlsx", rjafroc_compatible=True)
    wb = openpyxl.load_workbook(path)
    truth = list(wb["TRUTH"].iter_rows(values_only=True))
    assert truth[0][:6] == ("CaseID", "LesionID", "Weight", "ReaderID", "ModalityID", "Paradigm")
    case_ids = [r[0] for r in truth[1:]]
    assert all(isinstance(c, int) for c in case_ids)
    assert sorted(set(case_ids)) == list(range(1, d.n_cases + 1))
    lesions = {}
    for r in truth[1:]:
        if r[1] != 0:
            lesions.setdefault(r[0], []).append(r[1])
    assert all(v == list(range(1, len(v) + 1)) for v in lesions.values())
    assert truth[1][5] == "FROC" and truth[2][5] == "FCTRL"
    assert "TSCT_ID_MAP" in wb.sheetnames
    # without the TSCT_ID_MAP sheet the file still reads (as RJafroc would), with file IDs
    del wb["TSCT_ID_MAP"]
    wb.save(tmp_path / "nomap.xlsx")
    plain = read_jafroc_excel(tmp_path / "nomap.xlsx")
    assert plain.case_ids == tuple(str(k) for k in range(1, d.n_cases + 1))
    np.testing.assert_array_equal(fom_matrix(plain, "wAFROC"), fom_matrix(d, "wAFROC"))


def test_roc_minus_inf_ratings_in_both_writer_modes(tmp_path):
    d = ObserverData.from_roc([[[1.0, -math.inf, 2.0]]], [[[-math.inf, 3.0]]])
    exact = read_jafroc_excel(write_jafroc_excel(d, tmp_path / "e.xlsx"))
    assert exact.equals(d)
    compat_path = write_jafroc_excel(d, tmp_path / "c.xlsx", rjafroc_compatible=True)
    ratings = [r[3] for r in openpyxl.load_workbook(compat_path)["FP"].iter_rows(min_row=2, values_only=True)]
    assert ratings == [1.0, 0.0, 2.0]  # -inf -> min(finite) - 1
    compat = read_jafroc_excel(compat_path)
    assert fom_matrix(compat, "Wilcoxon")[0, 0] == fom_matrix(d, "Wilcoxon")[0, 0]


# ----------------------------------------------------------------------------------------------
# iMRMC and tidy CSV
# ----------------------------------------------------------------------------------------------


def test_imrmc_example_equals_the_excel_version():
    a = read_imrmc(EXAMPLES_DIR / "RocData.imrmc")
    b = read_jafroc_excel(EXAMPLES_DIR / "Roc.xlsx")
    assert a.case_ids == b.case_ids and a.readers == b.readers and a.treatments == b.treatments
    np.testing.assert_array_equal(fom_matrix(a, "Wilcoxon"), fom_matrix(b, "Wilcoxon"))


def test_imrmc_errors(tmp_path):
    good = (EXAMPLES_DIR / "RocData.imrmc").read_text().splitlines()
    begin = next(n for n, line in enumerate(good) if line.startswith("BEGIN DATA"))
    bad = list(good)
    bad[begin + 200] = "0,1,0,high"
    bad[begin + 201] = "0,999,0,2"
    (tmp_path / "bad.imrmc").write_text("\n".join(bad))
    with pytest.raises(ObserverDataError) as err:
        read_imrmc(tmp_path / "bad.imrmc")
    found = {(p.row, p.column) for p in err.value.problems}
    assert (begin + 201, "score") in found and (begin + 202, "caseID") in found
    (tmp_path / "nobegin.imrmc").write_text("\n".join(good[:begin]))
    with pytest.raises(ObserverDataError, match="BEGIN DATA"):
        read_imrmc(tmp_path / "nobegin.imrmc")
    missing = good[: begin + 1] + good[begin + 1 : -1]  # drop the last score
    (tmp_path / "missing.imrmc").write_text("\n".join(missing))
    with pytest.raises(ObserverDataError, match="missing"):
        read_imrmc(tmp_path / "missing.imrmc")
    with pytest.raises(ObserverDataError, match="to_roc"):
        write_imrmc(awkward_study(), tmp_path / "x.imrmc")


def test_tidy_csv_round_trip_keeps_attributes_groups_and_text_ids(tmp_path):
    d = awkward_study()
    path = write_tidy_csv(d, tmp_path / "study.csv")
    back = read_tidy_csv(path)
    assert back.equals(d) and back.reader_groups == d.reader_groups
    assert "0042" in back.case_ids  # text IDs stay text
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    assert list(frame.columns[:9]) == ["record", "paradigm", "treatment", "reader", "reader_group", "case_id", "lesion_id", "weight", "rating"]
    assert "lesion_type" in frame.columns


def test_tidy_csv_errors_give_line_numbers(tmp_path):
    text = "\n".join(
        [
            "record,treatment,reader,case_id,lesion_id,weight,rating",
            "truth,,,n1,,,",
            "truth,,,a1,L1,,",
            "NL,T,R,n1,,,2",
            "NL,T,R,zz,,,2",
            "LL,T,R,a1,L9,,3",
            "LL,T,R,a1,L1,,abc",
            "XX,T,R,a1,L1,,3",
        ]
    )
    (tmp_path / "bad.csv").write_text(text)
    with pytest.raises(ObserverDataError) as err:
        read_tidy_csv(tmp_path / "bad.csv")
    got = {(p.row, p.column) for p in err.value.problems}
    assert {(5, "case_id"), (6, "lesion_id"), (7, "rating"), (8, "record")} <= got
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(ObserverDataError, match="empty"):
        read_tidy_csv(tmp_path / "empty.csv")
    (tmp_path / "cols.csv").write_text("record,case_id\ntruth,1\n")
    with pytest.raises(ObserverDataError, match="missing column"):
        read_tidy_csv(tmp_path / "cols.csv")


def test_format_dispatch(tmp_path):
    with pytest.raises(ObserverDataError, match="extension"):
        read_observer_data(tmp_path / "study.json")
    d = ObserverData.from_roc([[[1.0, 2.0]]], [[[3.0]]])
    for ext in ("xlsx", "csv", "imrmc"):
        assert read_observer_data(write_observer_data(d, tmp_path / f"s.{ext}")).equals(d)
