"""Split-plot (split-plot-C) Obuchowski-Rockette analysis.

Checks: (1) one group is the crossed OR analysis, whose numbers equal RJafroc 2.1.3 / Iowa
OR-DBM MRMC 2.51 on Van Dyke (dataset02: F 4.456319, ddf 15.259675, p 0.0516657, Cov2
3.4407e-4; ``jafroc-methods.md`` and ``tests/analysis/test_significance.py``); (2) a two-group
split of Van Dyke against a brute-force loop implementation of the formulas (Hillis 2014;
Obuchowski et al. 2012) written independently in this test; (3) RJafroc's split-plot toy files.
"""

from __future__ import annotations

import math
from itertools import product
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from analysis.data import ObserverData, ObserverDataError
from analysis.fom import fom_matrix, jackknife_fom_matrix
from analysis.io import read_observer_data
from analysis.significance import significance_test
from analysis.split_plot import SplitPlotData, read_split_plot_excel, split_plot_or
from tests.analysis._workbooks import write_jafroc_book

DATA = Path(__file__).resolve().parents[1] / "data" / "rjafroc"
VAN_DYKE = DATA / "datasets" / "dataset02.xlsx"
TOY = DATA / "excel-examples" / "toyFiles" / "ROC"


@pytest.fixture(scope="module")
def van_dyke() -> ObserverData:
    return read_observer_data(VAN_DYKE)


def test_one_group_is_the_crossed_or_analysis(van_dyke):
    crossed = significance_test(van_dyke, "Wilcoxon", method="OR")
    sp = split_plot_or(SplitPlotData((van_dyke,)), "Wilcoxon")
    assert sp.analyses["RRRC"]["statistic"] == pytest.approx(4.456319, abs=5e-7)
    assert sp.analyses["RRRC"]["ddf"] == pytest.approx(15.259675, abs=5e-7)
    assert sp.covariances["Cov2"] == pytest.approx(3.4407e-4, abs=5e-9)
    for name in ("RRRC", "FRRC", "RRFC"):
        ours, ref = sp.analyses[name], crossed.analyses[name]
        assert ours["statistic"] == pytest.approx(ref.statistic, rel=1e-12)
        assert ours["p"] == pytest.approx(ref.p_value, rel=1e-12)
        if ref.ddf is not None:
            assert ours["ddf"] == pytest.approx(ref.ddf, rel=1e-12)
        c0, r0 = ours["comparisons"][0], ref.differences[0]
        assert c0["se"] == pytest.approx(r0.se, rel=1e-12)
        assert c0["ci_lower"] == pytest.approx(r0.ci_lower, rel=1e-12)


def _roc_subset(d: ObserverData, readers, normal_idx, abnormal_idx) -> ObserverData:
    ri = [d.readers.index(r) for r in readers]
    fp = d.nl[:, ri][:, :, normal_idx, 0]
    tp = d.ll[:, ri][:, :, abnormal_idx, 0]
    return ObserverData.from_roc(
        fp,
        tp,
        treatments=d.treatments,
        readers=readers,
        normal_cases=[d.normal_cases[k] for k in normal_idx],
        abnormal_cases=[d.abnormal_cases[k] for k in abnormal_idx],
    )


