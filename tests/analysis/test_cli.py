"""``tsct analyze`` commands: fom, st, power; errors from bad input are one red line, exit code 2."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from analysis.cli import app

DATA = Path(__file__).resolve().parents[1] / "data" / "rjafroc"
VAN_DYKE = DATA / "datasets" / "dataset02.xlsx"
FEDERICA = DATA / "datasets" / "dataset04.xlsx"

runner = CliRunner()


def _run(*args: str):
    return runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "160"})


def test_st_prints_rrrc_first_and_writes_json(tmp_path):
    out = tmp_path / "result.json"
    res = _run("st", VAN_DYKE, "--fom", "Wilcoxon", "--method", "OR", "--json", out)
    assert res.exit_code == 0, res.output
    text = res.output
    assert text.index("RRRC") < text.index("FRRC") < text.index("RRFC")
    assert "F(1, 15.26) = 4.456, p = 0.0517" in text
    assert "chi2(1) = 5.476, p = 0.0193" in text
    doc = json.loads(out.read_text())
    assert doc["input_sha256"] == hashlib.sha256(VAN_DYKE.read_bytes()).hexdigest()
    assert doc["analyses"]["RRRC"]["p"] == pytest.approx(0.0516656858192941, rel=1e-9)
    assert doc["foms"]["0"]["0"] == pytest.approx(0.919645732689211, rel=1e-12)


def test_st_dbm_single_analysis_and_alpha():
    res = _run("st", FEDERICA, "--method", "DBM", "--analysis", "RRRC", "--alpha", "0.01")
    assert res.exit_code == 0, res.output
    assert "RRRC" in res.output and "FRRC" not in res.output
    assert "F(4, 36.79) = 7.800" in res.output
    assert "99% CI" in res.output


def test_st_bootstrap_is_reproducible(tmp_path):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    for path in (a, b):
        res = _run("st", FEDERICA, "--covariance", "bootstrap", "--bootstraps", "200", "--seed", "3", "--analysis", "RRRC", "--json", path)
        assert res.exit_code == 0, res.output
    da, db = json.loads(a.read_text()), json.loads(b.read_text())
    assert da["analyses"] == db["analyses"]
    assert da["covariance"] == "bootstrap" and da["random_state"] == 3


def test_fom_command(tmp_path):
    out = tmp_path / "foms.json"
    res = _run("fom", FEDERICA, "--fom", "wAFROC", "--fom", "HrAuc", "--json", out)
    assert res.exit_code == 0, res.output
    assert "wAFROC" in res.output and "HrAuc" in res.output
    doc = json.loads(out.read_text())
    assert set(doc["foms"]) == {"wAFROC", "HrAuc"}
    assert doc["foms"]["wAFROC"]["1"]["1"] == pytest.approx(0.779266666666667, rel=1e-9)


def test_power_command(tmp_path):
    out = tmp_path / "power.json"
    res = _run("power", DATA / "datasets" / "dataset03.xlsx", "--fom", "Wilcoxon", "-d", "0.05", "-j", "6", "--json", out)
    assert res.exit_code == 0, res.output
    doc = json.loads(out.read_text())
    row = doc["rows"][0]
    assert (row["n_readers"], row["n_cases"]) == (6, 121)
    assert row["power"] == pytest.approx(0.8004469, abs=5e-8)
    assert doc["method"] == "DBM" and "converted to OR" in doc["method_description"]
    assert doc["backend"] == "python" and doc["rows"][0]["rjafroc_n_cases"] == 121
    res = _run("power", DATA / "datasets" / "dataset03.xlsx", "--fom", "Wilcoxon", "-d", "0.05", "-j", "6", "-k", "121", "-m", "DBM-HB2004")
    assert res.exit_code == 0, res.output
    assert "0.7857" in res.output and "Hillis & Berbaum 2004" in " ".join(res.output.split())


def test_st_backend_rjafroc_without_rjafroc_is_one_red_line(monkeypatch):
    from analysis import rjafroc_backend as rb

    missing = f"rpy2 is not installed, so R cannot be called. {rb.INSTALL_HINT}"
    monkeypatch.setattr(rb, "rjafroc_available", lambda refresh=False: (False, missing))
    res = _run("st", VAN_DYKE, "--fom", "Wilcoxon", "--backend", "rjafroc")
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert "RJafroc backend not available" in res.output


@pytest.mark.parametrize(
    "args,message",
    [
        (["st", "no-such-file.xlsx"], "File not found"),
        (["st", VAN_DYKE, "--fom", "wAFROC"], "ROC"),
        (["st", VAN_DYKE, "--fom", "Wilcoxon", "--method", "XYZ"], "method"),
        (["st", VAN_DYKE, "--fom", "Wilcoxon", "--analysis", "RRXX"], "Unknown analysis"),
        (["st", VAN_DYKE, "--fom", "Wilcoxon", "--method", "DBM", "--covariance", "delong"], "--method OR"),
        (["fom", VAN_DYKE, "--fom", "NoSuchFom"], "NoSuchFom"),
        (["power", VAN_DYKE, "--fom", "Wilcoxon", "--target-power", "2"], "--target-power"),
    ],
)
def test_bad_input_gives_one_red_line_and_exit_code_2(args, message):
    res = _run(*args)
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output
    assert message in res.output
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error:"), res.output


def test_corrupt_and_malformed_files(tmp_path):
    bad = tmp_path / "broken.xlsx"
    bad.write_bytes(b"this is not a workbook")
    res = _run("st", bad)
    assert res.exit_code == 2 and "Traceback" not in res.output and "broken.xlsx" in res.output
    wrong = tmp_path / "ratings.txt"
    wrong.write_text("x")
    res = _run("st", wrong)
    assert res.exit_code == 2 and "extension" in res.output
    res = _run("st", tmp_path)
    assert res.exit_code == 2 and "folder" in res.output


def test_help_speaks_the_users_language():
    res = _run("st", "--help")
    assert res.exit_code == 0
    for word in ("RRRC", "jackknife", "bootstrap", "JSON"):
        assert word in res.output
