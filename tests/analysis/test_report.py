"""``write_report``: files, content order, numbers equal to the significance test, provenance,
CSV/JSON that recompute every figure, and graceful handling of thin designs."""

from __future__ import annotations

import hashlib
import json
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis import MRMCWarning, read_jafroc_excel, significance_test, write_jafroc_excel
from analysis.report import REPORT_SCHEMA_ID, study_slug, write_report
from analysis.subgroups import subgroup_analysis
from tests.analysis._study_factory import simulated_study

DATA = Path(__file__).resolve().parents[1] / "data" / "rjafroc"
VAN_DYKE = DATA / "datasets" / "dataset02.xlsx"


def _quiet(fn, *args, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kw)


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    """A simulated FROC study with reader groups and lesion classes, as a JAFROC file, and its report."""
    tmp = tmp_path_factory.mktemp("report")
    xlsx = write_jafroc_excel(simulated_study(), tmp / "spine.xlsx")
    data = read_jafroc_excel(xlsx)
    paths = _quiet(write_report, data, tmp / "reports", study_name="Spine TS study", input_path=xlsx)
    result = _quiet(significance_test, data, "wAFROC", method="OR")
    return {"xlsx": xlsx, "data": data, "paths": paths, "result": result, "html": paths.html.read_text(encoding="utf-8")}


def _fmt(x: float, digits: int = 4) -> str:
    return f"{x:.{digits}f}".replace("-", "−")


def test_files_are_written_to_reports_study(simulated):
    p = simulated["paths"]
    assert p.directory.name == "Spine-TS-study" == study_slug("Spine TS study")
    for f in p.files():
        assert f.exists() and f.stat().st_size > 0 and f.parent == p.directory
    assert p.pdf is not None and p.pdf.read_bytes()[:5] == b"%PDF-"
    assert len(re.findall(rb"/Type\s*/Page\b", p.pdf.read_bytes())) >= 5  # text pages + 4 figures


def test_html_is_self_contained_and_in_the_required_order(simulated):
    html = simulated["html"]
    assert "<script" not in html and not re.search(r"""(src|href)=["']https?://""", html)
    assert html.count("<svg") >= 4 and "<img" not in html
    assert html.index("<h1>Observer study report: Spine TS study") < html.index("SHA-256 of input") < html.index("<h2>")
    headings = [re.sub(r"\s+", " ", h) for h in re.findall(r"<h2>(.*?)</h2>", html, flags=re.S)]
    assert [h.split(" (")[0].split(":")[0] for h in headings] == [
        "1. Study",
        "2. Figures of merit",
        "3. Primary analysis",
        "4. Fixed readers",
        "5. Variance components",
        "6. Subgroups",
        "7. Plots",
        "8. Methods",
        "References",
        "Reproducing this report",
    ]
    assert headings[2].startswith("3. Primary analysis: RRRC")
    for s in ("By reader group", "By lesion location", "By lesion type", "Lesions by location and type"):
        assert s in html


def test_html_numbers_equal_the_significance_test(simulated):
    html, res = simulated["html"], simulated["result"]
    rrrc = res["RRRC"]
    d = rrrc.differences[0]
    # table row: estimate, SE, df, t, p and CI as the significance result has them
    for s in (_fmt(d.estimate), _fmt(d.se), f"{d.df:.2f}", f"{d.p_value:.4f}", f"{_fmt(d.ci_lower)} to {_fmt(d.ci_upper)}"):
        assert s in html, s
    assert f"F(1, {rrrc.ddf:.2f}) = {rrrc.statistic:.3f}, p = {rrrc.p_value:.4f}" in html
    # the sentence: change from CT to CT+TS = -(CT - CT+TS), CI flipped
    change = -d.estimate
    words = "improved" if change > 0 else "lowered"
    sentence = f"CT+TS {words} the wAFROC figure of merit"
    assert sentence in html
    assert f"{abs(change):.3f}" in html and f"{-d.ci_upper:.3f}".replace("-", "−") in html
    assert f"p = {d.p_value:.3f}, RRRC)" in html or (d.p_value < 0.001 and "p < 0.001, RRRC)" in html)
    for t, m in zip(res.treatments, res.treatment_means):
        assert _fmt(m) in html
    for j in range(res.n_readers):
        for i in range(res.n_treatments):
            assert _fmt(res.foms[i, j]) in html
    assert _fmt(res.variance_components.value("Var", "estimate"), 6) in html


