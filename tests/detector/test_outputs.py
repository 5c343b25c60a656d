"""The detector -> reading contract: each case folder's outputs.json, read by detector.read_case_outputs."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from cases import Volume, read_grid, write_volume
from detector import CaseOutputsError, read_case_outputs, write_case_outputs
from detector.outputs import MANIFEST_NAME, ROLES, ModelRecord


def test_run_pair_writes_a_manifest_of_every_output(reg_run):
    out, result = reg_run["out"], reg_run["result"]
    outputs = read_case_outputs(out, verify=True)
    assert set(outputs.files) == set(result.outputs)  # every file written is listed, by role
    assert {"warped_prior", "subtraction", "subtraction_vm", "bone_roi", "zmap", "sigma", "candidates_json", "qc", "dicom_zscore_overlay"} <= set(
        outputs.files
    )
    current = reg_run["current"]
    assert outputs.case_id == "reg-t1" and outputs.qc_status == result.qc.status
    assert outputs.grid.agrees(current.volume) and outputs.grid.agrees(read_grid(reg_run["current"].source))
    for role in ("zmap", "subtraction", "bone_roi"):
        assert outputs.files[role].grid.agrees(outputs.grid) and outputs.path(role).is_file()
    assert outputs.model is not None and outputs.model.method == result.zscore.zmap.method
    if outputs.model.method == "network":
        assert outputs.model.version and outputs.model.sha256 and len(outputs.model.sha256) == 64
    assert outputs.exams["current"].sha256 and outputs.exams["prior"].grid is not None
    assert len(outputs.manifest_sha256) == 64 and outputs.record()["manifest_sha256"] == outputs.manifest_sha256


def _case(tmp_path, name="C1"):
    folder = tmp_path / name
    folder.mkdir()
    volume = Volume(np.arange(60, dtype=np.float32).reshape(3, 4, 5), (1.0, 1.0, 2.5), (1.0, 2.0, 3.0))
    files = {"zmap": write_volume(volume, folder / "z.nii.gz"), "candidates_csv": folder / "c.csv"}
    files["candidates_csv"].write_text("case_id\n")
    outputs = write_case_outputs(folder, files, grid=volume.grid, case_id=name, qc_status="passed", model=ModelRecord("analytic"))
    return folder, volume, outputs


def test_manifest_round_trip_and_errors_that_say_rerun(tmp_path):
    folder, volume, outputs = _case(tmp_path)
    again = read_case_outputs(folder, verify=True)
    assert again == outputs and again.path("zmap") == folder / "z.nii.gz"
    data = json.loads((folder / MANIFEST_NAME).read_text())
    assert data["format"] == "tsct-case-outputs" and data["version"] == 1 and data["files"]["zmap"]["grid"]["size"] == [5, 4, 3]
    assert not list(folder.glob(".outputs.json.tmp*"))  # written atomically: no temporary left
    with pytest.raises(CaseOutputsError, match="no 'sigma' output"):
        outputs.path("sigma")
    with pytest.raises(CaseOutputsError, match="Unknown output role"):
        outputs.path("heatmap")
    # an altered output
    (folder / "c.csv").write_text("case_id\nX\n")
    with pytest.raises(CaseOutputsError, match="c.csv.*changed after the detector wrote it"):
        read_case_outputs(folder, verify=True)
    read_case_outputs(folder, verify=["zmap"])  # only the roles asked for are re-hashed
    # another exam's grid
    with pytest.raises(CaseOutputsError, match="another grid.*origin"):
        outputs.check_grid(Volume(volume.array, volume.spacing_mm, (0.0, 0.0, 0.0)), "the current exam")
    # no manifest: a legacy folder, an unfinished case, no folder
    (folder / MANIFEST_NAME).unlink()
    (folder / "qc.json").write_text("{}")
    with pytest.raises(CaseOutputsError, match="without output manifests.*Rerun tsct detect"):
        read_case_outputs(folder)
    (folder / "qc.json").unlink()
    with pytest.raises(CaseOutputsError, match="did not finish"):
        read_case_outputs(folder)
    with pytest.raises(CaseOutputsError, match="no detector output folder"):
        read_case_outputs(tmp_path / "C9")


def test_foreign_newer_or_broken_manifests_are_refused(tmp_path):
    folder, _, _ = _case(tmp_path)
    path = folder / MANIFEST_NAME
    data = json.loads(path.read_text())
    path.write_text(json.dumps({**data, "version": 99}))
    with pytest.raises(CaseOutputsError, match="newer than this TSCT"):
        read_case_outputs(folder)
    path.write_text(json.dumps({**data, "format": "other"}))
    with pytest.raises(CaseOutputsError, match="not a TSCT case-outputs manifest"):
        read_case_outputs(folder)
    path.write_text(json.dumps({k: v for k, v in data.items() if k != "grid"}))
    with pytest.raises(CaseOutputsError, match="incomplete manifest"):
        read_case_outputs(folder)
    path.write_text("{")
    with pytest.raises(CaseOutputsError, match="not readable JSON"):
        read_case_outputs(folder)


def test_outputs_off_the_exam_grid_are_refused_when_written(tmp_path):
    folder = tmp_path / "C1"
    folder.mkdir()
    volume = Volume(np.zeros((3, 4, 5), np.float32), (1.0, 1.0, 2.5))
    path = write_volume(volume, folder / "zmap.nii.gz")
    other = Volume(np.zeros((3, 4, 6), np.float32), (1.0, 1.0, 2.5)).grid
    with pytest.raises(CaseOutputsError, match="not on the current exam's grid"):
        write_case_outputs(folder, {"zmap": path}, grid=other)
    with pytest.raises(CaseOutputsError, match="Unknown output role"):
        write_case_outputs(folder, {"heatmap": path}, grid=volume.grid)
    assert set(ROLES) >= {"zmap", "subtraction", "qc"}


def test_batch_skips_only_cases_with_a_manifest(reg_run, tmp_path):
    from detector.pipeline import _case_finished

    case = tmp_path / "A"
    shutil.copytree(reg_run["out"], case)
    assert _case_finished(case) == reg_run["result"].qc.status
    (case / MANIFEST_NAME).unlink()
    assert _case_finished(case) is None  # qc.json alone (an older or interrupted run) is not finished
