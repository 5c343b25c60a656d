"""`tsct study create --detector-dir`: every case's outputs.json is checked against the exam's grid and recorded."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import select

from reader_study import InputFileError, create_study
from reader_study.models import AuditEvent
from reading_app.workstation.testing import write_test_detector_outputs

from .conftest import READERS


def test_create_records_the_outputs_and_refuses_missing_or_misplaced_ones(db, case_files, tmp_path):
    case_list, _ = case_files
    detector = tmp_path / "det"
    folders = write_test_detector_outputs(case_list, detector)
    with db.transaction() as s:
        create_study(s, code="D1", case_list=case_list, readers=READERS, detector_dir=detector)
    with db.snapshot() as s:
        events = [e for e in s.scalars(select(AuditEvent)) if e.action == "CREATE_STUDY"]
        record = events[-1].detail["detector_outputs"]
    assert record["n_cases"] == len(folders) and not record["missing"] and len(record["manifests_sha256"]) == 64
    # a case run on another exam (outputs on another grid), and a case without a manifest
    from cases import Volume, write_volume
    from detector.outputs import MANIFEST_NAME, ROLES, write_case_outputs

    moved = Volume(np.zeros((12, 16, 16), np.float32), (1.0, 1.0, 2.0), (0.0, 0.0, 0.0))
    zmap = write_volume(moved, folders[0] / ROLES["zmap"][0])
    write_case_outputs(folders[0], {"zmap": zmap}, grid=moved.grid, case_id=folders[0].name)
    (folders[1] / MANIFEST_NAME).unlink()
    with pytest.raises(InputFileError) as err, db.transaction() as s:
        create_study(s, code="D2", case_list=case_list, readers=READERS, detector_dir=detector)
    text = str(err.value)
    assert f"case {folders[0].name}" in text and "another grid" in text
    assert f"case {folders[1].name}" in text and "Rerun tsct detect" in text
    with db.transaction() as s:  # without treatments that show outputs, nothing is asked of them
        from reader_study import TreatmentSpec

        create_study(s, code="D3", case_list=case_list, readers=READERS, detector_dir=detector, treatments=(TreatmentSpec("unaided"),))
