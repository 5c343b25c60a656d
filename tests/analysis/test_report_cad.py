"""The report's section "The detector alone vs the radiologists" (``write_report(cad_marks=...)``,
``tsct analyze report --cad-marks``) on a small simulated FROC study."""

from __future__ import annotations

import dataclasses
import json
import warnings

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from analysis import read_jafroc_excel, write_jafroc_excel
from analysis.cad_vs_rad import add_cad_reader, st_cad_vs_rad
from analysis.data import ObserverDataError
from analysis.report import write_report
from analysis.report_cad import choose_unaided_treatment
from tests.analysis._study_factory import simulated_study


def _marks(data, seed: int = 5) -> pd.DataFrame:
    """Detector marks on the study's cases: every lesion found with a random rating, and NLs."""
    rng = np.random.default_rng(seed)
    rows = [{"case_id": c, "lesion_id": "", "rating": float(rng.uniform(3, 8))} for c in data.case_ids[::2]]
    for c, lesions in zip(data.abnormal_cases, data.lesions):
        for les in lesions:
            if rng.uniform() < 0.8:
                rows.append({"case_id": c, "lesion_id": les.id, "rating": float(rng.uniform(4, 10))})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report-cad")
    data = simulated_study(n_normal=10, n_abnormal=10)
    xlsx = write_jafroc_excel(data, tmp / "spine.xlsx")
    data = read_jafroc_excel(xlsx)
    marks = _marks(data)
    csv = tmp / "marks_analytic.csv"
    marks[["case_id", "rating", "lesion_id"]].to_csv(csv, index=False)
    return {"tmp": tmp, "xlsx": xlsx, "data": data, "marks": marks, "csv": csv}


def test_report_section_equals_the_cad_vs_rad_analysis(study):
    data, marks = study["data"], study["marks"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        paths = write_report(
            data,
            study["tmp"] / "reports",
            study_name="with cad",
            subgroups=None,
            pdf=False,
            cad_marks=marks,
            cad_treatment="CT",
            cad_marks_source="marks_analytic.csv",
        )
    doc = json.loads(paths.json.read_text())["cad_vs_rad"]
    want = st_cad_vs_rad(add_cad_reader(data, marks, reader_id="CAD"), "wAFROC", cad_reader="CAD", method="1T-RRRC", treatment="CT")
    assert doc["method"] == "1T-RRRC" and doc["treatment"] == "CT" and doc["cadMarksFile"] == "marks_analytic.csv"
    assert doc["fomCAD"] == pytest.approx(want.fom_cad) and doc["pval"] == pytest.approx(want.pval)
    assert doc["avgRadFom"] == pytest.approx(want.avg_rad_fom) and doc["readers"] == list(data.readers)
    html = paths.html.read_text(encoding="utf-8")
    assert "The detector alone vs the radiologists" in html
    assert f"the detector alone had wAFROC {want.fom_cad:.4f}" in html
    assert f"radiologists minus detector {want.avg_diff_fom:+.4f}" in html
    # the radiologists' own analysis is unchanged by the section (the detector is not a reader there)
    assert json.loads(paths.json.read_text())["readers"] == list(data.readers)


def test_unaided_treatment_is_chosen_by_name_or_refused(study):
    data = study["data"]
    with pytest.raises(ObserverDataError, match="--cad-treatment"):
        choose_unaided_treatment(data)
    with pytest.raises(ObserverDataError, match="unknown treatment 'X'"):
        choose_unaided_treatment(data, "X")
    assert choose_unaided_treatment(dataclasses.replace(data, treatments=("Unaided", "aided by TS"))) == "Unaided"
    assert choose_unaided_treatment(data.select_treatments(["CT+TS"])) == "CT+TS"


def test_cli_report_with_cad_marks(study):
    from tsct_cli import app

    out = study["tmp"] / "cli-reports"
    args = [
        "analyze",
        "report",
        str(study["xlsx"]),
        "--out",
        str(out),
        "--study",
        "cli",
        "--subgroups",
        "none",
        "--no-pdf",
        "--cad-marks",
        str(study["csv"]),
    ]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 2 and "--cad-treatment" in res.output and "Traceback" not in res.output
    res = CliRunner().invoke(app, args + ["--cad-treatment", "CT"])
    assert res.exit_code == 0, res.output
    doc = json.loads((out / "cli" / "results.json").read_text())["cad_vs_rad"]
    assert doc["treatment"] == "CT" and doc["cadMarksFile"] == "marks_analytic.csv"
    res = CliRunner().invoke(app, args[:-1] + [str(study["tmp"] / "none.csv")])
    assert res.exit_code == 2 and "not found" in res.output
