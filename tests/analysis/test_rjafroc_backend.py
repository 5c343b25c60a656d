"""The RJafroc (rpy2) backend.

R and RJafroc are not installed on the machines that run this suite, so:

* tests that call R skip with the reason :func:`rjafroc_available` gives;
* the conversion of RJafroc's ``St()`` output into our :class:`SignificanceResult` is tested
  without R on RJafroc's own ``St()`` output, stored in ``tests/data/rjafroc/expected/st/``
  (RJafroc 2.1.3, commit 44b0e39e, R 4.2.2; JSON conventions in
  ``tests/data/rjafroc/README-upstream.md``): the converted result's JSON must equal the Python
  engine's to a relative 1e-9 for every dataset, FOM and method stored there;
* the whole backend (file written for RJafroc, R call, conversion) runs with the R call replaced
  by a stand-in that returns the stored ``St()`` output.
"""

from __future__ import annotations

import copy
import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from analysis import (
    BackendNotAvailableError,
    MRMCInputError,
    MRMCWarning,
    ObserverData,
    Provenance,
    significance_test,
)
from analysis import rjafroc_backend as rb
from analysis.fom import fom_case_ids
from tests.analysis._fake_rjafroc import fake_r_layer
from tests.analysis.rjafroc_reference import raw_st, reference_data

DATA = Path(__file__).resolve().parents[1] / "data" / "rjafroc"
AVAILABLE, REASON = rb.rjafroc_available()
needs_rjafroc = pytest.mark.skipif(not AVAILABLE, reason=f"RJafroc not callable here: {REASON}")
PROV = Provenance(input_file="x.xlsx", input_sha256="0" * 64, created_utc="2026-01-01T00:00:00+00:00")


_st = raw_st


_data = reference_data


def _st_cases():
    out = []
    for ds in ("dataset02", "dataset03", "dataset04", "dataset05"):
        foms = sorted({k.split("|")[0] for k in _st(ds) if not k.startswith("Util")})
        out += [(ds, f, m) for f in foms for m in ("OR", "DBM")]
    return out


def _stored_outputs(dataset: str, fom: str, method: str, analyses=("RRRC", "FRRC", "RRFC")) -> dict:
    return {a: _st(dataset)[f"{fom}|{method}|{a}"] for a in analyses}


def _engine(data: ObserverData, fom: str, method: str, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MRMCWarning)
        return significance_test(data, fom, method=method, provenance=PROV, **kw)


# ------------------------------------------------------------------------------------------
# availability
# ------------------------------------------------------------------------------------------


def test_unavailable_reason_says_how_to_install(monkeypatch):
    # RJafroc made absent, so that the test means the same with and without it installed
    missing = f"rpy2 is not installed, so R cannot be called. {rb.INSTALL_HINT}"
    monkeypatch.setattr(rb, "rjafroc_available", lambda refresh=False: (False, missing))
    REASON = rb.rjafroc_available()[1]
    assert 'install.packages("RJafroc")' in REASON
    assert "pip install '.[rjafroc]'" in REASON
    assert "R >= 4" in REASON
    with pytest.raises(BackendNotAvailableError, match="RJafroc backend not available"):
        significance_test(_data("dataset02"), "Wilcoxon", backend="rjafroc")


def test_backend_rejects_covariances_rjafroc_cannot_compute():
    with pytest.raises(MRMCInputError, match="covariance='jackknife' only"):
        significance_test(_data("dataset02"), "Wilcoxon", backend="rjafroc", covariance="delong")


@needs_rjafroc
@pytest.mark.rjafroc
@pytest.mark.parametrize("dataset,fom", [("dataset02", "Wilcoxon"), ("dataset04", "wAFROC")])
@pytest.mark.parametrize("method", ["OR", "DBM"])
def test_real_rjafroc_equals_python_engine(dataset, fom, method):
    data = _data(dataset)
    theirs = significance_test(data, fom, method=method, backend="rjafroc", provenance=PROV)
    report = rb.compare_results(_engine(data, fom, method), theirs)
    assert report.passed, report.to_frame()[~report.to_frame().ok].head(20).to_string()


