"""ROI (region-of-interest) data: reading, Obuchowski's ROI figure of merit, DBM/OR analysis.

Each case is divided into regions; every region is rated.  Lesion-free regions (of normal and
abnormal cases) are NL marks, lesion regions LL marks.  The ROI FOM (Obuchowski, Lieber &
Powell 2000; RJafroc's ``FOM = "ROI"``) is the mean of psi(X, Y) over every (lesion-free
region X, lesion region Y) pair, across and within cases.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import openpyxl
import pytest
from typer.testing import CliRunner

import analysis.formats.jafroc_excel as jx
from analysis import ObserverData, fom_matrix, read_jafroc_excel, write_jafroc_excel
from analysis.cli import app
from analysis.fom import FomError, check_fom, jackknife_fom_matrix, valid_foms
from analysis.significance import significance_test
from tests.analysis._workbooks import write_book
from tests.analysis.rjafroc_reference import DATASETS_DIR

DATASET_ROI = DATASETS_DIR / "datasetROI.xlsx"


def hand_study(unrated_lesion: bool = False) -> ObserverData:
    """One treatment, one reader, two regions per case.

    ====  ========  ============================  ===========================
    case  lesions   lesion-free regions (X)       lesion regions (Y)
    ====  ========  ============================  ===========================
    N1    none      1, 3                          -
    A1    L1        2                             L1: 4
    A2    L1, L2    -                             L1: 3, L2: 1 (or unrated)
    ====  ========  ============================  ===========================
    """
    truth = [
        {"case_id": "N1", "lesion_id": None},
        {"case_id": "A1", "lesion_id": "L1"},
        {"case_id": "A2", "lesion_id": "L1", "weight": 0.5},
        {"case_id": "A2", "lesion_id": "L2", "weight": 0.5},
    ]
    nl = [
        {"treatment": "T", "reader": "R", "case_id": "N1", "rating": 1},
        {"treatment": "T", "reader": "R", "case_id": "N1", "rating": 3},
        {"treatment": "T", "reader": "R", "case_id": "A1", "rating": 2},
    ]
    ll = [
        {"treatment": "T", "reader": "R", "case_id": "A1", "lesion_id": "L1", "rating": 4},
        {"treatment": "T", "reader": "R", "case_id": "A2", "lesion_id": "L1", "rating": 3},
    ]
    if not unrated_lesion:
        ll.append({"treatment": "T", "reader": "R", "case_id": "A2", "lesion_id": "L2", "rating": 1})
    return ObserverData.from_marks(truth, nl, ll, paradigm="ROI")


def test_hand_worked_roi_fom_and_jackknife():
    """X = {1, 3, 2} (3 lesion-free regions), Y = {4, 3, 1} (3 lesion regions), 9 pairs.

    Y = 4 beats 1, 3, 2: 3.  Y = 3 beats 1, ties 3, beats 2: 2.5.  Y = 1 ties 1, loses to 3
    and 2: 0.5.  ROI FOM = (3 + 2.5 + 0.5) / 9 = 6/9 = 2/3.

    Jackknife: without N1, X = {2}, Y = {4, 3, 1}: (1 + 1 + 0) / 3 = 2/3; without A1,
    X = {1, 3}, Y = {3, 1}: (1.5 + 0.5) / 4 = 1/2; without A2, X = {1, 3, 2}, Y = {4}: 3/3 = 1.
    """
    d = hand_study()
    assert d.paradigm == "ROI"
    assert fom_matrix(d, "ROI")[0, 0] == pytest.approx(2 / 3, abs=1e-15)
    np.testing.assert_allclose(jackknife_fom_matrix(d, "ROI")[0, 0], [2 / 3, 1 / 2, 1.0], atol=1e-15)
    assert valid_foms(d) == ("ROI",)


def test_unrated_lesion_region_ranks_below_every_rated_region():
    """A2's L2 unrated (-inf, as RJafroc stores it): Y = {4, 3, -inf}; the unrated region loses
    to all three lesion-free regions, so the FOM is (3 + 2.5 + 0) / 9 = 5.5/9."""
    d = hand_study(unrated_lesion=True)
    assert fom_matrix(d, "ROI")[0, 0] == pytest.approx(5.5 / 9, abs=1e-15)


def test_roi_fom_and_paradigm_are_refused_across_paradigms():
    d = hand_study()
    for fom in ("wAFROC", "AFROC", "HrAuc", "Wilcoxon", "MaxNLF"):
        with pytest.raises(FomError, match="not defined for ROI"):
            check_fom(d, fom)
    froc = d._replace(paradigm="FROC")
    with pytest.raises(FomError, match="needs ROI data, but this study is FROC"):
        fom_matrix(froc, "ROI")
    assert "ROI" not in valid_foms(froc)
    roc = ObserverData.from_roc([[[1, 2, 3]]], [[[2, 4]]])
    with pytest.raises(FomError, match="needs ROI data, but this study is ROC"):
        fom_matrix(roc, "ROI")


def test_old_three_column_layout_is_inferred_as_roi(tmp_path):
    # every case carries exactly two rated regions, every lesion is rated: ROI (as datasetROI)
    truth = [["CaseID", "LesionID", "Weight"], [1, 0, 0], [2, 1, 1], [3, 1, 0.5], [3, 2, 0.5]]
    fp = [["ReaderID", "ModalityID", "CaseID", "FP_Rating"], [1, 1, 1, 1], [1, 1, 1, 3], [1, 1, 2, 2]]
    tp = [["ReaderID", "ModalityID", "CaseID", "LesionID", "TP_Rating"], [1, 1, 2, 1, 4], [1, 1, 3, 1, 3], [1, 1, 3, 2, 1]]
    d = read_jafroc_excel(write_book(tmp_path / "roi.xlsx", {"TRUTH": truth, "FP": fp, "TP": tp}))
    assert d.paradigm == "ROI"
    assert fom_matrix(d, "ROI")[0, 0] == pytest.approx(2 / 3, abs=1e-15)


def _raw_sheets(path: Path) -> tuple[list[tuple], list[tuple]]:
    wb = openpyxl.load_workbook(path, read_only=True)
    fp = [r for r in wb["FP"].iter_rows(min_row=2, values_only=True) if r[0] is not None]
    tp = [r for r in wb["TP"].iter_rows(min_row=2, values_only=True) if r[0] is not None]
    return fp, tp


def _brute_roi(fp: list[tuple], tp: list[tuple], trt: str, rdr: str, drop_case: str | None = None) -> float:
    """Mean psi over every (FP row, TP row) pair of one treatment and reader, straight from the sheets."""
    x = [float(r[3]) for r in fp if str(r[1]) == trt and str(r[0]) == rdr and str(r[2]) != drop_case]
    y = [float(r[4]) for r in tp if str(r[1]) == trt and str(r[0]) == rdr and str(r[2]) != drop_case]
    total = sum(1.0 if a < b else 0.5 if a == b else 0.0 for a in x for b in y)
    return total / (len(x) * len(y))


def test_dataset_roi_reads_and_its_fom_equals_a_brute_force_count():
    d = read_jafroc_excel(DATASET_ROI)
    assert d.paradigm == "ROI"
    assert (d.n_treatments, d.n_readers, d.n_normal, d.n_abnormal, d.n_lesions) == (2, 5, 50, 40, 99)
    fp, tp = _raw_sheets(DATASET_ROI)
    theta = fom_matrix(d, "ROI")
    for i, t in enumerate(d.treatments):
        for j, r in enumerate(d.readers):
            assert theta[i, j] == pytest.approx(_brute_roi(fp, tp, t, r), abs=1e-13)
    # the jackknife deletes a case's lesion-free and lesion regions together
    jk = jackknife_fom_matrix(d, "ROI")
    for i, j, k in [(0, 0, 0), (1, 3, 49), (0, 4, 50), (1, 1, 89)]:
        want = _brute_roi(fp, tp, d.treatments[i], d.readers[j], drop_case=d.case_ids[k])
        assert jk[i, j, k] == pytest.approx(want, abs=1e-13)


def test_dataset_roi_dbm_and_or_analyses_run():
    d = read_jafroc_excel(DATASET_ROI)
    dbm = significance_test(d, "ROI", method="DBM")
    orr = significance_test(d, "ROI", method="OR")
    np.testing.assert_array_equal(dbm.foms, fom_matrix(d, "ROI"))
    for res in (dbm, orr):
        for name in ("RRRC", "FRRC", "RRFC"):
            a = res.analyses[name]
            assert math.isfinite(a.statistic) and 0.0 < a.p_value < 1.0
    # with the jackknife, DBM and OR give the same RRRC F test (Hillis 2005)
    assert dbm.analyses["RRRC"].statistic == pytest.approx(orr.analyses["RRRC"].statistic, rel=1e-9)
    assert dbm.analyses["RRRC"].ddf == pytest.approx(orr.analyses["RRRC"].ddf, rel=1e-9)
    with pytest.raises(FomError, match="not defined for ROI"):
        significance_test(d, "wAFROC")


def test_cli_fom_and_st_on_roi_data(tmp_path):
    runner = CliRunner()
    res = runner.invoke(app, ["fom", str(DATASET_ROI), "--fom", "ROI"], env={"COLUMNS": "160"})
    assert res.exit_code == 0, res.output
    assert "ROI" in res.output
    res = runner.invoke(app, ["st", str(DATASET_ROI), "--fom", "ROI", "--method", "BOTH"], env={"COLUMNS": "160"})
    assert res.exit_code == 0, res.output
    assert "DBM" in res.output and "OR" in res.output
    res = runner.invoke(app, ["st", str(DATASET_ROI)], env={"COLUMNS": "160"})  # default wAFROC
    assert res.exit_code != 0
    assert "figure of merit of ROI data is 'ROI'" in res.output


@pytest.mark.parametrize("fast", [True, False])
def test_current_layout_round_trip_keeps_the_roi_paradigm(tmp_path, monkeypatch, fast):
    d = hand_study()
    path = write_jafroc_excel(d, tmp_path / "roi.xlsx")
    truth = openpyxl.load_workbook(path, read_only=True)["TRUTH"]
    assert next(truth.iter_rows(min_row=2, max_row=2, values_only=True))[5] == "ROI"
    if not fast:
        monkeypatch.setattr(jx, "_fast_read", lambda *a, **k: None)
    back = read_jafroc_excel(path)
    assert back.paradigm == "ROI" and back.equals(d)
    assert fom_matrix(back, "ROI")[0, 0] == pytest.approx(2 / 3, abs=1e-15)
