"""``tsct analyze report`` and ``tsct analyze crosscheck`` (and ``st --backend rjafroc``).

Without R the crosscheck must say how to install RJafroc and exit with code 3.  With the R call
replaced by RJafroc's stored ``St()`` output (see ``test_rjafroc_backend.py``) the whole command
runs: table, relative differences, PASS; a tampered RJafroc number gives FAIL and exit code 1.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from analysis import rjafroc_backend as rb
from analysis import write_jafroc_excel
from analysis.cli import app
from tests.analysis._fake_rjafroc import fake_r_layer
from tests.analysis._study_factory import simulated_study

DATA = Path(__file__).resolve().parents[1] / "data" / "rjafroc"
VAN_DYKE = DATA / "datasets" / "dataset02.xlsx"
FEDERICA = DATA / "datasets" / "dataset04.xlsx"
AVAILABLE, REASON = rb.rjafroc_available()
runner = CliRunner()


def _run(*args):
    return runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})


def test_report_command_writes_the_report_folder(tmp_path):
    xlsx = write_jafroc_excel(simulated_study(), tmp_path / "spine.xlsx")
    res = _run("report", xlsx, "--study", "Spine study", "--out", tmp_path / "reports", "--subgroups", "reader_group,lesion_type", "--no-pdf")
    assert res.exit_code == 0, res.output
    folder = tmp_path / "reports" / "Spine-study"
    assert f"Report written to {folder}" in " ".join(res.output.split())
    for name in ("report.html", "results.json", "foms.csv", "differences.csv", "curves.csv"):
        assert (folder / name).exists() and str(folder / name) in res.output
    assert not (folder / "report.pdf").exists()
    doc = json.loads((folder / "results.json").read_text())
    assert set(doc["subgroups"]) == {"reader_group", "lesion_type"}
    assert "--subgroups 'reader_group,lesion_type'" in doc["report"]["command"]


def test_report_command_default_name_pdf_and_unavailable_subgroups(tmp_path):
    res = _run("report", VAN_DYKE, "--fom", "Wilcoxon", "--out", tmp_path, "--subgroups", "lesion_type")
    assert res.exit_code == 0, res.output
    assert (tmp_path / "dataset02" / "report.pdf").exists()
    assert "Warning:" in res.output and "lesion_type" in res.output


def test_report_command_bad_input_is_one_red_line(tmp_path):
    res = _run("report", VAN_DYKE, "--fom", "wAFROC", "--out", tmp_path)
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert res.output.strip().startswith("Error:") and "Wilcoxon" in res.output


def test_crosscheck_without_rjafroc_says_how_to_install_and_exits_3(monkeypatch):
    # RJafroc made absent, so that the test means the same with and without it installed
    missing = f"rpy2 is not installed, so R cannot be called. {rb.INSTALL_HINT}"
    monkeypatch.setattr(rb, "rjafroc_available", lambda refresh=False: (False, missing))
    res = _run("crosscheck", VAN_DYKE, "--fom", "Wilcoxon")
    assert res.exit_code == 3, res.output
    text = " ".join(res.output.split())
    assert "RJafroc is not available" in text
    assert 'install.packages("RJafroc")' in text and "pip install '.[rjafroc]'" in text
    assert "rpy2 < 3.6" in text and "R 4.2" in text


@pytest.fixture
def fake_rjafroc(monkeypatch):
    monkeypatch.setattr(rb, "rjafroc_available", lambda refresh=False: (True, "RJafroc 2.1.3 (stored output)"))

    def install(dataset, fom, tamper=None):
        monkeypatch.setattr(rb, "_run_st_in_r", fake_r_layer(dataset, fom, tamper=tamper))

    return install


def test_crosscheck_prints_both_columns_and_passes(fake_rjafroc):
    fake_rjafroc("dataset04", "wAFROC")
    res = _run("crosscheck", FEDERICA, "--fom", "wAFROC", "--method", "DBM")
    assert res.exit_code == 0, res.output
    out = res.output
    for s in ("tsct", "RJafroc", "rel. diff", "analyses.RRRC.p", "foms.1.3", "PASS"):
        assert s in out, s
    assert "FAIL" not in out
    res_all = _run("crosscheck", FEDERICA, "--method", "DBM", "--all")
    assert res_all.exit_code == 0 and "reader_anova" in res_all.output


def test_crosscheck_fails_when_a_number_differs(fake_rjafroc):
    def tamper(outputs):
        ft = outputs["RRRC"]["RRRC"]["FTests"]["columns"]
        ft["p"] = [ft["p"][0] * (1 + 1e-6), ft["p"][1]]
        return outputs

    fake_rjafroc("dataset02", "Wilcoxon", tamper=tamper)
    res = _run("crosscheck", VAN_DYKE, "--fom", "Wilcoxon")
    assert res.exit_code == 1, res.output
    assert "FAIL: 1 of" in res.output and "analyses.RRRC.p" in res.output


def test_st_with_rjafroc_backend_writes_the_same_json(fake_rjafroc, tmp_path):
    fake_rjafroc("dataset02", "Wilcoxon")
    ours, theirs = tmp_path / "python.json", tmp_path / "rjafroc.json"
    assert _run("st", VAN_DYKE, "--fom", "Wilcoxon", "--json", ours).exit_code == 0
    res = _run("st", VAN_DYKE, "--fom", "Wilcoxon", "--backend", "rjafroc", "--json", theirs)
    assert res.exit_code == 0, res.output
    a, b = json.loads(ours.read_text()), json.loads(theirs.read_text())
    assert set(a) == set(b) and a["input_sha256"] == b["input_sha256"]
    assert b["analyses"]["RRRC"]["p"] == pytest.approx(a["analyses"]["RRRC"]["p"], rel=1e-9)
    for t, row in a["foms"].items():
        for r, value in row.items():
            assert b["foms"][t][r] == pytest.approx(value, rel=1e-12)