# ------------------------------------------------------------------------------------------
# St() output -> SignificanceResult, on RJafroc's real output (no R needed)
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dataset,fom,method", _st_cases())
def test_converted_st_output_equals_python_engine(dataset, fom, method):
    data, name, positional = _data(dataset), fom, False
    if fom == "Wilcoxon_of_DfFroc2Roc":  # St(DfFroc2Roc(ds), "Wilcoxon"): RJafroc renames readers
        data, name, positional = data.to_roc(), "Wilcoxon", True
    converted = rb.result_from_st(
        _stored_outputs(dataset, fom, method),
        method=method,
        fom=name,
        treatments=data.treatments,
        readers=data.readers,
        n_cases=len(fom_case_ids(data, name)),
        provenance=PROV,
        rjafroc_treatments=None if positional else data.treatments,
        rjafroc_readers=None if positional else data.readers,
    )
    ours = _engine(data, name, method)
    report = rb.compare_results(converted, ours, rtol=1e-9, atol=1e-12)
    assert report.passed, report.to_frame()[~report.to_frame().ok].head(20).to_string()
    assert len(report.rows) > 40
    doc_c, doc_o = converted.to_dict(), ours.to_dict()
    assert set(doc_c) == set(doc_o)
    for key in ("schema", "fom", "method", "covariance", "treatments", "readers", "n_cases", "warnings"):
        assert doc_c[key] == doc_o[key], key
    for name_, res in doc_o["analyses"].items():
        conv = doc_c["analyses"][name_]
        assert set(conv) == set(res)
        assert (conv["statistic_name"], conv["error_term"], conv["description"]) == (res["statistic_name"], res["error_term"], res["description"])
    json.dumps(doc_c, allow_nan=False)  # strict JSON


def test_converter_reads_a_single_analysis_and_keeps_alpha():
    data = _data("dataset02")
    outputs = _stored_outputs("dataset02", "Wilcoxon", "OR", analyses=("FRRC",))
    res = rb.result_from_st(outputs, method="OR", fom="Wilcoxon", treatments=data.treatments, readers=data.readers, n_cases=data.n_cases)
    assert list(res.analyses) == ["FRRC"]
    frrc = res["FRRC"]
    assert frrc.statistic_name == "chi2" and frrc.ddf is None
    assert frrc.statistic == pytest.approx(5.47595324247717, rel=1e-12)  # St()$FRRC$FTests$Chisq
    assert all(t.normal_reference for t in frrc.treatment_cis)
    assert [c.reader for c in frrc.reader_differences] == list(data.readers)


def test_converter_checks_labels_and_structure():
    data = _data("dataset04")
    outputs = _stored_outputs("dataset04", "wAFROC", "OR")
    kw = dict(method="OR", fom="wAFROC", treatments=data.treatments, readers=data.readers, n_cases=data.n_cases)
    with pytest.raises(rb.RJafrocOutputError, match="labelled the readers"):
        rb.result_from_st(outputs, rjafroc_readers=("1", "2", "3", "4"), **kw)
    broken = copy.deepcopy(outputs)
    del broken["RRRC"]["RRRC"]["ciDiffTrt"]
    with pytest.raises(rb.RJafrocOutputError, match="ciDiffTrt"):
        rb.result_from_st(broken, **kw)
    with pytest.raises(rb.RJafrocOutputError, match="shape"):
        rb.result_from_st(outputs, **{**kw, "readers": ("1", "3", "4")})
    with pytest.raises(rb.RJafrocOutputError, match="Unknown analyses"):
        rb.result_from_st({"ALL": outputs["RRRC"]}, **kw)


def _r_value(v):
    if v is None or np.isnan(v):
        return "NA"
    return "Inf" if np.isinf(v) else float(v)


