"""DBM and Obuchowski-Rockette significance tests against RJafroc 2.1.3 and OR-DBM MRMC 2.51.

Reference numbers:

* ``tests/data/rjafroc/expected/st/<dataset>.json``: RJafroc 2.1.3 (commit 44b0e39e, R 4.2.2)
  ``St(dataset, FOM = fom, method = "DBM" | "OR", analysisOption = "RRRC" | "FRRC" | "RRFC")``
  for dataset02-05 and every FOM; ``expected/pseudovalues/<dataset>.json`` holds
  ``UtilPseudoValues(dataset, fom)`` (jackknife FOMs and pseudovalues), the array-level input.
* ``tests/data/rjafroc/third-party-outputs/iowa-or-dbm-mrmc/*.txt``: the Iowa OR-DBM MRMC 2.51
  program on Van Dyke (dataset02), its first reader only, Franken (dataset03) and the
  highest-rating ROC of Federica (dataset04).

Every number in ``expected/st`` is compared at relative 1e-9 (absolute 1e-12 near zero).
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from analysis import (
    MRMCInputError,
    MRMCWarning,
    significance_test,
)
from analysis.stats import (
    auc_structural_components,
    bootstrap_covariance,
    dbm_analysis,
    delong_covariance,
    jackknife_covariance,
    or_analysis,
    pseudovalues_from_jackknife,
    trc_anova,
)
from analysis.stats._distributions import t_two_sided_p
from tests.analysis.rjafroc_reference import raw_pseudovalues, raw_st, reference_data

DATA = Path(__file__).resolve().parents[1] / "data" / "rjafroc"
IOWA = DATA / "third-party-outputs" / "iowa-or-dbm-mrmc"
RTOL, ATOL = 1e-9, 1e-12
DATASETS = ("dataset02", "dataset03", "dataset04", "dataset05")


# ------------------------------------------------------------------------------------------
# Reference loading (JSON conventions: README-upstream.md)
# ------------------------------------------------------------------------------------------

_SPECIAL = {"NA": math.nan, "NaN": math.nan, "Inf": math.inf, "-Inf": -math.inf}


def _num(v):
    return _SPECIAL.get(v, v) if isinstance(v, str) else v


def _array(obj) -> np.ndarray:
    return np.array([_num(v) for v in obj["values"]], dtype=float).reshape(obj["dim"], order="F")


def _frame(obj) -> tuple[list[str], dict[str, list[float]]]:
    cols = {k: [_num(x) for x in (v if isinstance(v, list) else [v])] for k, v in obj["columns"].items()}
    return obj["rownames"], cols


_st = raw_st


_pv = raw_pseudovalues


_data = reference_data


def _cases():
    return [(d, f) for d in DATASETS for f in _pv(d)]


class Checker:
    """Accumulates comparisons so one failure message lists every mismatch."""

    def __init__(self, label: str):
        self.label = label
        self.failures: list[str] = []
        self.count = 0

    def __call__(self, actual, expected, where: str) -> None:
        if expected is None or (isinstance(expected, float) and math.isnan(expected)):
            return
        self.count += 1
        a = float(np.nan if actual is None else actual)
        e = float(expected)
        if math.isinf(e):
            ok = a == e
        else:
            ok = abs(a - e) <= ATOL + RTOL * abs(e)
        if not ok:
            self.failures.append(f"{where}: {a!r} != {e!r}")

    def done(self, minimum: int = 1) -> None:
        assert not self.failures, f"{self.label}: {len(self.failures)} mismatches:\n" + "\n".join(self.failures[:30])
        assert self.count >= minimum, f"{self.label}: only {self.count} numbers compared"


def _compare_comparisons(check, frame, comparisons, where, check_ids=True):
    rows, cols = frame
    assert len(rows) == len(comparisons), where
    if check_ids:
        assert [c.label for c in comparisons] == rows, where
    for k, c in enumerate(comparisons):
        for col, val in (
            ("Estimate", c.estimate),
            ("StdErr", c.se),
            ("DF", c.df),
            ("t", c.statistic),
            ("z", c.statistic),
            ("PrGTt", c.p_value),
            ("PrGTz", c.p_value),
            ("CILower", c.ci_lower),
            ("CIUpper", c.ci_upper),
        ):
            if col in cols:
                check(val, cols[col][k], f"{where}/{rows[k]}/{col}")


def compare_with_rjafroc(result, expected: dict, method: str, analysis: str, label: str, check_ids: bool = True) -> Checker:
    """Compare every number of one RJafroc ``St()`` output with a SignificanceResult.

    ``check_ids=False`` matches treatments/readers by position (RJafroc's DfFroc2Roc renames
    readers to 1..J; this package keeps the original IDs).
    """
    check = Checker(label)
    foms = expected["FOMs"]["foms"]
    trts, rdrs = foms["dimnames"]
    if check_ids:
        assert [trts, rdrs] == [[f"trt{t}" for t in result.treatments], [f"rdr{r}" for r in result.readers]], label
    trt_id = dict(zip(trts, result.treatments))
    rdr_id = dict(zip(rdrs, result.readers))
    e_foms = _array(foms)
    for i in range(len(trts)):
        for j in range(len(rdrs)):
            check(result.foms[i, j], e_foms[i, j], f"foms[{i},{j}]")
    _, means = _frame(expected["FOMs"]["trtMeans"])
    for i, m in enumerate(means["Estimate"]):
        check(result.treatment_means[i], m, f"trtMeans[{i}]")
    res = result.analyses[analysis]
    rows, diffs = _frame(expected["FOMs"]["trtMeanDiffs"])
    for k, d in enumerate(diffs["Estimate"]):
        check(res.differences[k].estimate, d, f"trtMeanDiffs[{k}]")

    an = expected["ANOVA"]
    table = "TRCanova" if method == "DBM" else "TRanova"
    rows, cols = _frame(an[table])
    for k, s in enumerate(rows):
        for col in ("SS", "DF", "MS"):
            check(result.anova.value(s, col), cols[col][k], f"{table}/{s}/{col}")
    rows, cols = _frame(an["VarCom"])
    for k, s in enumerate(rows):
        check(result.variance_components.value(s, "estimate"), cols["Estimates"][k], f"VarCom/{s}")
        if method == "OR":
            check(result.variance_components.value(s, "rho"), cols["Rhos"][k], f"VarCom/{s}/rho")
    if method == "DBM":
        rows, cols = _frame(an["IndividualTrt"])
        for k, s in enumerate(rows):
            check(result.treatment_anova[f"df_{s}"][0], cols["DF"][k], f"IndividualTrt/{s}/DF")
            for t in trts:
                check(result.treatment_anova.value(trt_id[t], s), cols[t][k], f"IndividualTrt/{s}/{t}")
        rows, cols = _frame(an["IndividualRdr"])
        for k, s in enumerate(rows):
            check(result.reader_anova[f"df_{s}"][0], cols["DF"][k], f"IndividualRdr/{s}/DF")
            for r in rdrs:
                check(result.reader_anova.value(rdr_id[r], s), cols[r][k], f"IndividualRdr/{s}/{r}")
    else:
        rows, cols = _frame(an["IndividualTrt"])
        for k, t in enumerate(rows):
            for col, mine in (("DF", "df_msR"), ("msREachTrt", "msR"), ("varEachTrt", "var"), ("cov2EachTrt", "cov2")):
                check(result.treatment_anova.value(trt_id[t], mine), cols[col][k], f"IndividualTrt/{t}/{col}")
        rows, cols = _frame(an["IndividualRdr"])
        for k, r in enumerate(rows):
            for col, mine in (("DF", "df_msT"), ("msTEachRdr", "msT"), ("varEachRdr", "var"), ("cov1EachRdr", "cov1")):
                check(result.reader_anova.value(rdr_id[r], mine), cols[col][k], f"IndividualRdr/{r}/{col}")

    block = expected[analysis]
    rows, cols = _frame(block["FTests"])
    if "Chisq" in cols:  # OR FRRC
        assert res.statistic_name == "chi2" and res.ddf is None
        check(res.ms_treatment, cols["MS"][0], "FTests/MS_T")
        check(res.ms_error, cols["MS"][1], "FTests/MSden")
        check(res.statistic, cols["Chisq"][0], "FTests/Chisq")
        check(res.df, cols["DF"][0], "FTests/DF")
        check(res.p_value, cols["p"][0], "FTests/p")
    else:
        assert res.statistic_name == "F"
        stat_col = "FStat" if "FStat" in cols else "F"
        check(res.df, cols["DF"][0], "FTests/ndf")
        check(res.ddf, cols["DF"][1], "FTests/ddf")
        check(res.ms_treatment, cols["MS"][0], "FTests/MS_T")
        check(res.ms_error, cols["MS"][1], "FTests/MSden")
        check(res.statistic, cols[stat_col][0], "FTests/F")
        check(res.p_value, cols["p"][0], "FTests/p")
    _compare_comparisons(check, _frame(block["ciDiffTrt"]), res.differences, "ciDiffTrt", check_ids)
    rows, cols = _frame(block["ciAvgRdrEachTrt"])
    assert rows == trts
    for k, t in enumerate(res.treatment_cis):
        for col, val in (
            ("Estimate", t.estimate),
            ("StdErr", t.se),
            ("DF", t.df),
            ("CILower", t.ci_lower),
            ("CIUpper", t.ci_upper),
            ("Cov2", t.cov2),
        ):
            if col in cols:
                check(val, cols[col][k], f"ciAvgRdrEachTrt/{rows[k]}/{col}")
    if "ciDiffTrtEachRdr" in block:
        assert res.reader_differences
        _compare_comparisons(check, _frame(block["ciDiffTrtEachRdr"]), res.reader_differences, "ciDiffTrtEachRdr", check_ids)
    else:
        assert not res.reader_differences
    if "IndividualRdrVarCov1" in block:
        rows, cols = _frame(block["IndividualRdrVarCov1"])
        for k, r in enumerate(rows):
            check(result.reader_anova.value(rdr_id[r], "var"), cols["varEachRdr"][k], f"IndividualRdrVarCov1/{r}/var")
            check(result.reader_anova.value(rdr_id[r], "cov1"), cols["cov1EachRdr"][k], f"IndividualRdrVarCov1/{r}/cov1")
    return check


def _ids(expected: dict) -> tuple[list[str], list[str]]:
    t, r = expected["FOMs"]["foms"]["dimnames"]
    return [x[3:] for x in t], [x[3:] for x in r]


# ------------------------------------------------------------------------------------------
# Array level: RJafroc's jackknife FOMs in, RJafroc's St() out
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dataset,fom", _cases())
def test_pseudovalues_match_rjafroc(dataset, fom):
    entry = _pv(dataset)[fom]
    foms = _array(_st(dataset)[f"{fom}|DBM|RRRC"]["FOMs"]["foms"])
    pv = pseudovalues_from_jackknife(foms, _array(entry["jkFomValues"]))
    np.testing.assert_allclose(pv, _array(entry["jkPseudoValues"]), rtol=1e-11, atol=1e-9)


@pytest.mark.parametrize("dataset,fom", _cases())
def test_dbm_and_or_equal_rjafroc_from_jackknife_arrays(dataset, fom):
    st = _st(dataset)
    jk = _array(_pv(dataset)[fom]["jkFomValues"])
    foms = _array(st[f"{fom}|DBM|RRRC"]["FOMs"]["foms"])
    trts, rdrs = _ids(st[f"{fom}|DBM|RRRC"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MRMCWarning)
        dbm = dbm_analysis(foms, pseudovalues_from_jackknife(foms, jk), treatments=trts, readers=rdrs, fom=fom)
        orr = or_analysis(foms, jackknife_covariance(jk), n_cases=jk.shape[2], treatments=trts, readers=rdrs, fom=fom)
    for method, res in (("DBM", dbm), ("OR", orr)):
        for analysis in ("RRRC", "FRRC", "RRFC"):
            key = f"{fom}|{method}|{analysis}"
            compare_with_rjafroc(res, st[key], method, analysis, f"{dataset} {key}").done(minimum=40)


@pytest.mark.parametrize("dataset,fom", [(d, f) for d in DATASETS for f in _pv(d)])
def test_or_variance_components_equal_util_or_var_comp(dataset, fom):
    """``UtilORVarComp(dataset, fom, covEstMethod = "jackknife")`` and ``UtilDBMVarComp``."""
    st = _st(dataset)
    jk = _array(_pv(dataset)[fom]["jkFomValues"])
    foms = _array(st[f"{fom}|OR|RRRC"]["FOMs"]["foms"])
    res = or_analysis(foms, jackknife_covariance(jk), n_cases=jk.shape[2], analyses="RRRC")
    rows, cols = _frame(st[f"UtilORVarComp|{fom}|jackknife"]["VarCom"])
    for k, s in enumerate(rows):
        assert res.variance_components.value(s, "estimate") == pytest.approx(cols["Estimates"][k], rel=RTOL, abs=ATOL)
    dbm = dbm_analysis(foms, pseudovalues_from_jackknife(foms, jk), analyses="RRRC")
    rows, cols = _frame(st[f"UtilDBMVarComp|{fom}"]["VarCom"])
    for k, s in enumerate(rows):
        assert dbm.variance_components.value(s, "estimate") == pytest.approx(cols["Estimates"][k], rel=RTOL, abs=ATOL)


# ------------------------------------------------------------------------------------------
# End to end: Excel file -> ObserverData -> significance_test
# ------------------------------------------------------------------------------------------

END_TO_END = [
    ("dataset02", "Wilcoxon", False),
    ("dataset03", "Wilcoxon", False),
    ("dataset04", "wAFROC", False),
    ("dataset04", "HrSe", False),
    ("dataset04", "Wilcoxon_of_DfFroc2Roc", True),
    ("dataset05", "wAFROC", False),
    ("dataset05", "MaxNLF", False),
]


@pytest.mark.parametrize("dataset,fom,to_roc", END_TO_END)
@pytest.mark.parametrize("method", ["DBM", "OR"])
def test_significance_test_from_excel_equals_rjafroc(dataset, fom, to_roc, method):
    data = _data(dataset)
    if to_roc:
        data = data.to_roc()
    st = _st(dataset)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MRMCWarning)
        result = significance_test(data, "Wilcoxon" if to_roc else fom, method=method)
    assert list(result.analyses) == ["RRRC", "FRRC", "RRFC"]
    for analysis in ("RRRC", "FRRC", "RRFC"):
        key = f"{fom}|{method}|{analysis}"
        compare_with_rjafroc(result, st[key], method, analysis, key, check_ids=not to_roc).done(minimum=40)
    if to_roc:  # our highest-rating ROC keeps the reader IDs of the file
        assert result.readers == data.readers == _data(dataset).readers


def test_ids_are_kept_exactly_as_in_the_file():
    data = _data("dataset03")
    result = significance_test(data, "Wilcoxon", method="OR", analyses="RRRC")
    assert result.treatments == ("TREAT1", "TREAT2")
    assert result.readers == ("READER_1", "READER_2", "READER_3", "READER_4")
    doc = result.to_dict()
    assert list(doc["foms"]) == ["TREAT1", "TREAT2"]
    assert list(doc["foms"]["TREAT1"]) == ["READER_1", "READER_2", "READER_3", "READER_4"]
    assert doc["analyses"]["RRRC"]["differences"][0]["treatments"] == ["TREAT1", "TREAT2"]


# ------------------------------------------------------------------------------------------
# Independent second reference: Iowa OR-DBM MRMC 2.51 (printed to 5-8 decimals)
# ------------------------------------------------------------------------------------------


def test_van_dyke_equals_iowa_or_dbm_mrmc():
    """``VanDyke.txt``: OR analysis of Van Dyke (dataset02), trapezoidal AUC, jackknife."""
    assert "0.00107626" in (IOWA / "VanDyke.txt").read_text()
    r = significance_test(_data("dataset02"), "Wilcoxon", method="OR")
    vc = {k: r.variance_components.value(k, "estimate") for k in r.variance_components.index}
    for key, value in {
        "VarR": 0.00153500,
        "VarTR": 0.00020040,
        "Cov1": 0.00034661,
        "Cov2": 0.00034407,
        "Cov3": 0.00023903,
        "Var": 0.00080229,
    }.items():
        assert vc[key] == pytest.approx(value, abs=5e-9)
    rrrc = r["RRRC"]
    assert rrrc.ms_error == pytest.approx(0.00107626, abs=5e-9)
    assert rrrc.ddf == pytest.approx(15.26, abs=5e-3)
    d = rrrc.differences[0]
    assert (d.estimate, d.se) == (pytest.approx(-0.04380, abs=5e-6), pytest.approx(0.02075, abs=5e-6))
    assert (d.ci_lower, d.ci_upper) == (pytest.approx(-0.08796, abs=5e-6), pytest.approx(0.00036, abs=5e-6))
    t0, t1 = rrrc.treatment_cis
    assert (t0.se, t0.df, t0.ci_lower, t0.ci_upper) == (
        pytest.approx(0.03317360, abs=5e-9),
        pytest.approx(12.74, abs=5e-3),
        pytest.approx(0.82522360, abs=5e-9),
        pytest.approx(0.96885048, abs=5e-9),
    )
    assert (t1.ci_lower, t1.ci_upper) == (pytest.approx(0.89413783, abs=5e-9), pytest.approx(0.98753689, abs=5e-9))
    frrc = r["FRRC"]
    assert frrc.statistic == pytest.approx(5.47595, abs=5e-6)
    assert frrc.p_value == pytest.approx(0.0193, abs=5e-5)
    assert (frrc.treatment_cis[0].ci_lower, frrc.treatment_cis[0].ci_upper) == (
        pytest.approx(0.84943008, abs=5e-9),
        pytest.approx(0.94464399, abs=5e-9),
    )
    iowa_readers = [
        (-0.02818, 0.02551, 0.2693),
        (-0.04654, 0.02630, 0.0768),
        (-0.01787, 0.03121, 0.5668),
        (-0.02625, 0.01729, 0.1290),
        (-0.10016, 0.04406, 0.0230),
    ]
    for c, (est, se, p) in zip(frrc.reader_differences, iowa_readers):
        assert (c.estimate, c.se, c.p_value) == (pytest.approx(est, abs=5e-6), pytest.approx(se, abs=5e-6), pytest.approx(p, abs=5e-5))
    rrfc = r["RRFC"]
    assert rrfc.statistic == pytest.approx(8.70, abs=5e-3)
    assert (rrfc.differences[0].ci_lower, rrfc.differences[0].ci_upper) == (pytest.approx(-0.08502, abs=5e-6), pytest.approx(-0.00258, abs=5e-6))
    assert rrfc.treatment_cis[1].se == pytest.approx(0.01615303, abs=5e-9)


def test_single_reader_equals_iowa_and_reports_frrc_only():
    """``VanDyke1R.txt``: the first Van Dyke reader alone; only the fixed-reader analysis exists."""
    data = _data("dataset02").select_readers(["0"])
    with pytest.warns(MRMCWarning, match="Only 1 reader"):
        r = significance_test(data, "Wilcoxon", method="OR")
    assert list(r.analyses) == ["FRRC"]
    f = r["FRRC"]
    assert f.statistic == pytest.approx(1.22011, abs=5e-6)
    assert f.p_value == pytest.approx(0.2693, abs=5e-5)
    d = f.differences[0]
    assert (d.estimate, d.se, d.ci_lower, d.ci_upper) == (
        pytest.approx(-0.02818, abs=5e-6),
        pytest.approx(0.02551, abs=5e-6),
        pytest.approx(-0.07818, abs=5e-6),
        pytest.approx(0.02182, abs=5e-6),
    )
    t0, t1 = f.treatment_cis
    assert (t0.se, t0.ci_lower, t0.ci_upper) == (
        pytest.approx(0.03012552, abs=5e-9),
        pytest.approx(0.86060081, abs=5e-9),
        pytest.approx(0.97869066, abs=5e-9),
    )
    assert (t1.se, t1.ci_lower, t1.ci_upper) == (
        pytest.approx(0.02214169, abs=5e-9),
        pytest.approx(0.90442917, abs=5e-9),
        pytest.approx(0.99122300, abs=5e-9),
    )
    assert f.reader_differences[0].p_value == pytest.approx(f.p_value)
    # DBM with one reader: FRRC is an F test on (I-1)(K-1) df and equals t^2 of the difference
    with pytest.warns(MRMCWarning):
        dbm = significance_test(data, "Wilcoxon", method="DBM")
    assert list(dbm.analyses) == ["FRRC"]
    assert dbm["FRRC"].statistic == pytest.approx(dbm["FRRC"].differences[0].statistic ** 2, rel=1e-12)


def test_single_reader_random_reader_analysis_is_a_clear_error():
    data = _data("dataset02").select_readers(["0"])
    with pytest.raises(MRMCInputError, match="need at least 2 readers.*FRRC"):
        significance_test(data, "Wilcoxon", method="OR", analyses="RRRC")
    with pytest.raises(MRMCInputError, match="RRFC"):
        significance_test(data, "Wilcoxon", method="DBM", analyses=["RRFC"])


def test_franken_equals_iowa_except_the_documented_var_tr_difference():
    """``Franken1.txt`` (dataset03).  OR-DBM MRMC 2.51 reports VarTR = MS_TR - Var + Cov1 +
    (Cov2 - Cov3); RJafroc (and this package) use max(Cov2 - Cov3, 0), which differs here
    because Cov2 < Cov3.  Every test statistic is the same."""
    r = significance_test(_data("dataset03"), "Wilcoxon", method="OR")
    vc = {k: r.variance_components.value(k, "estimate") for k in r.variance_components.index}
    assert vc["Cov2"] - vc["Cov3"] < 0
    assert vc["VarTR"] + (vc["Cov2"] - vc["Cov3"]) == pytest.approx(-0.00071276, abs=5e-9)
    for key, value in {"Cov1": 0.00079168, "Cov2": 0.00048364, "Cov3": 0.00051251, "Var": 0.00152578}.items():
        assert vc[key] == pytest.approx(value, abs=5e-9)
    assert r.variance_components.value("Cov1", "rho") == pytest.approx(0.51887172, abs=5e-9)
    rrrc = r["RRRC"]
    assert (rrrc.ms_treatment, rrrc.ms_error, rrrc.ddf, rrrc.p_value) == (
        pytest.approx(0.00023565, abs=5e-9),
        pytest.approx(0.00005020, abs=5e-9),
        pytest.approx(3.00, abs=5e-3),
        pytest.approx(0.1188, abs=5e-5),
    )
    d = rrrc.differences[0]
    assert (d.estimate, d.se, d.ci_lower, d.ci_upper) == (
        pytest.approx(0.01085, abs=5e-6),
        pytest.approx(0.00501, abs=5e-6),
        pytest.approx(-0.00509, abs=5e-6),
        pytest.approx(0.02680, abs=5e-6),
    )
    t0 = rrrc.treatment_cis[0]
    assert (t0.se, t0.df, t0.ci_lower, t0.ci_upper, t0.cov2) == (
        pytest.approx(0.02440215, abs=5e-9),
        pytest.approx(70.12, abs=5e-3),
        pytest.approx(0.79908282, abs=5e-9),
        pytest.approx(0.89641696, abs=5e-9),
        pytest.approx(0.00047230, abs=5e-9),
    )
    assert rrrc.treatment_cis[1].df == pytest.approx(253.64, abs=5e-3)
    assert (r["FRRC"].statistic, r["FRRC"].p_value) == (pytest.approx(0.32101, abs=5e-6), pytest.approx(0.5710, abs=5e-5))


def test_fedroc_equals_iowa():
    """``FedRoc.txt``: the highest-rating inferred ROC data of Federica (dataset04), 5 treatments."""
    fed = significance_test(_data("dataset04").to_roc(), "Wilcoxon", method="OR")
    assert fed.foms[0, 0] == pytest.approx(0.90425000, abs=5e-9)
    assert fed.anova.value("T", "MS") == pytest.approx(0.00189696, abs=5e-9)
    assert fed.anova.value("R", "MS") == pytest.approx(0.00729418, abs=5e-9)
    assert fed.anova.value("TR", "MS") == pytest.approx(0.00046221, abs=5e-9)
    assert fed["RRRC"].p_value == pytest.approx(0.0305, abs=5e-5)
    d = fed["RRRC"].differences[0]
    assert (d.se, d.df, d.ci_lower, d.ci_upper) == (
        pytest.approx(0.01654, abs=5e-6),
        pytest.approx(16.80, abs=5e-3),
        pytest.approx(-0.04002, abs=5e-6),
        pytest.approx(0.02982, abs=5e-6),
    )
    assert [c.estimate for c in fed["RRRC"].differences] == pytest.approx(
        [-0.00510, 0.035325, -0.0054125, 0.036775, 0.040425, -0.0003125, 0.041875, -0.0407375, 0.00145, 0.0421875], abs=5e-9
    )
    d = fed["FRRC"].differences[0]
    assert (d.se, d.p_value, d.ci_lower, d.ci_upper) == (
        pytest.approx(0.01670, abs=5e-6),
        pytest.approx(0.7601, abs=5e-5),
        pytest.approx(-0.03783, abs=5e-6),
        pytest.approx(0.02763, abs=5e-6),
    )
    first_reader = fed["FRRC"].reader_differences[0]
    assert (first_reader.estimate, first_reader.se, first_reader.p_value) == (
        pytest.approx(0.04000, abs=5e-6),
        pytest.approx(0.03080, abs=5e-6),
        pytest.approx(0.1940, abs=5e-5),
    )


# ------------------------------------------------------------------------------------------
# Consistency and identities
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dataset,fom", [("dataset02", "Wilcoxon"), ("dataset04", "wAFROC"), ("dataset05", "HrSe")])
def test_ci_bound_fed_back_gives_p_equal_alpha(dataset, fom):
    jk = _array(_pv(dataset)[fom]["jkFomValues"])
    foms = _array(_st(dataset)[f"{fom}|OR|RRRC"]["FOMs"]["foms"])
    for alpha in (0.05, 0.2):
        for res in (
            dbm_analysis(foms, pseudovalues_from_jackknife(foms, jk), alpha=alpha),
            or_analysis(foms, jackknife_covariance(jk), n_cases=jk.shape[2], alpha=alpha),
        ):
            for a in res.analyses.values():
                for c in a.differences + a.reader_differences:
                    for bound in (c.ci_lower, c.ci_upper):
                        assert t_two_sided_p((c.estimate - bound) / c.se, c.df) == pytest.approx(alpha, rel=1e-9)
                    assert c.conf_int() == pytest.approx((c.ci_lower, c.ci_upper), rel=1e-12)
                for t in a.treatment_cis:
                    q = (t.estimate - t.ci_lower) / t.se
                    ref = None if t.normal_reference else t.df
                    assert t_two_sided_p(q, ref) == pytest.approx(alpha, rel=1e-9)


def test_dbm_equals_or_for_rrrc_and_rrfc_with_the_jackknife():
    """Hillis et al. (2005): with jackknife covariances DBM and OR give identical RRRC/RRFC tests."""
    for dataset, fom in (("dataset02", "Wilcoxon"), ("dataset04", "wAFROC"), ("dataset05", "MaxLLF")):
        jk = _array(_pv(dataset)[fom]["jkFomValues"])
        foms = _array(_st(dataset)[f"{fom}|OR|RRRC"]["FOMs"]["foms"])
        n_c = jk.shape[2]
        dbm = dbm_analysis(foms, pseudovalues_from_jackknife(foms, jk))
        orr = or_analysis(foms, jackknife_covariance(jk), n_cases=n_c)
        assert dbm.anova.value("T", "MS") == pytest.approx(n_c * orr.anova.value("T", "MS"), rel=1e-10)
        for name in ("RRRC", "RRFC"):
            a, b = dbm[name], orr[name]
            assert (a.statistic, a.ddf, a.p_value) == pytest.approx((b.statistic, b.ddf, b.p_value), rel=1e-9)
            for ca, cb in zip(a.differences, b.differences):
                assert (ca.se, ca.ci_lower, ca.ci_upper) == pytest.approx((cb.se, cb.ci_lower, cb.ci_upper), rel=1e-9)
        # FRRC differs: F on (I-1)(K-1) df (DBM) vs chi-square (OR); the statistic is the same
        assert dbm["FRRC"].statistic * (len(foms) - 1) == pytest.approx(orr["FRRC"].statistic, rel=1e-9)
        assert dbm["FRRC"].p_value > orr["FRRC"].p_value


def test_two_treatment_f_is_t_squared():
    jk = _array(_pv("dataset02")["Wilcoxon"]["jkFomValues"])
    foms = _array(_st("dataset02")["Wilcoxon|OR|RRRC"]["FOMs"]["foms"])
    for res in (dbm_analysis(foms, pseudovalues_from_jackknife(foms, jk)), or_analysis(foms, jackknife_covariance(jk), n_cases=jk.shape[2])):
        for a in res.analyses.values():
            c = a.differences[0]
            assert a.statistic == pytest.approx(c.statistic**2, rel=1e-10)
            assert a.p_value == pytest.approx(c.p_value, rel=1e-8)


def test_many_treatments_give_all_pairwise_differences_in_order():
    data = _data("dataset04")
    r = significance_test(data, "wAFROC", method="OR", analyses="FRRC")
    labels = [c.treatments for c in r["FRRC"].differences]
    t = data.treatments
    assert labels == [(t[a], t[b]) for a in range(5) for b in range(a + 1, 5)]
    assert len(r["FRRC"].reader_differences) == 10 * data.n_readers
    means = r.treatment_means
    for c in r["FRRC"].differences:
        assert c.estimate == pytest.approx(means[t.index(c.treatments[0])] - means[t.index(c.treatments[1])], abs=1e-15)
    assert r["FRRC"].difference("2", "1").treatments == ("1", "2")


def test_anova_sums_of_squares_add_up_and_match_a_regression_fit():
    rng = np.random.default_rng(3)
    y = rng.normal(size=(3, 4, 7))
    an = trc_anova(y)
    parts = sum(an.ss[k] for k in ("T", "R", "C", "TR", "TC", "RC", "TRC"))
    assert parts == pytest.approx(an.ss["Total"], rel=1e-12)
    # MS_TRC equals the residual variance of the additive-plus-two-way-interaction model fitted by least squares
    import itertools

    n_t, n_r, n_c = y.shape
    cols = []
    for i, j, k in itertools.product(range(n_t), range(n_r), range(n_c)):
        row = np.zeros((n_t * n_r + n_t * n_c + n_r * n_c))
        row[i * n_r + j] = 1
        row[n_t * n_r + i * n_c + k] = 1
        row[n_t * n_r + n_t * n_c + j * n_c + k] = 1
        cols.append(row)
    x = np.array(cols)
    beta, *_ = np.linalg.lstsq(x, y.reshape(-1), rcond=None)
    rss = float(np.sum((y.reshape(-1) - x @ beta) ** 2))
    assert an.ss["TRC"] == pytest.approx(rss, rel=1e-9)


# ------------------------------------------------------------------------------------------
# Degenerate data: warn, never crash
# ------------------------------------------------------------------------------------------


def test_zero_tr_interaction_gives_infinite_ddf_with_chi_square_limit():
    # additive pseudovalues with exact binary fractions -> MS_TR is exactly 0
    t_eff = np.array([0.0, 0.75])[:, None, None]
    r_eff = np.array([0.0, 0.25, 0.5, 1.25])[None, :, None]
    case = np.array([[1.0, 2.0, 0.0, 3.0], [2.0, 0.0, 1.0, 1.0]])[:, None, :]
    y = t_eff + r_eff + case
    foms = y.mean(axis=2)
    with pytest.warns(MRMCWarning, match="infinite"):
        res = dbm_analysis(foms, y)
    rrrc = res["RRRC"]
    assert res.anova.value("TR", "MS") == 0.0
    assert math.isinf(rrrc.ddf)
    assert rrrc.p_value == pytest.approx(stats.chi2.sf(rrrc.statistic, 1), rel=1e-12)
    c = rrrc.differences[0]
    assert c.p_value == pytest.approx(2 * stats.norm.sf(abs(c.statistic)), rel=1e-12)
    assert rrrc.warnings and "infinite" in rrrc.warnings[0]
    json.dumps(res.to_dict(), allow_nan=False)
    assert res.to_dict()["analyses"]["RRRC"]["ddf"] == "Infinity"
    assert res["RRFC"].p_value == 0.0  # F = MS_T / 0 = inf, as R gives


def test_all_identical_ratings_give_nan_not_a_crash():
    foms = np.full((2, 3), 0.5)
    y = np.full((2, 3, 5), 0.5)
    with pytest.warns(MRMCWarning):
        res = dbm_analysis(foms, y)
    for a in res.analyses.values():
        assert math.isnan(a.statistic) and math.isnan(a.p_value)
    text = res.summary().as_text()
    assert "NaN" in text
    json.dumps(res.to_dict(), allow_nan=False)


def test_non_positive_or_frrc_error_term_warns():
    foms = np.array([[0.8, 0.7], [0.9, 0.75]])
    cov = np.zeros((2, 2, 2, 2))
    for i in range(2):
        for j in range(2):
            cov[i, j, i, j] = 1e-3
    cov[0, 0, 1, 0] = cov[1, 0, 0, 0] = cov[0, 1, 1, 1] = cov[1, 1, 0, 1] = 1.2e-3  # Cov1 > Var
    with pytest.warns(MRMCWarning) as record:
        res = or_analysis(foms, cov, n_cases=50, analyses="FRRC")
    messages = [str(w.message) for w in record]
    assert any("not positive" in m for m in messages)
    assert any("reader 1 has Var - Cov1 <= 0" in m for m in messages)
    assert math.isnan(res["FRRC"].differences[0].se)
    # R (and so RJafroc) computes 1 - pchisq(negative, 1) = 1; the warning says why
    assert res["FRRC"].statistic < 0 and res["FRRC"].p_value == 1.0
    assert len(res.warnings) == 3


def test_bad_input_raises_clear_errors(monkeypatch):
    with pytest.raises(MRMCInputError, match="at least 2 treatments"):
        dbm_analysis(np.ones((1, 3)), np.ones((1, 3, 4)))
    with pytest.raises(MRMCInputError, match="shape"):
        dbm_analysis(np.ones((2, 3)), np.ones((2, 4, 4)))
    with pytest.raises(MRMCInputError, match="NaN"):
        or_analysis(np.array([[0.5, np.nan], [0.5, 0.6]]), np.zeros((2, 2, 2, 2)), n_cases=5)
    with pytest.raises(MRMCInputError, match="alpha"):
        dbm_analysis(np.ones((2, 3)), np.ones((2, 3, 4)), alpha=1.5)
    with pytest.raises(MRMCInputError, match="Unknown analysis"):
        dbm_analysis(np.ones((2, 3)), np.ones((2, 3, 4)), analyses="RRR")
    data = _data("dataset02")
    with pytest.raises(MRMCInputError, match="method"):
        significance_test(data, "Wilcoxon", method="ANOVA")
    with pytest.raises(MRMCInputError, match="DBM.*method='OR'"):
        significance_test(data, "Wilcoxon", method="DBM", covariance="delong")
    with pytest.raises(MRMCInputError, match="U-statistics"):
        significance_test(_data("dataset04"), "AFROC", covariance="bootstrap")
    with pytest.raises(MRMCInputError, match="at least 2 treatments"):
        significance_test(data.select_treatments(["0"]), "Wilcoxon")
    from analysis import BackendNotAvailableError
    from analysis import rjafroc_backend as rb

    # RJafroc made absent, so that the test means the same with and without it installed
    missing = f"rpy2 is not installed, so R cannot be called. {rb.INSTALL_HINT}"
    monkeypatch.setattr(rb, "rjafroc_available", lambda refresh=False: (False, missing))
    with pytest.raises(BackendNotAvailableError, match="RJafroc backend not available"):
        significance_test(data, "Wilcoxon", backend="rjafroc")


# ------------------------------------------------------------------------------------------
# DeLong covariance
# ------------------------------------------------------------------------------------------


def test_delong_hand_worked_example():
    # normals rate 1, 2; abnormals rate 2, 3.  Pairs: (1,2)=1, (1,3)=1, (2,2)=1/2, (2,3)=1.
    # AUC = 3.5/4 = 0.875; V10 = (1, 0.75); V01 = (0.75, 1); S10 = S01 = 2 * 0.125^2 / 1 = 0.03125
    # Var = S10/2 + S01/2 = 0.03125.
    foms, v10, v01 = auc_structural_components(np.array([[[1.0, 2.0]]]), np.array([[[2.0, 3.0]]]))
    assert foms[0, 0] == 0.875
    np.testing.assert_array_equal(v10[0, 0], [1.0, 0.75])
    np.testing.assert_array_equal(v01[0, 0], [0.75, 1.0])
    _, cov = delong_covariance(np.array([[[1.0, 2.0]]]), np.array([[[2.0, 3.0]]]))
    assert cov[0, 0, 0, 0] == pytest.approx(0.03125, rel=1e-15)


def _slow_kernel(fp, ll, w):
    """phi[a, b] = sum_l w[b, l] psi(fp[a], ll[b, l]) by explicit loops."""
    k1, (k2, n_les) = fp.shape[0], ll.shape
    phi = np.zeros((k1, k2))
    for a in range(k1):
        for b in range(k2):
            for l in range(n_les):
                x, y = fp[a], ll[b, l]
                phi[a, b] += w[b, l] * (1.0 if x < y else 0.5 if x == y else 0.0)
    return phi


def _random_froc(rng, n_t=2, n_r=3, k1=7, k2=6, n_les=3):
    fp = rng.integers(0, 4, size=(n_t, n_r, k1)).astype(float)
    fp[rng.random(fp.shape) < 0.3] = -np.inf
    ll = rng.integers(0, 5, size=(n_t, n_r, k2, n_les)).astype(float)
    ll[rng.random(ll.shape) < 0.3] = -np.inf
    n_per = rng.integers(1, n_les + 1, size=k2)
    w = np.zeros((k2, n_les))
    for b, n in enumerate(n_per):
        raw = rng.random(n) + 0.2
        w[b, :n] = raw / raw.sum()
        ll[:, :, b, n:] = -np.inf  # padding
    return fp, ll, w


def test_delong_matches_slow_definition_with_ties_unmarked_and_weights():
    rng = np.random.default_rng(11)
    fp, ll, w = _random_froc(rng)
    foms, cov = delong_covariance(fp, ll, w)
    n_t, n_r, k1 = fp.shape
    k2 = ll.shape[2]
    v10 = np.zeros((n_t, n_r, k1))
    v01 = np.zeros((n_t, n_r, k2))
    for i in range(n_t):
        for j in range(n_r):
            phi = _slow_kernel(fp[i, j], ll[i, j], w)
            assert foms[i, j] == pytest.approx(phi.mean(), rel=1e-14)
            v10[i, j], v01[i, j] = phi.mean(axis=1), phi.mean(axis=0)
    expected = np.zeros_like(cov)
    for i, j, i2, j2 in np.ndindex(cov.shape):
        s10 = np.sum((v10[i, j] - foms[i, j]) * (v10[i2, j2] - foms[i2, j2])) / (k1 - 1)
        s01 = np.sum((v01[i, j] - foms[i, j]) * (v01[i2, j2] - foms[i2, j2])) / (k2 - 1)
        expected[i, j, i2, j2] = s10 / k1 + s01 / k2
    np.testing.assert_allclose(cov, expected, rtol=1e-12, atol=1e-16)


@pytest.mark.parametrize(
    "dataset,fom,roc",
    [
        ("dataset02", "Wilcoxon", False),
        ("dataset05", "wAFROC", False),
        ("dataset05", "HrAuc", False),
        ("dataset04", "Wilcoxon", True),
    ],
)
def test_delong_components_reproduce_the_jackknife_exactly(dataset, fom, roc):
    """For a two-sample U-statistic, deleting normal case a gives theta_(a) = (K1 theta - V10_a)/(K1-1),
    so the jackknife covariance is exactly (K-1)/K [S10/(K1-1) + S01/(K2-1)] in terms of the DeLong
    structural components: an independent check of them against the jackknife FOMs of part 1."""
    from analysis import fom_and_jackknife
    from analysis.significance import auc_kernel_inputs

    data = _data(dataset).to_roc() if roc else _data(dataset)
    normal, lesions, weights = auc_kernel_inputs(data, fom)
    foms, v10, v01 = auc_structural_components(normal, lesions, weights)
    theta, jk = fom_and_jackknife(data, fom)
    np.testing.assert_allclose(foms, theta, rtol=1e-12)
    n_t, n_r, k1 = v10.shape
    k2 = v01.shape[2]
    k = k1 + k2
    a = (v10 - foms[..., None]).reshape(n_t * n_r, k1)
    b = (v01 - foms[..., None]).reshape(n_t * n_r, k2)
    s10, s01 = a @ a.T / (k1 - 1), b @ b.T / (k2 - 1)
    predicted = ((k - 1) / k) * (s10 / (k1 - 1) + s01 / (k2 - 1))
    np.testing.assert_allclose(jackknife_covariance(jk).reshape(n_t * n_r, -1), predicted, rtol=1e-9, atol=1e-15)


def test_or_with_delong_covariance_runs_end_to_end():
    data = _data("dataset02")
    r = significance_test(data, "Wilcoxon", method="OR", covariance="delong")
    assert r.covariance == "delong"
    jk = significance_test(data, "Wilcoxon", method="OR")
    # same FOMs; DeLong and jackknife variances of an AUC agree to O(1/K)
    np.testing.assert_allclose(r.foms, jk.foms)
    assert r.variance_components.value("Var", "estimate") == pytest.approx(jk.variance_components.value("Var", "estimate"), rel=0.05)
    assert r.to_dict()["covariance"] == "delong"


# ------------------------------------------------------------------------------------------
# Stratified bootstrap
# ------------------------------------------------------------------------------------------


def _ideal_bootstrap_covariance(fp, ll, w):
    """Exact covariance of the FOMs under the stratified bootstrap (B -> infinity).

    With multinomial case counts n (K1 normals) and m (K2 abnormals), E[n_a n_c] = d_ac + 1 - 1/K1,
    so Cov*(theta, theta') = [sum_ab phi phi' + B2 sum_a r_a r'_a + A1 sum_b c_b c'_b
    + (A1 B2 - 1) S S'] / (K1 K2)^2 with row sums r, column sums c, totals S, A1 = 1 - 1/K1,
    B2 = 1 - 1/K2.
    """
    n_t, n_r, k1 = fp.shape
    k2 = ll.shape[2]
    phis = np.array([[_slow_kernel(fp[i, j], ll[i, j], w) for j in range(n_r)] for i in range(n_t)])
    flat = phis.reshape(n_t * n_r, k1, k2)
    a1, b2 = 1 - 1 / k1, 1 - 1 / k2
    r, c, s = flat.sum(axis=2), flat.sum(axis=1), flat.sum(axis=(1, 2))
    cov = np.einsum("pab,qab->pq", flat, flat) + b2 * r @ r.T + a1 * c @ c.T + (a1 * b2 - 1) * np.outer(s, s)
    return (cov / (k1 * k2) ** 2).reshape(n_t, n_r, n_t, n_r)


def test_bootstrap_converges_to_the_ideal_stratified_bootstrap():
    rng = np.random.default_rng(5)
    fp, ll, w = _random_froc(rng, n_t=2, n_r=2, k1=9, k2=8)
    exact = _ideal_bootstrap_covariance(fp, ll, w)
    foms, cov, boot = bootstrap_covariance(fp, ll, w, n_bootstraps=40000, random_state=1)
    assert boot.shape == (40000, 2, 2)
    # Monte Carlo relative error of a variance with B = 40000 is about sqrt(2/B) = 0.7 %
    np.testing.assert_allclose(cov.reshape(4, 4), exact.reshape(4, 4), rtol=0.05, atol=0.05 * exact.max())
    # E*[theta*] = theta exactly for multinomial resampling of a two-sample U-statistic
    np.testing.assert_allclose(boot.mean(axis=0), foms, atol=4 * np.sqrt(exact.max() / 40000))


def test_bootstrap_is_reproducible_from_a_seed_and_respects_chunking():
    rng = np.random.default_rng(2)
    fp, ll, w = _random_froc(rng)
    _, c1, b1 = bootstrap_covariance(fp, ll, w, n_bootstraps=300, random_state=42)
    _, c2, b2 = bootstrap_covariance(fp, ll, w, n_bootstraps=300, random_state=42, chunk_size=7)
    _, c3, _ = bootstrap_covariance(fp, ll, w, n_bootstraps=300, random_state=43)
    np.testing.assert_array_equal(b1, b2)
    np.testing.assert_array_equal(c1, c2)
    assert not np.allclose(c1, c3)


def test_bootstrap_resamples_are_fom_values_of_resampled_studies():
    """Rebuild resample 0 explicitly from the case counts and recompute the FOM by brute force."""
    rng = np.random.default_rng(8)
    fp, ll, w = _random_froc(rng, n_t=1, n_r=2, k1=5, k2=4)
    seed = 99
    _, _, boot = bootstrap_covariance(fp, ll, w, n_bootstraps=3, random_state=seed)
    g = np.random.default_rng(seed)
    n = g.multinomial(5, np.full(5, 0.2), size=3)[0]
    m = g.multinomial(4, np.full(4, 0.25), size=3)[0]
    idx_n, idx_m = np.repeat(np.arange(5), n), np.repeat(np.arange(4), m)
    for j in range(2):
        phi = _slow_kernel(fp[0, j][idx_n], ll[0, j][idx_m], w[idx_m])
        assert boot[0, 0, j] == pytest.approx(phi.mean(), rel=1e-13)
    assert len(idx_n) == 5 and len(idx_m) == 4  # stratified: K1 and K2 kept


def test_or_with_bootstrap_records_seed_and_is_reproducible():
    data = _data("dataset05")
    r1 = significance_test(data, "wAFROC", covariance="bootstrap", n_bootstraps=400, random_state=7)
    r2 = significance_test(data, "wAFROC", covariance="bootstrap", n_bootstraps=400, random_state=7)
    assert r1["RRRC"].p_value == r2["RRRC"].p_value
    doc = r1.to_dict()
    assert (doc["covariance"], doc["n_bootstraps"], doc["random_state"]) == ("bootstrap", 400, 7)
    np.testing.assert_allclose(r1.foms, significance_test(data, "wAFROC").foms, rtol=1e-12)


# ------------------------------------------------------------------------------------------
# Results objects
# ------------------------------------------------------------------------------------------


def test_result_outputs_summary_frame_and_json(tmp_path):
    from analysis import Provenance

    path = DATA / "datasets" / "dataset02.xlsx"
    r = significance_test(_data("dataset02"), "Wilcoxon", method="OR", provenance=Provenance.from_file(path))
    doc = json.loads(r.to_json(tmp_path / "out.json"))
    assert json.loads((tmp_path / "out.json").read_text()) == doc
    import hashlib

    assert doc["input_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert doc["input_file"] == "dataset02.xlsx"
    assert doc["fom"] == "Wilcoxon" and doc["method"] == "OR"
    assert doc["package_version"]
    assert set(doc["analyses"]) == {"RRRC", "FRRC", "RRFC"}
    rrrc = doc["analyses"]["RRRC"]
    assert rrrc["statistic"] == pytest.approx(4.45631869315726, rel=1e-9)
    assert rrrc["df"] == 1 and rrrc["ddf"] == pytest.approx(15.2596745891418, rel=1e-9)
    assert doc["analyses"]["FRRC"]["ddf"] is None and doc["analyses"]["FRRC"]["statistic_name"] == "chi2"
    diff = rrrc["differences"][0]
    assert diff["treatments"] == ["0", "1"]
    assert diff["ci95"] == pytest.approx([-0.0879594985665547, 0.00035885444417133], rel=1e-9)
    assert rrrc["treatment_cis"]["1"]["ci95"] == pytest.approx([0.894137831211282, 0.987536886985175], rel=1e-9)
    assert doc["foms"]["1"]["4"] == pytest.approx(0.929951690821256, rel=1e-12)
    assert set(doc["variance_components"]) == {"VarR", "VarTR", "Cov1", "Cov2", "Cov3", "Var"}
    assert len(doc["analyses"]["FRRC"]["reader_differences"]) == 5

    frame = r.to_frame()
    assert set(frame["kind"]) == {"difference", "treatment", "reader_difference"}
    assert len(frame) == 3 * (1 + 2) + 5
    row = frame[(frame.analysis == "RRRC") & (frame.kind == "difference")].iloc[0]
    assert row.p_value == pytest.approx(0.0516656858192941, rel=1e-9)

    text = r.summary().as_text()
    assert text.index("RRRC") < text.index("FRRC") < text.index("RRFC")
    assert "F(1, 15.26) = 4.456" in text
    assert "<table" in r.summary().as_html() and r._repr_html_()
    assert "SignificanceResult(" in repr(r)
    with pytest.raises(AttributeError):
        r.fom = "x"  # frozen
    with pytest.raises(ValueError):
        r.foms[0, 0] = 1.0  # read-only array


def test_non_default_alpha_keeps_ci95_and_adds_requested_level():
    r = significance_test(_data("dataset02"), "Wilcoxon", method="DBM", analyses="RRRC", alpha=0.1)
    d = r["RRRC"].differences[0]
    doc = d.to_dict()
    assert doc["ci"] == pytest.approx([d.ci_lower, d.ci_upper])
    assert doc["ci95"] == pytest.approx([-0.0879594985665546, 0.000358854444171296], rel=1e-9)
    assert d.ci_upper - d.ci_lower < doc["ci95"][1] - doc["ci95"][0]
