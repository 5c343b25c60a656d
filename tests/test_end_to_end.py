"""The whole chain on tiny data: cases → detector → locked study → simulated readings → report.

The report's numbers must equal what ``analysis`` computes directly from the study's export, and
a rerun must not duplicate the study or any reading.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

import reader_study as rs
from analysis import read_jafroc_excel, significance_test
from tsct_demo import DemoSettings, run_demo


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    settings = DemoSettings(data_dir=root / "data", reports_dir=root / "reports", n_cases=4, seed=0, size="small")
    result = run_demo(settings, say=lambda _: None, progress=False)
    return settings, result


def _n_marks(db_url: str) -> int:
    db = rs.open_db(db_url)
    with db.snapshot() as s:
        return int(rs.study_status(s, "DEMO").to_frame()["reads"].sum()), len(rs.study_records(s, "DEMO").marks)


def test_report_equals_analysis_of_the_export(demo):
    settings, result = demo
    results = json.loads((result.report_dir / "results.json").read_text())
    data = read_jafroc_excel(result.export_dir / "DEMO-jafroc.xlsx")
    direct = significance_test(data, "wAFROC", method="OR").to_dict()
    for treatment, per_reader in results["foms"].items():
        for reader, value in per_reader.items():
            assert value == pytest.approx(direct["foms"][treatment][reader], rel=1e-12, abs=1e-12)
    for analysis in ("RRRC", "FRRC", "RRFC"):
        ours, theirs = results["analyses"][analysis], direct["analyses"][analysis]
        assert ours["statistic"] == pytest.approx(theirs["statistic"], rel=1e-10)
        assert ours["p"] == pytest.approx(theirs["p"], rel=1e-10)
        np.testing.assert_allclose(ours["differences"][0]["ci95"], theirs["differences"][0]["ci95"], rtol=1e-10)
    assert results["input_sha256"] and results["package_version"]
    det = results["detector_outputs"]  # the outputs the readers saw, through their manifests
    assert det["n_cases"] == 4 and not det["missing"] and len(det["manifests_sha256"]) == 64 and det["models"]


def test_report_shows_fom_per_reader_rrrc_and_location_subgroups(demo):
    _, result = demo
    html = (result.report_dir / "report.html").read_text()
    assert "RRRC" in html and "Dr" not in result.headline
    results = json.loads((result.report_dir / "results.json").read_text())
    assert set(results["foms"]) == {"unaided", "aided"} and len(results["foms"]["aided"]) == 6
    assert "lesion_location" in results["subgroups"]
    assert "aided - unaided" in result.headline
    # the detector alone (its z-map candidates on the study's cases) vs the radiologists, unaided
    cad = results["cad_vs_rad"]
    assert cad["treatment"] == "unaided" and cad["method"] == "1T-RRRC" and cad["cadMarksFile"] == "marks_zscore.csv"
    assert 0.0 <= cad["fomCAD"] <= 1.0 and len(cad["fomRAD"]) == 6
    assert "The detector alone vs the radiologists" in html


def test_study_is_locked_fully_crossed_and_complete(demo):
    settings, result = demo
    db = rs.open_db(result.database_url.replace("***", ""))
    with db.snapshot() as s:
        status = rs.study_status(s, "DEMO").to_frame()
        assert rs.verify_lock(s, "DEMO")
    assert (status["finished"] == status["reads"]).all()


def test_rerun_adds_nothing(demo):
    settings, result = demo
    before = _n_marks(result.database_url)
    again = run_demo(settings, say=lambda _: None, progress=False)
    assert _n_marks(again.database_url) == before
    db = rs.open_db(result.database_url)
    with db.snapshot() as s:
        assert sorted(rs.list_studies(s)["code"]) == ["DEMO", "DEMO-READ"]


def test_a_person_can_read_at_once_and_the_app_finds_the_detector_outputs(demo, monkeypatch):
    """`make demo` leaves DEMO-READ open with unread cases for the account `radiologist`, and the app,
    given only TSCT_DATA_DIR, finds the detector outputs the demo wrote (recorded with each study)."""
    settings, result = demo
    db = rs.open_db(result.database_url)
    with db.snapshot() as s:
        account = rs.find_account(s, "radiologist")
        studies = rs.list_studies(s).set_index("code")
    assert account is not None and account.role == "reader" and "radiologist" in result.accounts
    assert studies.loc["DEMO-READ", "status"] == "open"
    svc = rs.ReadingService(db, reader_id=account.reader_id, study_code="DEMO-READ")
    sessions = svc.sessions()
    assert sum(v.n_reads for v in sessions) > 0 and sum(v.n_finished for v in sessions) == 0
    for variable in ("TSCT_DATABASE_URL", "TSCT_DETECTOR_DIR", "TSCT_STUDY_DIRS"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("TSCT_DATA_DIR", str(settings.data_dir))
    from reading_app.workstation import check_detector_outputs, reset_runtime

    reset_runtime()
    try:
        from reading_app.pages import common

        for code in ("DEMO", "DEMO-READ"):
            folder = common.detector_dir(code)
            assert folder == result.detector_dir.resolve()
            with db.snapshot() as s:
                cases = [c.code for c in rs.get_study(s, code).cases]
            check = check_detector_outputs(cases, ("subtraction", "zmap"), folder)
            assert bool(check["present"].all()), check[~check["present"]]
    finally:
        reset_runtime()