def _plain_st_from_result(res, analysis: str) -> dict:
    """The St() structure RJafroc would return for ``res`` (to test warnings/Inf handling)."""
    trt = [f"trt{t}" for t in res.treatments]
    rdr = [f"rdr{r}" for r in res.readers]
    pairs = [f"{trt[a]}-{trt[b]}" for a in range(len(trt)) for b in range(a + 1, len(trt))]

    def frame(rows, cols):
        return {"__type__": "data.frame", "rownames": rows, "columns": {k: [_r_value(v) for v in vals] for k, vals in cols.items()}}

    def comps(cs, labels):
        return frame(
            labels,
            {
                "Estimate": [c.estimate for c in cs],
                "StdErr": [c.se for c in cs],
                "DF": [c.df for c in cs],
                "t": [c.statistic for c in cs],
                "PrGTt": [c.p_value for c in cs],
                "CILower": [c.ci_lower for c in cs],
                "CIUpper": [c.ci_upper for c in cs],
            },
        )

    a = res.analyses[analysis]
    block = {
        "FTests": frame(
            ["Treatment", "Error"], {"DF": [a.df, a.ddf], "MS": [a.ms_treatment, a.ms_error], "FStat": [a.statistic, None], "p": [a.p_value, None]}
        ),
        "ciDiffTrt": comps(a.differences, pairs),
        "ciAvgRdrEachTrt": frame(
            trt,
            {
                "Estimate": [t.estimate for t in a.treatment_cis],
                "StdErr": [t.se for t in a.treatment_cis],
                "DF": [t.df for t in a.treatment_cis],
                "CILower": [t.ci_lower for t in a.treatment_cis],
                "CIUpper": [t.ci_upper for t in a.treatment_cis],
                **({"Cov2": [t.cov2 for t in a.treatment_cis]} if analysis == "RRRC" else {}),
            },
        ),
    }
    it, ir = res.treatment_anova, res.reader_anova
    return {
        "FOMs": {"foms": {"__type__": "array", "dim": list(res.foms.shape), "dimnames": [trt, rdr], "values": res.foms.flatten(order="F").tolist()}},
        "ANOVA": {
            "TRanova": frame(["T", "R", "TR"], {c: list(res.anova[c]) for c in ("SS", "DF", "MS")}),
            "VarCom": frame(
                list(res.variance_components.index),
                {"Estimates": list(res.variance_components["estimate"]), "Rhos": list(res.variance_components["rho"])},
            ),
            "IndividualTrt": frame(
                trt, {"DF": list(it["df_msR"]), "msREachTrt": list(it["msR"]), "varEachTrt": list(it["var"]), "cov2EachTrt": list(it["cov2"])}
            ),
            "IndividualRdr": frame(
                rdr, {"DF": list(ir["df_msT"]), "msTEachRdr": list(ir["msT"]), "varEachRdr": list(ir["var"]), "cov1EachRdr": list(ir["cov1"])}
            ),
        },
        analysis: block,
    }


def test_converter_derives_the_engines_warnings_for_degenerate_data():
    """All readers identical: MS(TR) = 0, so ddf_H is infinite (R's F/t limits, a warning)."""
    rng = np.random.default_rng(1)  # 8 + 8 cases and integer ratings: FOMs are exact multiples of 1/128
    normal = np.repeat(rng.integers(1, 4, (2, 1, 8)), 3, axis=1).astype(float)
    abnormal = np.repeat(rng.integers(2, 6, (2, 1, 8)), 3, axis=1).astype(float)
    data = ObserverData.from_roc(normal, abnormal)
    ours = _engine(data, "Wilcoxon", "OR", analyses="RRRC")
    assert any("infinite" in w for w in ours.warnings)
    assert ours["RRRC"].ddf == np.inf
    plain = json.loads(json.dumps(_plain_st_from_result(ours, "RRRC")))
    converted = rb.result_from_st(
        {"RRRC": plain},
        method="OR",
        fom="Wilcoxon",
        treatments=data.treatments,
        readers=data.readers,
        n_cases=data.n_cases,
        provenance=PROV,
        rjafroc_treatments=data.treatments,
        rjafroc_readers=data.readers,
    )
    assert converted.warnings == ours.warnings
    assert converted["RRRC"].warnings == ours["RRRC"].warnings
    assert rb.compare_results(converted, ours).passed


