"""Stand-alone CAD vs. radiologists (RJafroc ``StCadVsRad``, 1T-RRRC and 1T-RRFC).

Published values: Chakraborty, RJafrocFrocBook, chapter "Standalone CAD vs. radiologists"
(github.com/dpc10ster/RJafrocFrocBook, 20-standalone-cad): table 1 (rounded to 2-3 digits) and
the full-precision printouts of its appendix (examples 1 and 3: datasetCadLroc, PCL at FPF 0.2).
Hand-worked cases check the formulas independently.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.cad_vs_rad import (
    add_cad_reader,
    cad_marks_from_case_marks,
    cad_vs_rad,
    read_cad_marks,
    st_cad_vs_rad,
)
from analysis.data import ObserverData, ObserverDataError
from analysis.fom import fom_matrix
from analysis.formats.lroc_excel import read_lroc_excel
from analysis.io import read_observer_data

DATA = Path(__file__).resolve().parents[1] / "data" / "rjafroc" / "datasets"


@pytest.fixture(scope="module")
def cad_lroc():
    return read_lroc_excel(DATA / "datasetCadLroc.xlsx")


def test_rrfc_pcl02_matches_published_printout(cad_lroc):
    r = st_cad_vs_rad(cad_lroc, "PCL", method="1T-RRFC", fpf=0.2)
    assert r.cad_reader == "1" and len(r.readers) == 9
    assert r.fom_cad == pytest.approx(0.59166667, abs=5e-9)
    assert r.avg_rad_fom == pytest.approx(0.71017278, abs=5e-9)
    assert r.avg_diff_fom == pytest.approx(0.11850612, abs=5e-9)
    assert r.var_r == pytest.approx(0.002808612, abs=5e-10)
    assert r.tstat == pytest.approx(6.7083568, abs=5e-8)
    assert r.df == 8
    assert r.pval == pytest.approx(0.00015139664, rel=1e-7)
    assert r.ci_avg_rad_fom == pytest.approx((0.66943619, 0.75090938), abs=5e-9)
    assert r.ci_avg_diff_fom == pytest.approx((0.077769525, 0.159242710), abs=5e-9)


def test_rrrc_pcl02_matches_published_printout(cad_lroc):
    r = st_cad_vs_rad(cad_lroc, "PCL", method="1T-RRRC", fpf=0.2)
    assert r.var_r == pytest.approx(0.002808612, abs=5e-10)
    assert r.var_error == pytest.approx(0.0053445377, abs=5e-11)
    assert r.cov2 == pytest.approx(0.0030657054, abs=5e-11)
    assert r.tstat == pytest.approx(2.0390389, abs=5e-8)
    assert r.df == pytest.approx(937.24371, abs=5e-6)
    assert r.pval == pytest.approx(0.041726262, abs=5e-10)
    assert r.ci_avg_diff_fom == pytest.approx((0.004448434, 0.232563801), abs=5e-10)
    assert r.ci_avg_rad_fom == pytest.approx((0.59611510, 0.82423047), abs=5e-9)
    assert r.n_cases == 200
    d = r.to_dict()
    assert d["FStat"] == pytest.approx(2.0390389**2, rel=1e-7) and d["ndf"] == 1
    assert "the radiologists are better than the detector" in r.summary()


# (FOM, FPF, method) -> (F, ddf, p) from table 1 of the chapter (rounded as printed there)
TABLE1 = [
    ("PCL", 0.05, "1T-RRFC", 1.8, 8, 0.22),
    ("PCL", 0.05, "1T-RRRC", 0.18, 784, 0.67),
    ("PCL", 1.0, "1T-RRFC", 33, 8, 0.00043),
    ("PCL", 1.0, "1T-RRRC", 4.2, 493, 0.041),
]


@pytest.mark.parametrize("fom,fpf,method,f,ddf,p", TABLE1)
def test_table1_lroc(cad_lroc, fom, fpf, method, f, ddf, p):
    r = st_cad_vs_rad(cad_lroc, fom, method=method, fpf=fpf)
    assert float(f"{r.fstat:.2g}") == f
    assert round(r.df) == ddf
    assert float(f"{r.pval:.2g}") == p


def test_dataset09_wilcoxon_matches_table1():
    d = read_observer_data(DATA / "dataset09.xlsx")
    rrfc = st_cad_vs_rad(d, method="1T-RRFC")
    rrrc = st_cad_vs_rad(d, method="1T-RRRC")
    assert rrfc.fom == "Wilcoxon"
    assert (round(rrfc.fom_cad, 3), round(rrfc.avg_rad_fom, 3), round(rrfc.avg_diff_fom, 4)) == (0.817, 0.849, 0.0317)
    assert (float(f"{rrfc.fstat:.2g}"), rrfc.df, float(f"{rrfc.pval:.2g}")) == (10, 8, 0.012)
    assert (round(rrfc.ci_avg_diff_fom[0], 3), round(rrfc.ci_avg_diff_fom[1], 3)) == (0.009, 0.055)
    assert (float(f"{rrrc.fstat:.2g}"), round(rrrc.df), float(f"{rrrc.pval:.2g}")) == (0.99, 878, 0.32)
    assert (round(rrrc.ci_avg_diff_fom[0], 3), round(rrrc.ci_avg_diff_fom[1], 3)) == (-0.031, 0.094)
    # table 3: varR 0.000878, Cov2 0.000924, Var 0.0014
    assert (round(rrrc.var_r, 6), round(rrrc.cov2, 6), round(rrrc.var_error, 4)) == (0.000878, 0.000924, 0.0014)


def test_lroc_wilcoxon_equals_roc_analysis(cad_lroc):
    a = st_cad_vs_rad(cad_lroc, "Wilcoxon")
    b = st_cad_vs_rad(cad_lroc.to_roc())
    assert a.pval == pytest.approx(b.pval, rel=1e-12) and a.df == pytest.approx(b.df, rel=1e-12)


def test_hand_worked_rrfc_is_a_one_sample_t_test():
    r = cad_vs_rad(0.7, [0.8, 0.9], method="1T-RRFC")
    # psi = (0.1, 0.2): mean 0.15, variance 0.005, SE 0.05, t = 3 on 1 df (Cauchy)
    assert r.tstat == pytest.approx(3.0)
    assert r.pval == pytest.approx(1 - 2 / math.pi * math.atan(3.0))
    assert r.ci_avg_diff_fom == pytest.approx((0.15 - 12.7062047 * 0.05, 0.15 + 12.7062047 * 0.05), abs=1e-6)


def test_hand_worked_rrrc():
    # 2 radiologists, 3 cases; jackknife FOMs chosen by hand
    jk_cad = np.array([0.70, 0.72, 0.68])
    jk_rad = np.array([[0.80, 0.83, 0.77], [0.90, 0.91, 0.86]])
    r = cad_vs_rad(0.70, [0.80, 0.90], jk_cad, jk_rad, method="1T-RRRC")
    d = jk_rad - jk_cad  # psi with case k deleted: [[.10,.11,.09],[.20,.19,.18]]
    dc = d - d.mean(axis=1, keepdims=True)
    cov = dc @ dc.T * (2 / 3)
    assert r.var_error == pytest.approx((cov[0, 0] + cov[1, 1]) / 2)
    assert r.cov2 == pytest.approx(cov[0, 1])
    ms_den = 0.005 + 2 * max(cov[0, 1], 0)
    assert r.se == pytest.approx(math.sqrt(ms_den / 2))
    assert r.df == pytest.approx(ms_den**2 / (0.005**2 / 1))
    assert r.tstat == pytest.approx(0.15 / math.sqrt(ms_den / 2))


def test_degenerate_gives_nan_with_reason():
    r = cad_vs_rad(0.8, [0.8, 0.8], np.full(4, 0.8), np.full((2, 4), 0.8), method="1T-RRRC")
    assert math.isnan(r.pval) and math.isnan(r.tstat)
    assert any("zero" in n for n in r.notes)
    assert "no test" in r.summary()
    assert r.to_dict()["pval"] is None
    with pytest.raises(ObserverDataError, match="at least 2 radiologists"):
        cad_vs_rad(0.8, [0.7], method="1T-RRFC")


def _froc_study() -> ObserverData:
    truth = pd.DataFrame(
        [
            {"case_id": "n1", "lesion_id": None},
            {"case_id": "n2", "lesion_id": None},
            {"case_id": "n3", "lesion_id": None},
            {"case_id": "a1", "lesion_id": "1"},
            {"case_id": "a1", "lesion_id": "2"},
            {"case_id": "a2", "lesion_id": "1"},
            {"case_id": "a3", "lesion_id": "1"},
        ]
    )
    nl, ll = [], []
    rng = np.random.default_rng(3)
    for r in ("R1", "R2", "R3"):
        for c in ("n1", "n2", "n3", "a2"):
            nl.append({"treatment": "T", "reader": r, "case_id": c, "rating": float(rng.integers(1, 5))})
        for c, l in (("a1", "1"), ("a1", "2"), ("a2", "1"), ("a3", "1")):
            ll.append({"treatment": "T", "reader": r, "case_id": c, "lesion_id": l, "rating": float(rng.integers(2, 7))})
    return ObserverData.from_marks(truth, pd.DataFrame(nl), pd.DataFrame(ll), paradigm="FROC")


def test_add_cad_reader_froc_from_detector_marks():
    study = _froc_study()

    class Marks:  # duck-typed detector.froc.CaseMarks
        def __init__(self, case_id, nl, ll):
            self.case_id, self.nl_ratings, self.ll_ratings = case_id, nl, ll

    marks = cad_marks_from_case_marks(
        [
            Marks("n1", [0.5, 2.5, 1.0], {}),
            Marks("n2", [], {}),
            Marks("n3", [3.0], {}),
            Marks("a1", [], {"1": 4.0, "2": None}),
            Marks("a2", [1.5], {"1": 2.0}),
            Marks("a3", [], {"1": 5.0}),
        ]
    )
    with_cad = add_cad_reader(study, marks, reader_id="CAD")
    assert with_cad.readers == ("CAD", "R1", "R2", "R3")
    assert with_cad.max_nl == 3
    # the radiologists' FOMs are unchanged; CAD's equals that of a study with CAD alone
    np.testing.assert_allclose(fom_matrix(with_cad, "wAFROC")[:, 1:], fom_matrix(study, "wAFROC"))
    cad_alone = with_cad.select_readers(["CAD"])
    # wAFROC by hand: FP_k1 = 2.5, -inf, 3.0; lesions a1: 4 (w .5), -inf (w .5); a2: 2; a3: 5
    # pairs (FP, case): a1 -> .5*(1,1,1) + .5*(0,.5,0); a2 -> (0,1,0); a3 -> (1,1,1)
    expected = ((1.5 + 0.25) + 1 + 3) / 9
    assert fom_matrix(cad_alone, "wAFROC")[0, 0] == pytest.approx(expected)
    r = st_cad_vs_rad(with_cad, "wAFROC", cad_reader="CAD")
    assert r.fom_cad == pytest.approx(expected) and r.readers == ("R1", "R2", "R3")
    with pytest.raises(ObserverDataError, match="already a reader"):
        add_cad_reader(study, marks, reader_id="R1")


def test_read_cad_marks_roc_and_errors(tmp_path):
    d = read_observer_data(DATA / "dataset02.xlsx").select_treatments(["0"])
    csv = tmp_path / "cad.csv"
    rows = ["case_id,lesion_id,rating,x_mm"]
    for k, c in enumerate(d.case_ids):
        rows.append(f"{c},,{k % 7},1.5")
    csv.write_text("\n".join(rows) + "\n")
    marks = read_cad_marks(str(csv))
    with_cad = add_cad_reader(d, marks)
    assert with_cad.paradigm == "ROC" and with_cad.readers[0] == "CAD"
    r = st_cad_vs_rad(with_cad, cad_reader="CAD", method="1T-RRRC")
    assert 0 <= r.pval <= 1 and r.n_cases == d.n_cases
    (tmp_path / "bad.csv").write_text("case_id,rating\nx,abc\n")
    with pytest.raises(ObserverDataError, match="row 2.*not a number"):
        read_cad_marks(str(tmp_path / "bad.csv"))


def test_multi_treatment_needs_a_treatment():
    d = read_observer_data(DATA / "dataset02.xlsx")
    with pytest.raises(ObserverDataError, match="choose it"):
        st_cad_vs_rad(d)
    r = st_cad_vs_rad(d, treatment="1", cad_reader="0", method="1T-RRFC")
    assert r.treatment == "1" and r.cad_reader == "0" and len(r.readers) == 4


def test_add_cad_reader_lroc(cad_lroc):
    rads = cad_lroc.select(readers=list(cad_lroc.readers[1:]))
    cad = cad_lroc.select(readers=["1"])
    rows = []
    for k, c in enumerate(cad.normal_cases):
        rows.append({"case_id": c, "lesion_id": "", "rating": cad.fp[0, 0, k]})
    for k, c in enumerate(cad.abnormal_cases):
        # the case's highest-rated mark decides: a correct localization carries lesion 1
        if cad.cl[0, 0, k] >= cad.il[0, 0, k]:
            rows.append({"case_id": c, "lesion_id": "1", "rating": cad.cl[0, 0, k]})
        else:
            rows.append({"case_id": c, "lesion_id": "", "rating": cad.il[0, 0, k]})
    rebuilt = add_cad_reader(rads, pd.DataFrame(rows), reader_id="CAD")
    ref = st_cad_vs_rad(cad_lroc, "PCL", fpf=0.2)
    ours = st_cad_vs_rad(rebuilt, "PCL", fpf=0.2, cad_reader="CAD")
    assert ours.fom_cad == pytest.approx(ref.fom_cad) and ours.pval == pytest.approx(ref.pval, rel=1e-12)
    with pytest.raises(ObserverDataError, match="normal case"):
        add_cad_reader(rads, pd.DataFrame([{"case_id": cad.normal_cases[0], "lesion_id": "1", "rating": 3.0}]))


def test_detector_marks_csv_gives_the_in_memory_result(tmp_path):
    """``tsct detect evaluate``'s marks_<method>.csv (detector.detection_eval.write_marks_csv)
    read by read_cad_marks is the same CAD reader as the detector's marks passed in memory."""
    from detector.detection_eval import write_marks_csv

    class Marks:  # duck-typed detector.froc.CaseMarks
        def __init__(self, case_id, nl, ll):
            self.case_id, self.nl_ratings, self.ll_ratings = case_id, nl, ll

    case_marks = [
        Marks("n1", [0.5, 2.5, 1.0], {}),
        Marks("n3", [3.0], {}),
        Marks("a1", [], {"1": 4.0, "2": None}),
        Marks("a2", [1.5], {"1": 2.0}),
        Marks("a3", [0.25], {"1": 5.0}),
    ]
    study = _froc_study()
    path = write_marks_csv(case_marks, tmp_path / "marks_zmap.csv")
    from_csv = add_cad_reader(study, read_cad_marks(str(path)), reader_id="CAD")
    in_memory = add_cad_reader(study, cad_marks_from_case_marks(case_marks), reader_id="CAD")
    assert from_csv.equals(in_memory)
    for fom in ("wAFROC", "HrAuc"):  # FROC, and its highest-rating ROC
        a = st_cad_vs_rad(from_csv, fom, cad_reader="CAD")
        b = st_cad_vs_rad(in_memory, fom, cad_reader="CAD")
        assert a.to_dict() == b.to_dict()
