"""The lock's file manifest (schema 0002) on SQLite and PostgreSQL: what it covers, verify, and frozen rows."""

from __future__ import annotations

import shutil

import pytest
from sqlalchemy import insert, select, text

from reader_study import ReaderStudyError, create_study, lock_study, make_design, verify_study
from reader_study.harness import write_synthetic_case_list
from reader_study.models import Study, StudyFile

from .conftest import LESIONS, READERS, write_detector_outputs


@pytest.fixture()
def own_files(tmp_path):
    case_list = write_synthetic_case_list(tmp_path / "cases", LESIONS)
    det = write_detector_outputs([case_list], tmp_path / "det")
    return case_list, det


def _draft(db, case_list, code="F"):
    with db.transaction() as s:
        create_study(s, code=code, case_list=case_list, readers=READERS[:2])
        make_design(s, code)


def test_lock_hashes_every_exam_and_detector_file_with_the_model(db, own_files):
    case_list, det = own_files
    _draft(db, case_list)
    with db.transaction() as s:
        lock_study(s, "F", detector_dir=det)
    with db.snapshot() as s:
        rows = list(s.scalars(select(StudyFile)))
        result = verify_study(s, "F")
    roles = {r.role for r in rows}
    assert roles == {"prior", "current", "detector"}
    assert sum(r.role == "prior" for r in rows) == sum(r.role == "current" for r in rows) == 4
    detector = [r for r in rows if r.role == "detector"]
    assert {r.name for r in detector} == {"outputs.json", "qc.json", "subtraction.nii.gz", "zmap.nii.gz"} and len(detector) == 16
    assert {(r.model_name, r.model_version) for r in detector} == {("tsct z-score network", "9.9.9-test")}
    assert result.ok and result.n_files == 24


def test_lock_ignores_files_the_manifest_does_not_list_and_verify_reports_a_rewritten_manifest(db, own_files):
    from detector.outputs import read_case_outputs, write_case_outputs

    case_list, det = own_files
    (det / "C001" / "notes.txt").write_text("not an output")
    _draft(db, case_list)
    with db.transaction() as s:
        lock_study(s, "F", detector_dir=det)
    with db.snapshot() as s:
        assert "notes.txt" not in {r.name for r in s.scalars(select(StudyFile))}
    # a re-run that adds an output rewrites the manifest: both are named
    old = read_case_outputs(det / "C001")
    roi = det / "C001" / "bone_roi.nii.gz"
    shutil.copy(det / "C001" / "subtraction.nii.gz", roi)
    write_case_outputs(
        det / "C001", {**{r: det / "C001" / f.path for r, f in old.files.items()}, "bone_roi": roi}, grid=old.grid, case_id="C001", model=old.model
    )
    with db.snapshot() as s:
        result = verify_study(s, "F")
    found = {(c.case_code, c.name, c.kind) for c in result.changes}
    assert found == {("C001", "outputs.json", "changed"), ("C001", "bone_roi.nii.gz", "added")}


def test_verify_names_the_changed_file_by_case(db, own_files):
    case_list, det = own_files
    _draft(db, case_list)
    with db.transaction() as s:
        digest = lock_study(s, "F", detector_dir=det)
    exam = case_list.parent / "C003_current.nii.gz"
    data = bytearray(exam.read_bytes())
    data[-5] ^= 1
    exam.write_bytes(bytes(data))
    (det / "C002" / "zmap.nii.gz").unlink()
    with db.snapshot() as s:
        result = verify_study(s, "F")
    assert result.stored_hash == digest and result.hash_matches and not result.ok  # the database is unchanged, the files are not
    found = {(c.case_code, c.name, c.kind) for c in result.changes}
    assert found == {("C003", "C003_current.nii.gz", "changed"), ("C002", "zmap.nii.gz", "missing")}


def test_lock_refuses_unfinished_or_truncated_detector_outputs_listing_each(db, own_files):
    case_list, det = own_files
    _draft(db, case_list)
    (det / "C001" / "outputs.json").unlink()
    z = det / "C004" / "zmap.nii.gz"
    z.write_bytes(z.read_bytes()[:40])
    shutil.rmtree(det / "C002")
    with pytest.raises(ReaderStudyError) as info:
        with db.transaction() as s:
            lock_study(s, "F", detector_dir=det)
    message = str(info.value)
    assert (
        "3 problem(s)" in message
        and "case C001: the detector did not finish this case" in message
        and "rerun tsct detect" in message.lower()
        and "case C004: zmap.nii.gz" in message
        and "case C002" in message
    )
    with db.snapshot() as s:
        assert s.scalar(select(Study.locked_at).where(Study.code == "F")) is None
        assert s.scalars(select(StudyFile)).first() is None


def test_lock_without_detector_dir_is_refused_when_asked_to_require_it(db, own_files):
    case_list, _ = own_files
    _draft(db, case_list)
    with pytest.raises(ReaderStudyError, match="--detector-dir"):
        with db.transaction() as s:
            lock_study(s, "F", require_detector=True)


def test_locked_file_rows_are_frozen_for_plain_sql(db, own_files):
    case_list, det = own_files
    _draft(db, case_list)
    with db.transaction() as s:
        lock_study(s, "F", detector_dir=det)
        study_id = s.scalar(select(Study.id).where(Study.code == "F"))
    with pytest.raises(Exception, match="locked"):
        with db.engine.begin() as conn:
            conn.execute(text("UPDATE study_file SET sha256 = 'x' WHERE study_id = :s"), {"s": study_id})
    with pytest.raises(Exception, match="locked"):
        with db.engine.begin() as conn:
            conn.execute(
                insert(StudyFile.__table__).values(
                    study_id=study_id, case_id=None, role="prior", name="x", path="x", sha256="0" * 64, size_bytes=1, model_name="", model_version=""
                )
            )