def test_compare_results_flags_every_difference():
    data = _data("dataset02")
    ours = _engine(data, "Wilcoxon", "OR")
    same = rb.compare_results(ours, _engine(data, "Wilcoxon", "OR"))
    assert same.passed and same.n_failed == 0 and same.max_rel_diff == 0.0
    from dataclasses import replace

    foms = np.array(ours.foms)
    foms[0, 0] *= 1 + 1e-8
    off = rb.compare_results(replace(ours, foms=foms), ours)
    assert not off.passed
    bad = off.to_frame()[~off.to_frame().ok]
    assert list(bad["path"]) == ["foms.0.0", "treatment_means.0"]  # the mean follows the FOM
    assert bad["rel_diff"].iloc[0] == pytest.approx(1e-8, rel=1e-6)
    assert rb.compare_results(replace(ours, foms=foms), ours, rtol=1e-7).passed


def test_crosscheck_verdict_names_the_tolerance_each_number_passed_by():
    from dataclasses import replace

    from analysis.results import Table

    ours = _engine(_data("dataset02"), "Wilcoxon", "OR")
    foms = np.array(ours.foms)
    foms[0, 0] *= 1 + 1e-12  # passes by the relative tolerance
    vc = ours.variance_components
    cols = {k: np.array(v, dtype=float) for k, v in vc.columns.items()}
    cols["estimate"][0] = 0.0  # a number that is zero in the reference ...
    theirs = replace(ours, variance_components=Table(index=vc.index, columns=cols, index_name=vc.index_name))
    cols2 = {k: np.array(v, dtype=float) for k, v in cols.items()}
    cols2["estimate"][0] = 5e-13  # ... and 5e-13 here: passes only by the absolute 1e-12
    mine = replace(ours, foms=foms, variance_components=Table(index=vc.index, columns=cols2, index_name=vc.index_name))
    report = rb.compare_results(mine, theirs)
    assert report.passed
    by = {r.path: r.passed_by for r in report.rows}
    assert by["foms.0.0"] == "relative" and by[f"variance_components.{vc.index[0]}"] == "absolute"
    assert by["fom"] == "equal"
    text = report.verdict()
    assert "within a relative 1e-09" in text and "only within the absolute 1e-12" in text
    assert "1 near zero" in text


# ------------------------------------------------------------------------------------------
# The whole backend with the R call replaced by RJafroc's stored output
# ------------------------------------------------------------------------------------------


@pytest.fixture
def fake_rjafroc(monkeypatch):
    monkeypatch.setattr(rb, "rjafroc_available", lambda refresh=False: (True, "RJafroc 2.1.3 (stored output)"))

    def install(dataset: str, fom: str, **kw):
        calls: list = []
        monkeypatch.setattr(rb, "_run_st_in_r", fake_r_layer(dataset, fom, calls, **kw))
        return calls

    return install


@pytest.mark.parametrize("dataset,fom", [("dataset03", "Wilcoxon"), ("dataset05", "wAFROC")])
@pytest.mark.parametrize("method", ["OR", "DBM"])
def test_backend_end_to_end_with_stored_rjafroc_output(fake_rjafroc, dataset, fom, method):
    calls = fake_rjafroc(dataset, fom)
    data = _data(dataset)
    theirs = significance_test(data, fom, method=method, backend="rjafroc", provenance=PROV)
    assert calls == [(fom, method, ("RRRC", "FRRC", "RRFC"), 0.05)]
    assert theirs.treatments == data.treatments and theirs.readers == data.readers  # our IDs back
    report = rb.compare_results(theirs, _engine(data, fom, method))
    assert report.passed, report.to_frame()[~report.to_frame().ok].head(10).to_string()
    assert theirs.provenance == PROV