def _brute_force(groups, alpha=0.05):
    """Loop implementation of the split-plot OR formulas, independent of the module."""
    thetas, covs = [], []
    for g in groups:
        th = fom_matrix(g, "Wilcoxon")
        jk = jackknife_fom_matrix(g, "Wilcoxon")
        n_i, n_j, k = jk.shape
        cov = np.zeros((n_i, n_j, n_i, n_j))
        for a, b, c, d in product(range(n_i), range(n_j), range(n_i), range(n_j)):
            x, y = jk[a, b], jk[c, d]
            cov[a, b, c, d] = (k - 1) / k * np.sum((x - x.mean()) * (y - y.mean()))
        thetas.append(th)
        covs.append(cov)
    kinds = {"Var": [], "Cov1": [], "Cov2": [], "Cov3": []}
    for cov in covs:
        n_i, n_j = cov.shape[:2]
        for a, b, c, d in product(range(n_i), range(n_j), range(n_i), range(n_j)):
            key = {(True, True): "Var", (False, True): "Cov1", (True, False): "Cov2", (False, False): "Cov3"}[(a == c, b == d)]
            kinds[key].append(cov[a, b, c, d])
    m = {k: float(np.mean(v)) for k, v in kinds.items()}
    theta = np.concatenate(thetas, axis=1)
    n_i, n_j = theta.shape
    n_g = len(groups)
    ms_t = n_j * np.sum((theta.mean(1) - theta.mean()) ** 2) / (n_i - 1)
    ss = 0.0
    for th in thetas:
        for i, j in product(range(th.shape[0]), range(th.shape[1])):
            ss += (th[i, j] - th[i].mean() - th[:, j].mean() + th.mean()) ** 2
    df = (n_i - 1) * (n_j - n_g)
    ms_trg = ss / df
    c = sum(th.shape[1] ** 2 for th in thetas) / n_j
    ms_den = ms_trg + c * max(m["Cov2"] - m["Cov3"], 0)
    ddf = ms_den**2 / (ms_trg**2 / df)
    f = ms_t / ms_den
    return f, ddf, stats.f.sf(f, n_i - 1, ddf), m, ms_den


def test_two_groups_against_brute_force(van_dyke):
    k1, k2 = van_dyke.n_normal, van_dyke.n_abnormal
    g1 = _roc_subset(van_dyke, ["0", "1", "2"], list(range(0, k1, 2)), list(range(0, k2, 2)))
    g2 = _roc_subset(van_dyke, ["3", "4"], list(range(1, k1, 2)), list(range(1, k2, 2)))
    data = SplitPlotData((g1, g2), ("site A", "site B"))
    res = split_plot_or(data, "Wilcoxon")
    f, ddf, p, cov, ms_den = _brute_force([g1, g2])
    assert res.c_factor == pytest.approx((9 + 4) / 5)
    for k in cov:
        assert res.covariances[k] == pytest.approx(cov[k], rel=1e-10)
    rrrc = res.analyses["RRRC"]
    assert rrrc["statistic"] == pytest.approx(f, rel=1e-10)
    assert rrrc["ddf"] == pytest.approx(ddf, rel=1e-10)
    assert rrrc["p"] == pytest.approx(p, rel=1e-9)
    se = math.sqrt(2 * ms_den / 5)
    assert rrrc["comparisons"][0]["se"] == pytest.approx(se, rel=1e-10)
    assert res.analyses["RRFC"]["ddf"] == 3  # (I-1)(J-G) = 1 * (5 - 2)
    doc = res.to_dict()
    assert doc["groups"] == ["site A", "site B"] and doc["readersPerGroup"] == [3, 2]
    assert "RRRC: F(1," in res.summary()


def test_validation_of_groups(van_dyke):
    with pytest.raises(ObserverDataError, match="reader '0' is in groups"):
        SplitPlotData((van_dyke, van_dyke.select_treatments(["0", "1"])))


def test_rjafroc_toy_split_plot_c_is_read_and_single_reader_groups_refused():
    sp = read_split_plot_excel(TOY / "rocSpC.xlsx")
    assert sp.treatments == ("4", "6")
    assert [d.readers for d in sp.groups] == [("1",), ("4",), ("5",)]
    assert [d.n_cases for d in sp.groups] == [10, 10, 10]
    with pytest.raises(ObserverDataError, match="at least one group with 2 or more readers"):
        split_plot_or(sp)


def test_bare_split_plot_design_with_numeric_reader_ids_is_split_plot_c():
    """rocSpCVaryK.xlsx: design 'split-plot', reader IDs typed as numbers, K varying by group."""
    sp = read_split_plot_excel(TOY / "rocSpCVaryK.xlsx")
    assert sp.treatments == ("1", "2")
    assert [d.readers for d in sp.groups] == [("1",), ("4",), ("5",)]
    assert [(d.n_normal, d.n_abnormal) for d in sp.groups] == [(3, 3), (4, 4), (5, 5)]


