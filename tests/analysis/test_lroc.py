"""LROC data: reading, PCL / ALROC / Wilcoxon figures of merit, LROC -> ROC.

Sources of the expected values
------------------------------
* Hand-worked operating points (below).
* RJafroc 2.1.3 ``UtilFigureOfMerit`` on its toy file ``toyFiles/LROC/lroc.xlsx``
  (``tests/data/rjafroc/excel-examples/_rjafroc_read_results.json``).
* Chakraborty, RJafrocFrocBook, chapter "Standalone CAD vs. radiologists" (appendix, example 3
  and table 1): PCL at FPF = 0.2 of CAD and the nine radiologists of datasetCadLroc, the CAD
  PCL at FPF = 0.05 and 1, and the radiologists' means 0.493 (FPF 0.05) and 0.783 (FPF 1).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import openpyxl
import pytest

from analysis.data import ObserverDataError
from analysis.fom import fom_matrix
from analysis.formats.lroc_excel import is_lroc_workbook, read_lroc_excel
from analysis.lroc import (
    LrocData,
    alroc_at,
    lroc_fom_matrix,
    lroc_jackknife_fom_matrix,
    lroc_operating_points,
    pcl_at,
)
from tests.analysis._workbooks import write_jafroc_book

DATA = Path(__file__).resolve().parents[1] / "data" / "rjafroc"
CAD_LROC = DATA / "datasets" / "datasetCadLroc.xlsx"
TOY = DATA / "excel-examples" / "toyFiles" / "LROC" / "lroc.xlsx"


def _tiny() -> LrocData:
    # normals rated 1 and 3; abnormal A1 correctly localized at 2, A2 mislocalized at 4
    return LrocData(("T",), ("R",), ("N1", "N2"), ("A1", "A2"), fp=[[[1.0, 3.0]]], cl=[[[2.0, -np.inf]]], il=[[[-np.inf, 4.0]]])


def test_operating_points_hand_worked():
    d = _tiny()
    f, p = lroc_operating_points(d.fp[0, 0], d.cl[0, 0])
    # cut-offs 3, 2, 1: FPF = #(normal > z)/2, PCL = #(CL > z)/2
    assert f.tolist() == [0.0, 0.0, 0.5, 0.5]
    assert p.tolist() == [0.0, 0.0, 0.0, 0.5]
    # on the vertical segment at FPF 0.5 the lowest PCL is read; beyond the last point: flat
    assert pcl_at(f, p, 0.5) == 0.0
    assert pcl_at(f, p, 0.75) == 0.5
    assert pcl_at(f, p, 0.25) == 0.0
    assert alroc_at(f, p, 1.0) == pytest.approx(0.25)  # 0.5 wide x 0.5 high
    assert lroc_fom_matrix(d, "Wilcoxon")[0, 0] == pytest.approx(0.75)  # 3 of 4 pairs
    roc = d.to_roc()
    assert roc.paradigm == "ROC"
    assert roc.ll[0, 0, :, 0].tolist() == [2.0, 4.0]
    assert fom_matrix(roc, "Wilcoxon")[0, 0] == pytest.approx(0.75)


def test_interpolation_between_points():
    f = np.array([0.0, 0.0, 0.5, 1.0])
    p = np.array([0.0, 0.2, 0.6, 0.8])
    assert pcl_at(f, p, 0.25) == pytest.approx(0.4)
    # area: 0.25 wide trapezoid from 0.2 to 0.4
    assert alroc_at(f, p, 0.25) == pytest.approx(0.25 * (0.2 + 0.4) / 2)
    with pytest.raises(ObserverDataError, match=r"\(0, 1\]"):
        pcl_at(f, p, 0.0)


def test_toy_file_matches_rjafroc():
    expected = json.loads((DATA / "excel-examples" / "_rjafroc_read_results.json").read_text())
    exp = expected["toyFiles/LROC/lroc.xlsx [newExcelFileFormat=TRUE]"]["foms"]
    d = read_lroc_excel(TOY)
    assert d.treatments == ("0", "1") and d.readers == ("0", "1", "2")
    assert (d.n_normal, d.n_abnormal) == (3, 5)
    for fom in ("PCL", "ALROC", "Wilcoxon"):
        np.testing.assert_allclose(lroc_fom_matrix(d, fom, 0.2), exp[fom]["values"], atol=1e-12)


def test_cad_lroc_pcl_matches_published_values():
    d = read_lroc_excel(CAD_LROC)
    assert d.readers[0] == "1" and d.n_readers == 10 and (d.n_normal, d.n_abnormal) == (120, 80)
    pcl02 = lroc_fom_matrix(d, "PCL", 0.2)[0]
    published = [0.59166667, 0.69453125, 0.65, 0.80625, 0.725, 0.65982143, 0.76845238, 0.7375, 0.675, 0.675]
    np.testing.assert_allclose(pcl02, published, atol=5e-9)
    pcl005 = lroc_fom_matrix(d, "PCL", 0.05)[0]
    assert pcl005[0] == pytest.approx(0.45)
    assert pcl005[1:].mean() == pytest.approx(0.493, abs=5e-4)
    pcl1 = lroc_fom_matrix(d, "PCL", 1.0)[0]
    assert pcl1[0] == pytest.approx(0.675)
    assert pcl1[1:].mean() == pytest.approx(0.783, abs=5e-4)
    # Wilcoxon of the LROC data = Wilcoxon of the ROC data (DfLroc2Roc) = dataset09's AUC 0.817
    w = lroc_fom_matrix(d, "Wilcoxon")[0]
    assert w[0] == pytest.approx(0.817, abs=5e-4)
    np.testing.assert_allclose(w, fom_matrix(d.to_roc(), "Wilcoxon")[0], atol=1e-12)


def test_jackknife_deletes_each_case():
    d = read_lroc_excel(TOY).select(treatments=["0"], readers=["0", "1"])
    for fom in ("PCL", "ALROC", "Wilcoxon"):
        jk = lroc_jackknife_fom_matrix(d, fom, 0.2)
        assert jk.shape == (1, 2, 8)
        for k, case in enumerate(d.case_ids):
            keep_n = [c for c in d.normal_cases if c != case]
            keep_a = [c for c in d.abnormal_cases if c != case]
            ni = [d.normal_cases.index(c) for c in keep_n]
            ai = [d.abnormal_cases.index(c) for c in keep_a]
            smaller = LrocData(d.treatments, d.readers, keep_n, keep_a, d.fp[:, :, ni], d.cl[:, :, ai], d.il[:, :, ai])
            np.testing.assert_allclose(jk[:, :, k], lroc_fom_matrix(smaller, fom, 0.2), atol=1e-12)


_write = write_jafroc_book


TRUTH = [[1, 0, 0, "1,2", "A", "LROC"], [2, 0, 0, "1,2", "A", "FCTRL"], [3, 1, 1, "1,2", "A", None]]


def test_reader_errors_name_sheet_and_row(tmp_path):
    good = _write(
        tmp_path / "good.xlsx", TRUTH, [[1, "A", 1, 1], [1, "A", 2, 2], [2, "A", 1, 1], [2, "A", 2, 2], [2, "A", 3, 5]], [[1, "A", 3, 1, 4]]
    )
    assert is_lroc_workbook(good)
    d = read_lroc_excel(good)
    assert d.cl[0, :, 0].tolist() == [4.0, -np.inf]
    assert d.il[0, :, 0].tolist() == [-np.inf, 5.0]
    bad = _write(tmp_path / "bad.xlsx", TRUTH, [[1, "A", 1, 1], [1, "A", 1, 2]], [[1, "A", 1, 1, 4]])
    with pytest.raises(ObserverDataError) as exc:
        read_lroc_excel(bad)
    text = str(exc.value)
    assert "sheet 'FP', row 3" in text and "one mark per case" in text
    assert "sheet 'TP', row 2" in text and "normal case" in text


def test_jafroc_reader_points_lroc_files_to_the_lroc_reader():
    from analysis.io import read_observer_data

    with pytest.raises(ObserverDataError, match="read_lroc_excel"):
        read_observer_data(CAD_LROC)


def test_treatment_comparison_on_lroc_data():
    from analysis.lroc import lroc_significance_test
    from analysis.significance import significance_test

    d = read_lroc_excel(TOY)
    with pytest.warns(Warning):  # tiny toy: per-reader FRRC notes
        ours = lroc_significance_test(d, "Wilcoxon")
    with pytest.warns(Warning):
        ref = significance_test(d.to_roc(), "Wilcoxon", method="OR")
    for name in ("RRRC", "FRRC", "RRFC"):
        assert ours.analyses[name].statistic == pytest.approx(ref.analyses[name].statistic, rel=1e-12)
        assert ours.analyses[name].p_value == pytest.approx(ref.analyses[name].p_value, rel=1e-12)
    pcl = lroc_significance_test(read_lroc_excel(TOY), "PCL", fpf=0.2, analyses="RRRC")
    assert pcl.fom == "PCL@0.2"
    # reader-averaged PCL@0.2 from RJafroc's toy values: (0.8+0.6+0.6)/3 and (0.8+0.6+0)/3
    assert pcl.foms.mean(axis=1) == pytest.approx([2.0 / 3, 1.4 / 3])
    with pytest.raises(ObserverDataError, match="at least 2"):
        lroc_significance_test(read_lroc_excel(CAD_LROC), "PCL")


def test_write_read_round_trip(tmp_path):
    from analysis.formats.lroc_excel import write_lroc_excel

    d = read_lroc_excel(CAD_LROC)
    out = write_lroc_excel(d, tmp_path / "copy.xlsx")
    back = read_lroc_excel(out)
    assert back.readers == d.readers and back.case_ids == d.case_ids
    for a in ("fp", "cl", "il"):
        np.testing.assert_array_equal(getattr(back, a), getattr(d, a))
    # sheet names sorted as RJafroc sorts them: FP, TP, TRUTH (TP second)
    assert sorted(openpyxl.load_workbook(out, read_only=True).sheetnames) == ["FP", "TP", "TRUTH"]
    tiny = _tiny()
    back = read_lroc_excel(write_lroc_excel(tiny, tmp_path / "tiny.xlsx"))
    assert back.il[0, 0].tolist() == [-np.inf, 4.0] and back.cl[0, 0].tolist() == [2.0, -np.inf]