def test_methods_paragraph_and_references(simulated):
    html = simulated["html"]
    methods = html[html.index("8. Methods") : html.index("Reproducing this report")]
    for s in ("Obuchowski-Rockette method", "Dorfman-Berbaum-Metz", "Hillis", "wAFROC", "random-reader random-case", "lesion-class subgroup"):
        assert s in methods, s
    for s in (
        "Dorfman DD, Berbaum KS, Metz CE",
        "Obuchowski NA, Rockette HE",
        "Hillis SL. A comparison",
        "Hillis SL, Berbaum KS, Metz CE",
        "Chakraborty DP, Berbaum KS",
        "Observer Performance Methods for Diagnostic Imaging",
    ):
        assert s in methods, s
    assert "DeLong ER" not in methods  # only cited with the DeLong covariance
    cited = {int(n) for group in re.findall(r"\[([\d, ]+)\]", methods) for n in group.split(",")}
    n_refs = methods[methods.index("<ol") :].count("<li>")
    assert cited == set(range(1, n_refs + 1))  # every reference cited, every citation listed


def test_json_has_version_hash_and_the_full_result(simulated):
    doc = json.loads(simulated["paths"].json.read_text())
    assert doc["schema"] == "tsct.analysis.significance/1"
    assert doc["report"]["schema"] == REPORT_SCHEMA_ID
    assert doc["package_version"] and doc["package_version"] != "0+unknown"
    assert doc["input_sha256"] == hashlib.sha256(simulated["xlsx"].read_bytes()).hexdigest()
    assert doc["input_file"] == "spine.xlsx"
    ours = simulated["result"].to_dict()
    assert doc["analyses"] == ours["analyses"] and doc["foms"] == ours["foms"]
    assert set(doc["subgroups"]) == {"reader_group", "lesion_location", "lesion_type"}
    direct = _quiet(subgroup_analysis, simulated["data"], "wAFROC", by="lesion_type").to_dict()
    assert doc["subgroups"]["lesion_type"]["subgroups"] == direct["subgroups"]
    study = doc["report"]["study"]
    assert (study["n_normal"], study["n_abnormal"], study["n_lesions"]) == (24, 24, 48)
    assert study["lesions_by_attribute"]["location"] == {
        k: int(v) for k, v in pd.Series([les.attributes["location"] for c in simulated["data"].lesions for les in c]).value_counts(sort=False).items()
    }
    assert "tsct analyze report" in doc["report"]["command"]


def test_csvs_parse_and_recompute_the_figures(simulated):
    p, res = simulated["paths"], simulated["result"]
    sha = hashlib.sha256(simulated["xlsx"].read_bytes()).hexdigest()
    foms = pd.read_csv(p.foms_csv, dtype={"treatment": str, "reader": str})
    assert (foms["input_sha256"] == sha).all() and foms["package_version"].notna().all()
    per = foms[foms["kind"] == "reader"].pivot(index="treatment", columns="reader", values="value")
    np.testing.assert_allclose(per.loc[list(res.treatments), list(res.readers)].to_numpy(), res.foms, rtol=1e-15)
    avg = foms[foms["kind"] == "reader_average"].set_index("treatment")["value"]
    np.testing.assert_allclose(avg.loc[list(res.treatments)].to_numpy(), res.treatment_means, rtol=1e-15)

    diffs = pd.read_csv(p.differences_csv)
    overall = diffs[(diffs["scope"] == "overall") & (diffs["analysis"] == "RRRC") & (diffs["kind"] == "difference")]
    assert overall["estimate"].iloc[0] == pytest.approx(res["RRRC"].differences[0].estimate, rel=1e-15)
    assert overall["p_value"].iloc[0] == pytest.approx(res["RRRC"].differences[0].p_value, rel=1e-15)
    sub = diffs[diffs["scope"] == "subgroup"]
    assert set(sub["subgroup_by"]) == {"reader_group", "lesion_location", "lesion_type"}
    assert set(sub.loc[sub["subgroup_by"] == "reader_group", "subgroup"]) == {"board-certified", "resident"}

    curves = pd.read_csv(p.curves_csv)
    assert set(curves["curve"]) == {"wAFROC", "ROC"}
    avg_w = curves[(curves["curve"] == "wAFROC") & curves["average"].notna()]
    for t, mean in zip(res.treatments, res.treatment_means):  # area under the plotted average = mean FOM
        g = avg_w[avg_w["treatment"] == t].sort_values("point")
        x, y = g["x"].to_numpy(), g["y"].to_numpy()
        assert float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2)) == pytest.approx(mean, abs=1e-12)