def test_backend_reads_a_path_and_records_its_provenance(fake_rjafroc):
    fake_rjafroc("dataset02", "Wilcoxon")
    path = DATA / "datasets" / "dataset02.xlsx"
    res = rb.significance_test_rjafroc(path, "Wilcoxon", "OR", "RRRC")
    assert list(res.analyses) == ["RRRC"]
    assert res.provenance.input_file == "dataset02.xlsx"
    import hashlib

    assert res.provenance.input_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_single_reader_runs_fixed_reader_analysis_only(fake_rjafroc, monkeypatch):
    data = _data("dataset02").select_readers(["0"])
    seen = []

    def run(xlsx_path, fom, method, analyses, alpha):
        seen.append(tuple(analyses))
        raise RuntimeError("stop here")

    monkeypatch.setattr(rb, "_run_st_in_r", run)
    with pytest.warns(MRMCWarning, match="Only 1 reader"), pytest.raises(RuntimeError, match="stop here"):
        rb.significance_test_rjafroc(data, "Wilcoxon", "OR", "ALL")
    assert seen == [("FRRC",)]


def test_positional_ids_sort_like_numbers():
    data = ObserverData.from_roc(np.zeros((2, 12, 3)), np.ones((2, 12, 2)), readers=[f"reader {j}" for j in range(12)])
    copy_, trt, rdr = rb._positional_copy(data)
    assert trt == ("T1", "T2") and rdr[:3] == ("R01", "R02", "R03") and rdr[-1] == "R12"
    assert list(rdr) == sorted(rdr)  # RJafroc's string sort keeps the order
    assert copy_.reader_groups == {} and np.array_equal(copy_.ll, data.ll)


# ------------------------------------------------------------------------------------------
# rpy2 -> plain structures (needs rpy2 and R, not RJafroc)
# ------------------------------------------------------------------------------------------


def _r_available() -> tuple[bool, str]:
    try:
        import rpy2.robjects  # noqa: F401
    except Exception as exc:  # ImportError, or R missing
        return False, f"rpy2/R not available: {type(exc).__name__}: {exc}"
    return True, ""


@pytest.mark.skipif(not _r_available()[0], reason=_r_available()[1] or "rpy2 available")
def test_r_to_plain_matches_the_stored_serialisation():
    import rpy2.robjects as ro

    obj = ro.r(
        """list(
            FOMs = list(foms = array(c(0.1, 0.2, 0.3, 0.4), dim = c(2, 2),
                                     dimnames = list(c("trt1", "trt2"), c("rdr1", "rdr2")))),
            RRRC = list(FTests = data.frame(DF = c(1, 15.2), MS = c(0.5, 0.1),
                                            FStat = c(5, NA), p = c(0.04, NA),
                                            row.names = c("Treatment", "Error"))))"""
    )
    plain = rb.r_to_plain(obj)
    assert plain["FOMs"]["foms"] == {
        "__type__": "array",
        "dim": [2, 2],
        "dimnames": [["trt1", "trt2"], ["rdr1", "rdr2"]],
        "values": [0.1, 0.2, 0.3, 0.4],
    }
    ft = plain["RRRC"]["FTests"]
    assert ft["rownames"] == ["Treatment", "Error"]
    assert ft["columns"]["DF"] == [1.0, 15.2] and np.isnan(ft["columns"]["p"][1])
    decoded = rb.decode_plain(plain)
    assert decoded["FOMs"]["foms"].values[1, 0] == 0.2