def test_crossed_reader_points_split_plot_files_to_the_split_plot_command():
    from analysis.formats._common import UnsupportedDataError
    from analysis.io import read_observer_data

    with pytest.raises(UnsupportedDataError, match="tsct analyze split-plot"):
        read_observer_data(TOY / "rocSpCVaryK.xlsx")


def test_split_plot_a_is_refused_with_reason():
    with pytest.raises(ObserverDataError, match="split-plot-A"):
        read_split_plot_excel(TOY / "rocSpA.xlsx")


_write = write_jafroc_book


def test_mark_on_a_case_of_another_group_names_the_row(tmp_path):
    truth = [
        [1, 0, 0, "A1, A2", "X, Y", "ROC"],
        [2, 1, 1, "A1, A2", "X, Y", "SPLIT-PLOT-C"],
        [3, 0, 0, "B1, B2", "X, Y", None],
        [4, 1, 1, "B1, B2", "X, Y", None],
    ]
    fp = [["A1", "X", 1, 1], ["B1", "X", 1, 2]]
    path = _write(tmp_path / "sp.xlsx", truth, fp, [])
    with pytest.raises(ObserverDataError) as exc:
        read_split_plot_excel(path)
    assert "sheet 'FP', row 3" in str(exc.value) and "belongs to the group" in str(exc.value)


def test_excel_round_trip_two_sites(tmp_path, van_dyke):
    k1, k2 = van_dyke.n_normal, van_dyke.n_abnormal
    g1 = _roc_subset(van_dyke, ["0", "1", "2"], list(range(0, k1, 2)), list(range(0, k2, 2)))
    g2 = _roc_subset(van_dyke, ["3", "4"], list(range(1, k1, 2)), list(range(1, k2, 2)))
    truth, fp, tp = [], [], []
    for g in (g1, g2):
        rlist = ", ".join(g.readers)
        for c in g.normal_cases:
            truth.append([c, 0, 0, rlist, "0, 1", None])
        for c in g.abnormal_cases:
            truth.append([c, 1, 1, rlist, "0, 1", None])
        for i, t in enumerate(g.treatments):
            for j, r in enumerate(g.readers):
                for k, c in enumerate(g.normal_cases):
                    fp.append([r, t, c, float(g.nl[i, j, k, 0])])
                for k, c in enumerate(g.abnormal_cases):
                    tp.append([r, t, c, 1, float(g.ll[i, j, k, 0])])
    truth[0][5], truth[1][5] = "ROC", "SPLIT-PLOT-C"
    path = _write(tmp_path / "two_sites.xlsx", truth, fp, tp)
    sp = read_split_plot_excel(path)
    assert [d.readers for d in sp.groups] == [("0", "1", "2"), ("3", "4")]
    ours = split_plot_or(sp)
    direct = split_plot_or(SplitPlotData((g1, g2)))
    assert ours.analyses["RRRC"]["p"] == pytest.approx(direct.analyses["RRRC"]["p"], rel=1e-12)

    from typer.testing import CliRunner

    from analysis.cli import app

    res = CliRunner().invoke(app, ["split-plot", str(path), "--json", str(tmp_path / "sp.json")], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert "RRRC 0 - 1" in res.output and "RRRC treatment 0:" in res.output
    import json

    doc = json.loads((tmp_path / "sp.json").read_text())
    assert doc["analyses"]["RRRC"]["p"] == pytest.approx(direct.analyses["RRRC"]["p"], rel=1e-12)


def test_treatment_intervals_one_group_equal_crossed(van_dyke):
    crossed = significance_test(van_dyke, "Wilcoxon", method="OR", analyses="RRRC")
    sp = split_plot_or(SplitPlotData((van_dyke,)), "Wilcoxon")
    for ours, ref in zip(sp.analyses["RRRC"]["treatment_cis"], crossed.analyses["RRRC"].treatment_cis):
        assert ours["treatment"] == ref.treatment
        assert ours["se"] == pytest.approx(ref.se, rel=1e-12)
        assert ours["df"] == pytest.approx(ref.df, rel=1e-12)
        assert ours["ci_lower"] == pytest.approx(ref.ci_lower, rel=1e-12)
