"""``tsct detect``: clear one-line errors, check-registration JSON, run on a pair."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from cases import synthesize_case_set, write_volume
from detector.cli import app
from detector.evaluation import CHECK_JSON_KEYS

runner = CliRunner()


def test_run_bad_input_is_one_red_line_exit_2(tmp_path):
    missing = tmp_path / "nope.nii.gz"
    result = runner.invoke(app, ["run", str(missing), str(missing), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "nope.nii.gz" in result.output and "not found" in result.output
    assert "Traceback" not in result.output
    (tmp_path / "bad.nii.gz").write_bytes(b"garbage")
    result = runner.invoke(app, ["run", str(tmp_path / "bad.nii.gz"), str(tmp_path / "bad.nii.gz"), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "bad.nii.gz" in result.output and "Traceback" not in result.output


def test_run_rejects_malformed_options(tmp_path, reg_pair):
    p = write_volume(reg_pair.prior, tmp_path / "p.nii.gz")
    result = runner.invoke(app, ["run", str(p), str(p), "--out", str(tmp_path / "o"), "--kernel", "big"])
    assert result.exit_code == 2 and "--kernel" in result.output
    result = runner.invoke(app, ["run", str(p), str(p), "--out", str(tmp_path / "o"), "--deformable", "elastix"])
    assert result.exit_code == 2 and "deformable must be one of" in result.output


def test_check_registration_writes_documented_json(tmp_path):
    case_list = synthesize_case_set(tmp_path / "set", n_cases=1, abnormal_fraction=1.0, seed=5, size="small", progress=False)
    out_json = tmp_path / "check.json"
    result = runner.invoke(app, ["check-registration", str(case_list), "--json", str(out_json)])
    assert result.exit_code == 0, result.output
    report = json.loads(out_json.read_text())
    assert set(report) == {"case_list", "cases", "summary", "errors"}
    case = report["cases"][0]
    assert set(case) == set(CHECK_JSON_KEYS)
    assert case["tre_mean_mm"] < 0.35 and case["tre_p95_mm"] < 0.9 and case["tre_initial_mean_mm"] > 3.0
    assert case["run_time_s"] > 0 and case["qc_status"] in ("ok", "warning")
    assert case["n_lesions"] >= 1 and case["lesions"][0]["lesion_type"] in ("lytic", "blastic", "mixed")
    assert all(80 <= les["kept_plain_pct"] <= 120 for les in case["lesions"] if les["n_voxels"] >= 20)
    assert report["summary"]["n_cases"] == 1 and report["summary"]["mean_tre_mean_mm"] == case["tre_mean_mm"]
    assert "TRE in bone" in result.output


def test_check_registration_refuses_case_list_without_truth(tmp_path, reg_pair):
    from cases import Case, CaseList, write_case_list

    p = write_volume(reg_pair.prior, tmp_path / "p.nii.gz")
    c = write_volume(reg_pair.current, tmp_path / "c.nii.gz")
    path = write_case_list(CaseList((Case("X", p, c, abnormal=False),)), tmp_path / "cases.csv")
    result = runner.invoke(app, ["check-registration", str(path), "--json", str(tmp_path / "x.json")])
    assert result.exit_code == 2 and "true_transform" in result.output