def test_roc_study_without_subgroups_and_an_unavailable_request(tmp_path):
    data = read_jafroc_excel(VAN_DYKE)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        paths = write_report(data, tmp_path, fom="Wilcoxon", method="DBM", subgroups=["reader_group"], input_path=VAN_DYKE, pdf=False)
    assert any("Subgroups by reader_group" in str(w.message) for w in caught)
    assert paths.pdf is None and not (paths.directory / "report.pdf").exists()
    assert paths.directory.name == "dataset02"
    html = paths.html.read_text()
    assert "were requested but are not available" in html
    assert "Dorfman-Berbaum-Metz (DBM) method" in html and "pseudovalue scale" in html
    res = _quiet(significance_test, data, "Wilcoxon", method="DBM")
    d = res["RRRC"].differences[0]
    # Van Dyke: treatment 1 better than 0 by 0.0438 (RJafroc/OR-DBM MRMC: -0.04380 for 0 - 1)
    assert "Treatment 1 improved the Wilcoxon figure of merit over treatment 0 by 0.044" in html
    assert _fmt(d.estimate) == "−0.0438" and "−0.0438" in html
    curves = pd.read_csv(paths.curves_csv)
    assert set(curves["curve"]) == {"ROC"}


def test_single_reader_study_reports_the_fixed_reader_analysis(tmp_path):
    data = simulated_study(readers={"R1": "resident"})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MRMCWarning)
        paths = write_report(data, tmp_path, study_name="one reader", pdf=False, subgroups=None)
    html = paths.html.read_text()
    assert "3. Primary analysis: FRRC" in html
    assert "needs at least two readers" in html
    doc = json.loads(paths.json.read_text())
    assert list(doc["analyses"]) == ["FRRC"] and doc["input_sha256"] is None
    assert any("Only 1 reader" in w for w in doc["warnings"])


def test_report_with_the_rjafroc_backend_names_the_engine(tmp_path, monkeypatch):
    """RJafroc's stored St() output stands in for the R call (see _fake_rjafroc.py)."""
    from analysis import rjafroc_backend as rb
    from tests.analysis._fake_rjafroc import fake_r_layer

    monkeypatch.setattr(rb, "rjafroc_available", lambda refresh=False: (True, "RJafroc 2.1.3 (stored output)"))
    monkeypatch.setattr(rb, "_run_st_in_r", fake_r_layer("dataset02", "Wilcoxon"))
    data = read_jafroc_excel(VAN_DYKE)
    paths = _quiet(write_report, data, tmp_path, fom="Wilcoxon", backend="rjafroc", input_path=VAN_DYKE, pdf=False)
    html = paths.html.read_text()
    assert "computed by RJafroc (R) through rpy2: RJafroc 2.1.3 (stored output)" in html
    assert "--backend rjafroc" in html
    doc = json.loads(paths.json.read_text())
    ours = _quiet(significance_test, data, "Wilcoxon").to_dict()
    assert doc["analyses"]["RRRC"]["p"] == pytest.approx(ours["analyses"]["RRRC"]["p"], rel=1e-9)
    assert doc["report"]["engine"].startswith("RJafroc (R)")
