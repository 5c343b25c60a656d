"""``tsct detect train`` and ``tsct detect evaluate`` on toy cases (registration outputs on disk)."""

from __future__ import annotations

import json

import pytest
import typer
from typer.testing import CliRunner

from detector.cli_zscore import register_commands

from .zscore_toy import write_toy_study

pytest.importorskip("torch")


@pytest.fixture(scope="module")
def app():
    a = typer.Typer()
    register_commands(a)
    return a


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    return write_toy_study(tmp_path_factory.mktemp("toy-cli"), abnormal=(False, False, False, True))


def test_train_command_writes_a_bundle(app, study, tmp_path):
    caselist, work = study
    out = tmp_path / "model" / "toy.pt"
    result = CliRunner().invoke(
        app,
        [
            "train",
            str(caselist),
            "--out",
            str(out),
            "--work",
            str(work),
            "--iterations",
            "2",
            "--batch-size",
            "2",
            "--patch",
            "16",
            "--channels",
            "4",
            "--blocks",
            "1",
            "--validation-pairs",
            "1",
            "--device",
            "cpu",
            "--checkpoint-every",
            "1",
        ],
    )
    assert result.exit_code == 0, result.output
    meta = json.loads(out.with_name("toy.metadata.json").read_text())
    assert meta["training_data"]["n_pairs_train"] == 2 and meta["training_data"]["n_pairs_validation"] == 1
    assert meta["training"]["iterations"] == 2
    assert out.with_name("toy.md").is_file()
    assert (work / "toy.ckpt.pt").is_file()  # checkpoints go to --work


def test_evaluate_command_writes_report_and_json(app, study, tmp_path):
    caselist, work = study
    result = CliRunner().invoke(
        app,
        [
            "evaluate",
            str(caselist),
            "--work",
            str(work),
            "--model",
            "analytic",
            "--report",
            str(tmp_path / "rep"),
            "--json",
            str(tmp_path / "e.json"),
        ],
    )
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "e.json").read_text())
    assert set(data["methods"]) == {"plain", "voxel_matched", "analytic"}
    assert data["methods"]["analytic"]["sensitivity_at_1_fp"] == pytest.approx(1.0)
    assert (tmp_path / "rep" / "froc.png").is_file()
    # the detector's marks per method, in the report folder and beside the JSON
    for folder in (tmp_path / "rep", tmp_path):
        assert {p.name for p in folder.glob("marks_*.csv")} == {"marks_plain.csv", "marks_voxel_matched.csv", "marks_analytic.csv"}
    assert (tmp_path / "marks_analytic.csv").read_text() == (tmp_path / "rep" / "marks_analytic.csv").read_text()


def test_evaluate_command_reports_a_missing_model(app, study, tmp_path):
    caselist, work = study
    result = CliRunner().invoke(
        app, ["evaluate", str(caselist), "--work", str(work), "--model", str(tmp_path / "none.pt"), "--report", str(tmp_path / "rep")]
    )
    assert result.exit_code == 2
    assert "not found" in result.output
