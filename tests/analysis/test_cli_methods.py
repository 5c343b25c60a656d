"""``tsct analyze cad-vs-rad | lroc | split-plot``: output, JSON, one-line errors with exit code 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from analysis.cli import app

DATA = Path(__file__).resolve().parents[1] / "data" / "rjafroc"
CAD_LROC = DATA / "datasets" / "datasetCadLroc.xlsx"
VAN_DYKE = DATA / "datasets" / "dataset02.xlsx"
TOY = DATA / "excel-examples" / "toyFiles"

runner = CliRunner()


def _run(*args):
    return runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})


def test_help_lists_the_commands():
    res = _run("--help")
    assert res.exit_code == 0
    for cmd in ("cad-vs-rad", "lroc", "split-plot"):
        assert cmd in res.output


def test_cad_vs_rad_lroc_file_json(tmp_path):
    out = tmp_path / "cad.json"
    res = _run("cad-vs-rad", CAD_LROC, "--fom", "PCL", "--fpf", "0.2", "--json", out)
    assert res.exit_code == 0, res.output
    assert "Detector = reader '1'" in res.output
    assert "t = 2.039 on 937.24 df, p = 0.0417" in res.output
    assert "t = 6.708 on 8.00 df, p = 0.0002" in res.output
    doc = json.loads(out.read_text())
    rrrc, rrfc = doc["results"]
    assert rrrc["method"] == "1T-RRRC" and rrfc["method"] == "1T-RRFC"
    assert rrrc["pval"] == pytest.approx(0.041726262, abs=5e-10)
    assert rrrc["cov2"] == pytest.approx(0.0030657054, abs=5e-11)
    assert rrfc["varError"] is None


def test_cad_vs_rad_with_separate_marks_file(tmp_path):
    from analysis.io import read_observer_data

    d = read_observer_data(VAN_DYKE)
    marks = tmp_path / "detector.csv"
    marks.write_text("case_id,lesion_id,rating\n" + "".join(f"{c},,{(7 * k) % 11}\n" for k, c in enumerate(d.case_ids)))
    res = _run("cad-vs-rad", VAN_DYKE, "--cad-marks", marks, "--treatment", "1", "--method", "1T-RRRC", "--json", tmp_path / "r.json")
    assert res.exit_code == 0, res.output
    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc["results"][0]["cadReader"] == "CAD" and len(doc["results"][0]["readers"]) == 5


def test_cad_vs_rad_errors_are_one_line():
    res = _run("cad-vs-rad", VAN_DYKE)
    assert res.exit_code == 2
    assert "choose it" in res.output and "Traceback" not in res.output
    res = _run("cad-vs-rad", VAN_DYKE, "--treatment", "0", "--cad-reader", "R9")
    assert res.exit_code == 2 and "'R9' is not in the study" in res.output
    res = _run("cad-vs-rad", VAN_DYKE, "--method", "2T-RRRC")
    assert res.exit_code == 2 and "--method" in res.output


def test_lroc_command_and_roc_conversion(tmp_path):
    roc = tmp_path / "roc.csv"
    res = _run("lroc", TOY / "LROC" / "lroc.xlsx", "--to-roc", roc, "--json", tmp_path / "f.json")
    assert res.exit_code == 0, res.output
    assert "PCL at FPF 0.2" in res.output and "ALROC at FPF 0.2" in res.output
    doc = json.loads((tmp_path / "f.json").read_text())
    assert doc["foms"]["ALROC"]["1"]["2"] == 0.0 and doc["foms"]["PCL"]["0"]["0"] == pytest.approx(0.8)
    from analysis.io import read_observer_data

    assert read_observer_data(roc).paradigm == "ROC"
    res = _run("lroc", VAN_DYKE)
    assert res.exit_code == 2 and "not an LROC file" in res.output


def test_split_plot_command_refuses_single_reader_groups():
    res = _run("split-plot", TOY / "ROC" / "rocSpC.xlsx")
    assert res.exit_code == 2
    assert "2 or more readers" in res.output and "Traceback" not in res.output


def test_lroc_st_option(tmp_path):
    res = _run("lroc", TOY / "LROC" / "lroc.xlsx", "--fom", "PCL", "--st", "--json", tmp_path / "s.json")
    assert res.exit_code == 0, res.output
    assert "OR analysis of PCL@0.2" in res.output
    doc = json.loads((tmp_path / "s.json").read_text())
    assert doc["st"]["fom"] == "PCL@0.2"


@pytest.mark.parametrize(
    "args",
    [
        ("fom", VAN_DYKE, "--fom", "Wilcoxon"),
        ("st", VAN_DYKE, "--fom", "Wilcoxon"),
        ("power", VAN_DYKE, "--fom", "Wilcoxon", "--effect-size", "0.05"),
        ("fit", VAN_DYKE, "--model", "binormal", "-t", "0"),
        ("cad-vs-rad", CAD_LROC, "--fom", "PCL", "--method", "1T-RRFC"),
        ("lroc", TOY / "LROC" / "lroc.xlsx", "--fom", "PCL"),
        ("split-plot", VAN_DYKE),  # a crossed study is a split-plot study of one group
    ],
    ids=lambda a: a[0],
)
def test_every_json_result_names_the_backend(tmp_path, args):
    """Issue 15: every JSON result says which engine computed it (``backend``)."""
    out = tmp_path / "out.json"
    res = _run(*args, "--json", out)
    assert res.exit_code == 0, res.output
    doc = json.loads(out.read_text())
    assert doc["backend"] == "python"
    for r in doc.get("results", []):
        assert r["backend"] == "python"
