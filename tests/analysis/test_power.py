"""Power and sample size (Hillis et al. 2011 for OR, Hillis & Berbaum 2004 for DBM).

Reference numbers from RJafroc's own test suite (tests/testthat/test-SsSampleSizeRoc.R,
RJafroc 2.1.x, Franken data = dataset03, Wilcoxon):

* ``SsSampleSizeKGivenJ(dataset03, FOM = "Wilcoxon", effectSize = 0.05, J = 6, method = "OR")``
  -> ``powerRRRC = 0.8004469`` (at K = 121 cases);
* ``SsPowerGivenJK(dataset03, FOM = "Wilcoxon", effectSize = 0.05, J = 6, K = 121,
  method = "DBM", UseDBMHB2004 = TRUE)`` -> ``powerRRRC = 0.78574588``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from analysis import (
    MRMCInputError,
    PilotVarianceComponents,
    pilot_variance_components,
    power_from_dbm_components,
    power_from_or_components,
    power_table,
    read_jafroc_excel,
    sample_size,
    significance_test,
    study_power,
)
from analysis.stats import dbm_analysis, jackknife_covariance, or_analysis, pseudovalues_from_jackknife

DATA = Path(__file__).resolve().parents[1] / "data" / "rjafroc"


def _franken_arrays():
    raw = json.loads((DATA / "expected" / "pseudovalues" / "dataset03.json").read_text())
    entry = raw["pseudovalues"]["Wilcoxon"]["jkFomValues"]
    jk = np.array(entry["values"], dtype=float).reshape(entry["dim"], order="F")
    st = json.loads((DATA / "expected" / "st" / "dataset03.json").read_text())["st"]
    f = st["Wilcoxon|OR|RRRC"]["FOMs"]["foms"]
    foms = np.array(f["values"], dtype=float).reshape(f["dim"], order="F")
    return foms, jk


@pytest.fixture(scope="module")
def franken_or():
    foms, jk = _franken_arrays()
    return or_analysis(foms, jackknife_covariance(jk), n_cases=jk.shape[2], analyses="RRRC")


@pytest.fixture(scope="module")
def franken_dbm():
    foms, jk = _franken_arrays()
    return dbm_analysis(foms, pseudovalues_from_jackknife(foms, jk), analyses="RRRC")


def test_or_sample_size_equals_rjafroc(franken_or):
    res = sample_size(franken_or, n_readers=6, effect_size=0.05, target_power=0.8)
    assert res.n_cases == 121
    assert res.power == pytest.approx(0.8004469, abs=5e-8)
    below = study_power(franken_or, n_readers=6, n_cases=120, effect_size=0.05)
    assert below.power < 0.8 <= res.power


def test_dbm_hillis_berbaum_2004_power_equals_rjafroc(franken_dbm):
    pilot = PilotVarianceComponents.from_result(franken_dbm, dbm_formula="HB2004")
    res = study_power(pilot, n_readers=6, n_cases=121, effect_size=0.05)
    assert res.method == "DBM-HB2004" and "Hillis & Berbaum 2004" in pilot.description
    assert res.power == pytest.approx(0.78574588, abs=5e-9)


def test_default_dbm_route_converts_to_or_as_rjafroc_does(franken_dbm, franken_or):
    # RJafroc's default (UseDBMHB2004 = FALSE): DBM components converted to OR; with the
    # jackknife the OR route's numbers (SsSampleSizeKGivenJ: K = 121, power 0.8004469)
    pilot = PilotVarianceComponents.from_result(franken_dbm)
    assert pilot.method == "DBM" and "converted to OR" in pilot.description
    for analysis in ("RRRC", "FRRC", "RRFC"):
        dbm = study_power(pilot, n_readers=6, n_cases=121, effect_size=0.05, analysis=analysis)
        orr = study_power(franken_or, n_readers=6, n_cases=121, effect_size=0.05, analysis=analysis)
        assert dbm.method == "DBM"
        assert dbm.power == pytest.approx(orr.power, rel=1e-10)
        assert dbm.ddf == pytest.approx(orr.ddf, rel=1e-10) or math.isinf(dbm.ddf)
    res = sample_size(pilot, n_readers=6, effect_size=0.05)
    assert res.n_cases == 121 and res.power == pytest.approx(0.8004469, abs=5e-8)


def test_pilot_with_more_than_two_treatments_needs_an_explicit_pair():
    data = read_jafroc_excel(DATA / "datasets" / "dataset04.xlsx")  # 5 treatments
    with pytest.raises(MRMCInputError, match="choose the two"):
        pilot_variance_components(data, "wAFROC")
    with pytest.raises(MRMCInputError, match="choose them"):
        PilotVarianceComponents.from_result(significance_test(data, "wAFROC", analyses="RRRC"))
    with pytest.raises(MRMCInputError, match="two different treatments"):
        pilot_variance_components(data, "wAFROC", treatments=("1", "9"))
    pair = pilot_variance_components(data, "wAFROC", treatments=("4", "5"))
    direct = pilot_variance_components(data.select_treatments(["4", "5"]), "wAFROC")
    assert dict(pair.components) == dict(direct.components)


def test_effect_sizes_outside_zero_one_and_zero_observed_effect_are_refused(franken_or):
    with pytest.raises(MRMCInputError, match="between -1 and 1"):
        study_power(PilotVarianceComponents.from_result(franken_or), n_readers=5, n_cases=100, effect_size=5)
    data = read_jafroc_excel(DATA / "datasets" / "dataset03.xlsx")
    same = data._replace(nl=np.repeat(data.nl[:1], 2, axis=0), ll=np.repeat(data.ll[:1], 2, axis=0))
    pilot = pilot_variance_components(same, "Wilcoxon")
    with pytest.raises(MRMCInputError, match="no observed effect"):
        sample_size(pilot, n_readers=5)
    with pytest.raises(MRMCInputError, match="zero within rounding"):
        sample_size(pilot, n_readers=5, effect_size=0.05)


def test_unreached_target_follows_rjafroc_k_convention():
    pilot = PilotVarianceComponents(
        "OR", {"VarTR": 2e-3, "Cov1": 3.5e-4, "Cov2": 3.4e-4, "Cov3": 2.4e-4, "Var": 8e-4}, n_cases_pilot=114, observed_effect_size=-0.04
    )
    res = sample_size(pilot, n_readers=3, effect_size=0.05)  # default search limit 2000, as RJafroc
    assert res.n_cases is None and res.max_cases == 2000
    doc = res.to_dict()
    assert doc["n_cases"] is None and doc["reached"] is False and doc["rjafroc_n_cases"] == 2001


def test_pilot_from_the_excel_file_gives_the_same_components(franken_or):
    data = read_jafroc_excel(DATA / "datasets" / "dataset03.xlsx")
    pilot = pilot_variance_components(data, "Wilcoxon", method="OR")
    direct = PilotVarianceComponents.from_result(franken_or)
    assert pilot.n_cases_pilot == direct.n_cases_pilot == 100
    for k, v in direct.components.items():
        assert pilot.components[k] == pytest.approx(v, rel=1e-12)
    assert pilot.observed_effect_size == pytest.approx(0.84774989 - 0.83689507, abs=1e-8)  # Iowa Franken1.txt


def test_or_formula_hand_computed():
    # VarTR = 0, Cov2 = Cov3, K = K*: den = Var - Cov1 = 5e-4; ncp = J d^2 / (2 den) = 5 * 0.0025 / 0.001 = 12.5;
    # ddf = (den / den)^2 (J - 1) = 4.
    r = power_from_or_components(n_readers=5, n_cases=100, n_cases_pilot=100, effect_size=0.05, var_tr=0.0, cov1=5e-4, cov2=3e-4, cov3=3e-4, var=1e-3)
    assert r.ncp == pytest.approx(12.5, rel=1e-12)
    assert r.ddf == pytest.approx(4.0, rel=1e-12)
    fcrit = stats.f.isf(0.05, 1, 4)
    assert r.f_critical == pytest.approx(fcrit, rel=1e-12)
    assert r.power == pytest.approx(stats.ncf.sf(fcrit, 1, 4, 12.5), rel=1e-12)
    # doubling the cases halves the case-related variance: den = 2.5e-4, ncp = 25
    r2 = power_from_or_components(
        n_readers=5, n_cases=200, n_cases_pilot=100, effect_size=0.05, var_tr=0.0, cov1=5e-4, cov2=3e-4, cov3=3e-4, var=1e-3
    )
    assert r2.ncp == pytest.approx(25.0, rel=1e-12) and r2.power > r.power
    # VarTR = 1e-4, Cov2 - Cov3 = 1e-4, J = 4, K = K*: den = 1e-4 + 5e-4 + 3e-4 = 9e-4,
    # den_TR = 1e-4 + 5e-4 - 1e-4 = 5e-4, ddf = (9/5)^2 * 3 = 9.72, ncp = 4 * 0.01 / 1.8e-3
    r3 = power_from_or_components(n_readers=4, n_cases=50, n_cases_pilot=50, effect_size=0.1, var_tr=1e-4, cov1=5e-4, cov2=4e-4, cov3=3e-4, var=1e-3)
    assert r3.ddf == pytest.approx(9.72, rel=1e-12)
    assert r3.ncp == pytest.approx(0.04 / 1.8e-3, rel=1e-12)


def test_or_frrc_is_chi_square_and_rrfc_uses_reader_df():
    kw = dict(n_readers=5, n_cases=100, n_cases_pilot=100, effect_size=0.05, var_tr=1e-4, cov1=5e-4, cov2=3e-4, cov3=2e-4, var=1e-3)
    f = power_from_or_components(analysis="FRRC", **kw)
    # den = Var - Cov1 + (J-1)(Cov2 - Cov3) = 5e-4 + 4e-4
    assert math.isinf(f.ddf) and f.ncp == pytest.approx(5 * 0.0025 / (2 * 9e-4), rel=1e-12)
    assert f.power == pytest.approx(stats.ncx2.sf(stats.chi2.isf(0.05, 1), 1, f.ncp), rel=1e-12)
    r = power_from_or_components(analysis="RRFC", **kw)
    # den = VarTR + Var - Cov1 - (Cov2 - Cov3) = 1e-4 + 5e-4 - 1e-4
    assert r.ddf == 4 and r.ncp == pytest.approx(5 * 0.0025 / (2 * 5e-4), rel=1e-12)


def test_dbm_formula_hand_computed():
    # den = VarErr + K VarTR + J VarTC = 0.05 + 100 * 1e-4 + 5 * 0.01 = 0.11; ncp = J K d^2 / (2 den)
    r = power_from_dbm_components(n_readers=5, n_cases=100, effect_size=0.05, var_tr=1e-4, var_tc=0.01, var_err=0.05)
    assert r.ncp == pytest.approx(5 * 100 * 0.0025 / 0.22, rel=1e-12)
    assert r.ddf == pytest.approx(0.11**2 / (0.06**2 / 4), rel=1e-12)
    f = power_from_dbm_components(n_readers=5, n_cases=100, effect_size=0.05, var_tr=1e-4, var_tc=0.01, var_err=0.05, analysis="FRRC")
    assert f.ddf == 99 and f.ncp == pytest.approx(5 * 100 * 0.0025 / (2 * 0.1), rel=1e-12)
    # negative components are truncated at zero
    neg = power_from_dbm_components(n_readers=5, n_cases=100, effect_size=0.05, var_tr=-1e-4, var_tc=-0.01, var_err=0.05)
    assert neg.ncp == pytest.approx(5 * 100 * 0.0025 / 0.1, rel=1e-12)


@pytest.mark.parametrize("analysis", ["RRRC", "FRRC", "RRFC"])
def test_zero_effect_has_power_alpha(franken_or, franken_dbm, analysis):
    for pilot in (franken_or, franken_dbm):
        p = PilotVarianceComponents.from_result(pilot)
        comps = dict(p.components)
        r = (
            power_from_or_components(
                n_readers=5,
                n_cases=200,
                n_cases_pilot=p.n_cases_pilot,
                effect_size=0.0,
                var_tr=comps["VarTR"],
                cov1=comps["Cov1"],
                cov2=comps["Cov2"],
                cov3=comps["Cov3"],
                var=comps["Var"],
                analysis=analysis,
                alpha=0.05,
            )
            if p.method == "OR"
            else power_from_dbm_components(
                n_readers=5, n_cases=200, effect_size=0.0, var_tr=comps["VarTR"], var_tc=comps["VarTC"], var_err=comps["VarErr"], analysis=analysis
            )
        )
        assert r.power == pytest.approx(0.05, abs=1e-12)


def test_power_increases_with_readers_and_cases(franken_or):
    pw = [[study_power(franken_or, n_readers=j, n_cases=k, effect_size=0.05).power for k in (50, 100, 200)] for j in (3, 6, 12)]
    arr = np.array(pw)
    assert (np.diff(arr, axis=0) > 0).all() and (np.diff(arr, axis=1) > 0).all()


def test_power_table_and_unreachable_targets():
    pilot = PilotVarianceComponents(
        "OR", {"VarTR": 2e-3, "Cov1": 3.5e-4, "Cov2": 3.4e-4, "Cov3": 2.4e-4, "Var": 8e-4}, n_cases_pilot=114, observed_effect_size=-0.04
    )
    tab = power_table(pilot, readers=[3, 5, 20], effect_size=0.05, max_cases=5000)
    rows = {r.n_readers: r for r in tab.rows}
    # with large reader variability 3 readers can never reach 80 % power, whatever the cases
    assert rows[3].n_cases is None and rows[3].power < 0.8
    assert rows[20].n_cases is not None and rows[20].power >= 0.8
    k = rows[20].n_cases
    assert study_power(pilot, n_readers=20, n_cases=k - 1, effect_size=0.05).power < 0.8
    frame = tab.to_frame()
    assert list(frame["n_readers"]) == [3, 5, 20]
    assert "> 5000" in tab.summary().as_text()
    json.dumps(tab.to_dict(), allow_nan=False)
    # default effect size is the pilot's observed difference (sign ignored)
    assert study_power(pilot, n_readers=10, n_cases=100).effect_size == pytest.approx(0.04)


def test_power_input_errors(franken_or):
    with pytest.raises(MRMCInputError, match="n_readers"):
        study_power(franken_or, n_readers=1, n_cases=100, effect_size=0.05)
    with pytest.raises(MRMCInputError, match="target_power"):
        sample_size(franken_or, n_readers=5, target_power=1.2, effect_size=0.05)
    with pytest.raises(MRMCInputError, match="analysis"):
        study_power(franken_or, n_readers=5, n_cases=100, effect_size=0.05, analysis="XYZ")
    with pytest.raises(MRMCInputError, match="pilot must be"):
        study_power({"VarTR": 1}, n_readers=5, n_cases=100, effect_size=0.05)
    with pytest.raises(MRMCInputError, match="effect_size"):
        study_power(franken_or, n_readers=5, n_cases=100, effect_size=0.0)


def test_pilot_from_significance_test_on_froc_data():
    data = read_jafroc_excel(DATA / "datasets" / "dataset05.xlsx")
    res = significance_test(data, "wAFROC", method="OR", analyses="RRRC")
    out = sample_size(res, n_readers=9, effect_size=0.05)
    assert out.n_cases is not None and out.power >= 0.8
    assert out.method == "OR" and out.analysis == "RRRC"