_STAND_IN_R = r"""
DfReadDataFile <- function(fileName, format = "JAFROC", newExcelFileFormat = FALSE, lrocForcedMark = NA,
                           delimiter = ",", sequentialNames = FALSE) {
  stopifnot(isTRUE(newExcelFileFormat), file.exists(fileName))
  list(fileName = fileName)
}
St <- function(dataset, FOM, method = "OR", covEstMethod = "jackknife", analysisOption = "RRRC",
               alpha = 0.05, FPFValue = 0.2, nBoots = 200, seed = NULL, details = 0) {
  cat("printed by St()\n")
  list(FOMs = list(foms = array(c(0.8, 0.9, 0.7, 0.95), dim = c(2, 2),
                                dimnames = list(c("trtT1", "trtT2"), c("rdrR1", "rdrR2")))),
       echo = list(FOM = FOM, method = method, covEstMethod = covEstMethod,
                   analysisOption = analysisOption, alpha = alpha, file = dataset$fileName),
       ANOVA = list(TRanova = data.frame(SS = c(1, 2, 3), DF = c(1L, 1L, NA), MS = c(1, 2, NA),
                                         row.names = c("T", "R", "TR"))))
}
"""


@pytest.mark.skipif(not _r_available()[0], reason=_r_available()[1] or "rpy2 available")
@pytest.mark.skipif(AVAILABLE, reason="the real RJafroc is installed; the stand-in would shadow it")
def test_r_calling_layer_with_a_stand_in_rjafroc_package(tmp_path):
    """Installs a tiny R package named RJafroc (DfReadDataFile/St echo their arguments) and runs
    the real rpy2 layer against it: argument names and types, console capture, conversion."""
    import shutil
    import subprocess

    import rpy2.robjects as ro

    if shutil.which("R") is None:
        pytest.skip("the R executable is not on PATH (needed for R CMD INSTALL)")
    pkg, lib = tmp_path / "RJafroc", tmp_path / "lib"
    (pkg / "R").mkdir(parents=True)
    lib.mkdir()
    (pkg / "DESCRIPTION").write_text(
        "Package: RJafroc\nVersion: 2.1.3\nTitle: Stand-in\nDescription: Test stand-in.\nLicense: MIT\n"
        "Author: tsct tests\nMaintainer: tsct tests <tests@example.org>\n"
    )
    (pkg / "NAMESPACE").write_text("export(St, DfReadDataFile)\n")
    (pkg / "R" / "stand_in.R").write_text(_STAND_IN_R)
    subprocess.run(["R", "CMD", "INSTALL", f"--library={lib}", str(pkg)], check=True, capture_output=True)
    old = list(ro.r(".libPaths()"))
    ro.r(f'.libPaths(c("{lib}", .libPaths()))')
    try:
        ok, reason = rb.rjafroc_available(refresh=True)
        assert ok and reason.startswith("RJafroc 2.1.3 on R version")
        xlsx = tmp_path / "study.xlsx"
        xlsx.write_bytes(b"")
        out = rb._run_st_in_r(xlsx, "wAFROC", "DBM", ["RRRC", "FRRC"], 0.01)
    finally:
        ro.r(".libPaths")(ro.StrVector(old))
        ro.r('if ("RJafroc" %in% loadedNamespaces()) unloadNamespace("RJafroc")')
        rb.rjafroc_available(refresh=True)
    assert list(out) == ["RRRC", "FRRC"]
    assert out["FRRC"]["echo"] == {
        "FOM": "wAFROC",
        "method": "DBM",
        "covEstMethod": "jackknife",
        "analysisOption": "FRRC",
        "alpha": 0.01,
        "file": str(xlsx),
    }
    assert out["RRRC"]["FOMs"]["foms"]["dimnames"] == [["trtT1", "trtT2"], ["rdrR1", "rdrR2"]]
    tr = out["RRRC"]["ANOVA"]["TRanova"]
    assert tr["rownames"] == ["T", "R", "TR"] and tr["columns"]["DF"][:2] == [1.0, 1.0]
    assert np.isnan(tr["columns"]["DF"][2]) and np.isnan(tr["columns"]["MS"][2])  # NA_integer_, NA_real_
