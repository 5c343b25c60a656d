"""The lock: truth, design, settings and the files readers read, frozen under one content hash.

:func:`lock_study` refuses a study whose design is incomplete or unbalanced, hashes every exam,
label map and (with a detector folder) every detector output readers will see
(:func:`lock_manifest`), and stores the SHA-256 of the canonical study content
(:func:`study_content`, :func:`content_hash`). :func:`verify_study` recomputes both and names
each file that changed since, by case and file.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from . import audit
from .coordinator import get_study, load_design, require_draft
from .errors import DesignError, ReaderStudyError
from .models import CaseRead, Lesion, ReadingSession, Study, StudyCase, StudyFile, StudyReader, Treatment, utcnow
from .study_inputs import file_sha256

__all__ = ["study_content", "content_hash", "lock_study", "LockVerification", "lock_manifest", "verify_study", "verify_lock"]


def study_content(session: Session, study: Study) -> dict[str, Any]:
    """The canonical description of what ``lock`` freezes: settings, treatments, readers, cases with truth, and the design."""
    treatments = list(session.scalars(select(Treatment).where(Treatment.study_id == study.id).order_by(Treatment.position)))
    study_readers = list(session.scalars(select(StudyReader).where(StudyReader.study_id == study.id).order_by(StudyReader.reader_code)))
    cases = list(session.scalars(select(StudyCase).where(StudyCase.study_id == study.id).order_by(StudyCase.jafroc_id)))
    lesions = list(session.scalars(select(Lesion).where(Lesion.study_id == study.id).order_by(Lesion.case_id, Lesion.number)))
    by_case: dict[int, list[Lesion]] = {}
    for les in lesions:
        by_case.setdefault(les.case_id, []).append(les)
    code_of_reader = {sr.reader_id: sr.reader_code for sr in study_readers}
    code_of_case = {c.id: c.code for c in cases}
    code_of_treatment = {t.id: t.code for t in treatments}
    reads = session.execute(
        select(CaseRead.reader_id, ReadingSession.session_index, CaseRead.order_index, CaseRead.case_id, CaseRead.treatment_id)
        .join(ReadingSession, ReadingSession.id == CaseRead.session_id)
        .where(CaseRead.study_id == study.id)
    ).all()
    content: dict[str, Any] = {
        "format": "tsct-reader-study-content/1",
        "study": {
            "code": study.code,
            "paradigm": study.paradigm,
            "rating_scale": study.rating_scale,
            "acceptance_rule": study.acceptance_rule,
            "acceptance_radius_mm": study.acceptance_radius_mm,
            "design": study.design,
            "case_blocks": study.case_blocks,
            "carry_marks_forward": study.carry_marks_forward,
            "washout_days": study.washout_days,
            "seed": study.seed,
            "case_list_sha256": study.case_list_sha256,
        },
        "treatments": [{"code": t.code, "label": t.label, "overlays": t.overlays, "position": t.position} for t in treatments],
        "readers": [
            {"code": sr.reader_code, "name": sr.reader.name, "group": sr.reader.group, "role": sr.reader.role, "sequence_group": sr.sequence_group}
            for sr in study_readers
        ],
        "cases": [
            {
                "code": c.code,
                "jafroc_id": c.jafroc_id,
                "training": c.is_training,
                "abnormal": c.abnormal,
                "block": c.block,
                "prior_sha256": c.prior_sha256,
                "current_sha256": c.current_sha256,
                "grid": {"size": list(c.size), "spacing_mm": list(c.spacing_mm), "origin_mm": list(c.origin_mm), "direction": list(c.direction)},
                "lesions": [
                    {
                        "code": les.code,
                        "number": les.number,
                        "center_mm": list(les.center_mm),
                        "radius_mm": les.radius_mm,
                        "label_map_sha256": les.label_map_sha256,
                        "label_value": les.label_value,
                        "weight": les.weight,
                        "lesion_type": les.lesion_type,
                        "location": les.location,
                    }
                    for les in by_case.get(c.id, [])
                ],
            }
            for c in cases
        ],
        "reads": sorted([code_of_reader[r[0]], r[1], r[2], code_of_case[r[3]], code_of_treatment[r[4]]] for r in reads),
    }
    files = list(session.scalars(select(StudyFile).where(StudyFile.study_id == study.id).order_by(StudyFile.id)))
    if files:  # studies locked before the file manifest existed keep their content (and hash)
        content["files"] = sorted(
            [code_of_case.get(f.case_id, ""), f.role, f.name, f.sha256, int(f.size_bytes), f.model_name, f.model_version] for f in files
        )
    return content


def content_hash(content: dict[str, Any]) -> str:
    """SHA-256 of the canonical JSON (sorted keys, no spaces) of :func:`study_content`."""
    return hashlib.sha256(json.dumps(content, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()).hexdigest()


def lock_study(
    session: Session,
    study_code: str,
    *,
    actor: str = "coordinator",
    now: dt.datetime | None = None,
    detector_dir: str | Path | None = None,
    require_detector: bool = False,
    hash_files: bool = True,
) -> str:
    """Freeze truth, design, settings and the files readers read, and store their content hash; returns the hash.

    Refused unless the study is a draft with readers, study cases and a complete design (fully
    crossed for the current readers and cases).

    With ``hash_files`` (default) every exam file (prior and current; each file of a DICOM
    folder), every label map and, with ``detector_dir``, every detector output of each case
    (:func:`reader_study.integrity.detector_output_files`: the case's ``outputs.json`` manifest
    and every file it lists, with the model's name and version from the manifest) is hashed into
    the lock (:func:`lock_manifest`). An exam that changed since ``create``, a missing or
    truncated file, or a case whose detector outputs are missing, unfinished (no manifest) or
    altered since the detector wrote them, is refused with every problem listed. ``require_detector``: refuse a study with aided
    treatments when no ``detector_dir`` is given.
    """
    study = get_study(session, study_code)
    require_draft(study, "lock the study again")
    if study.design is None:
        raise DesignError(f"Study {study.code!r} has no design; make one (`tsct study design {study.code}`) before locking.")
    plan = load_design(session, study_code)
    without_reads = sorted(set(plan.readers) - {r.reader for r in plan.reads})
    if without_reads or not plan.reads:
        raise DesignError(
            f"The design of study {study.code!r} is out of date (reader(s) {', '.join(without_reads)} were added after it was made); "
            f"run `tsct study design {study.code}` again."
        )
    report = plan.check_balance(washout_days=study.washout_days)
    if not report.ok:
        raise DesignError(f"The design of study {study.code!r} has errors and cannot be locked:\n{report.summary()}")
    if hash_files:
        entries = lock_manifest(session, study, detector_dir=detector_dir, require_detector=require_detector)
        for e in entries:
            session.add(
                StudyFile(
                    study_id=study.id,
                    case_id=e[0],
                    role=e[1].role,
                    name=e[1].name,
                    path=str(e[1].path),
                    sha256=e[1].sha256,
                    size_bytes=e[1].size_bytes,
                    model_name=e[1].model_name,
                    model_version=e[1].model_version,
                )
            )
        session.flush()
    digest = content_hash(study_content(session, study))
    study.locked_at = now or utcnow()
    study.content_hash = digest
    session.flush()
    audit.record(session, actor=actor, action="LOCK_STUDY", entity="study", entity_id=study.id, study_id=study.id, content_hash=digest)
    return digest


@dataclass(frozen=True)
class LockVerification:
    """What :func:`verify_study` found: the stored and recomputed content hash, and every locked file that changed."""

    code: str
    stored_hash: str | None
    now_hash: str
    n_files: int
    changes: tuple[Any, ...] = ()

    @property
    def hash_matches(self) -> bool:
        return self.stored_hash == self.now_hash

    @property
    def ok(self) -> bool:
        return self.stored_hash is not None and self.hash_matches and not self.changes


def lock_manifest(
    session: Session, study: Study, *, detector_dir: str | Path | None = None, require_detector: bool = False
) -> list[tuple[int | None, Any]]:
    """Hash every file the lock protects: ``[(case row id, FileEntry), …]``.

    Raises
    ------
    ReaderStudyError
        Listing every problem: an exam or label map missing, truncated or changed since the
        study was created; a case without complete detector outputs for an aided treatment.
    """
    from detector.outputs import CaseOutputsError
    from tsct_files import problems_file

    from .integrity import (
        FileEntry,
        IncompleteFileError,
        check_complete,
        check_detector_case,
        detector_model,
        detector_output_files,
        exam_files,
        overlay_roles_needed,
        sha256_file,
    )

    cases = list(session.scalars(select(StudyCase).where(StudyCase.study_id == study.id).order_by(StudyCase.jafroc_id)))
    lesions = list(session.scalars(select(Lesion).where(Lesion.study_id == study.id).order_by(Lesion.case_id, Lesion.number)))
    treatments = list(session.scalars(select(Treatment).where(Treatment.study_id == study.id).order_by(Treatment.position)))
    needed: list[str] = []
    for t in treatments:
        for role in overlay_roles_needed(o for o in t.overlays.split(",") if o):
            if role not in needed:
                needed.append(role)
    problems: list[str] = []
    entries: list[tuple[int | None, Any]] = []

    def add(case: StudyCase | None, role: str, name: str, path: Path, model: tuple[str, str] = ("", "")) -> str:
        digest = sha256_file(path)
        entries.append(
            (case.id if case else None, FileEntry(case.code if case else None, role, name, path.resolve(), digest, path.stat().st_size, *model))
        )
        return digest

    for case in cases:
        for role, path_text, stored in (("prior", case.prior_path, case.prior_sha256), ("current", case.current_path, case.current_sha256)):
            path = Path(path_text)
            try:
                files = exam_files(path)
                if path.is_file() and path.name.lower().endswith((".nii", ".nii.gz")):
                    check_complete(path)
            except IncompleteFileError as exc:
                problems.append(f"case {case.code}: {role} exam: {exc}")
                continue
            for name, f in files:
                add(case, role, name, f)
            if stored and file_sha256(path) != stored:
                problems.append(
                    f"case {case.code}: the {role} exam {path} changed since the study was created (sha256 then {stored[:12]}…); "
                    "create the study again from the files readers should read"
                )
    by_case = {c.id: c for c in cases}
    for les in lesions:
        if not les.label_map_path:
            continue
        path = Path(les.label_map_path)
        case = by_case[les.case_id]
        try:
            check_complete(path)
        except IncompleteFileError as exc:
            problems.append(f"case {case.code}: label map of lesion {les.code}: {exc}")
            continue
        if any(e[1].path == path.resolve() for e in entries if e[0] == case.id and e[1].role == "label_map"):
            continue
        digest = add(case, "label_map", path.name, path)
        if les.label_map_sha256 and digest != les.label_map_sha256:
            problems.append(f"case {case.code}: the label map {path} of lesion {les.code} changed since the study was created")
    if detector_dir is None:
        if needed and require_detector:
            problems.append(
                f"treatment(s) {', '.join(t.code for t in treatments if t.overlays)} show detector outputs ({', '.join(needed)}); "
                "give --detector-dir DIR (the detector's batch output read by the reading app) so that the lock covers them"
            )
    else:
        root = Path(detector_dir)
        if not root.is_dir():
            problems.append(f"--detector-dir {root} is not a folder; give the detector's batch output folder (DIR/<case id>/)")
        else:
            for case in cases:
                case_dir = root / case.code
                found = check_detector_case(case.code, case_dir, needed)
                if found:
                    problems.extend(found)
                    continue
                model = detector_model(case_dir)
                try:
                    listed = detector_output_files(case_dir)
                except CaseOutputsError as exc:
                    problems.append(f"case {case.code}: {exc}")
                    continue
                for name, f in listed:
                    if not f.is_file():
                        problems.append(
                            f"case {case.code}: {name} is listed in {case_dir / 'outputs.json'} but missing; rerun `tsct detect batch` for this case"
                        )
                        continue
                    add(case, "detector", name, f, model)
    if problems:
        summary = "; ".join(problems[:8]) + (f"; … and {len(problems) - 8} more" if len(problems) > 8 else "")
        listing = ""
        if len(problems) > 8:
            listing = f" Full list: {problems_file(problems, stem=f'tsct-lock-{study.code}')}"
        raise ReaderStudyError(f"Study {study.code!r} cannot be locked: {len(problems)} problem(s) with the files readers read: {summary}.{listing}")
    return entries


def verify_study(session: Session, study_code: str) -> LockVerification:
    """Recompute the content hash and re-hash every locked file; names each file that changed, by case and file."""
    from detector.outputs import CaseOutputsError

    from .integrity import FileChange, detector_output_files, sha256_file

    study = get_study(session, study_code)
    digest = content_hash(study_content(session, study))
    rows = list(session.scalars(select(StudyFile).where(StudyFile.study_id == study.id).order_by(StudyFile.id)))
    code_of_case = dict(session.execute(select(StudyCase.id, StudyCase.code).where(StudyCase.study_id == study.id)).all())
    changes: list[FileChange] = []
    detector_dirs: dict[Path, tuple[str | None, set[str]]] = {}
    for row in rows:
        case_code = code_of_case.get(row.case_id)
        path = Path(row.path)
        if row.role == "detector":
            folder = Path(str(path)[: -len(row.name)].rstrip("/")) if str(path).endswith(row.name) else path.parent
            detector_dirs.setdefault(folder, (case_code, set()))[1].add(row.name)
        if not path.is_file():
            changes.append(FileChange(case_code, row.role, row.name, str(path), "missing", row.sha256))
            continue
        now = sha256_file(path)
        if now != row.sha256:
            changes.append(FileChange(case_code, row.role, row.name, str(path), "changed", row.sha256, now))
    for folder, (case_code, names) in detector_dirs.items():
        if folder.is_dir():
            try:
                listed = detector_output_files(folder)
            except CaseOutputsError:
                continue  # the manifest itself is reported missing or changed above
            for name, f in listed:
                if name not in names:
                    changes.append(FileChange(case_code, "detector", name, str(f), "added"))
    return LockVerification(study.code, study.content_hash, digest, len(rows), tuple(changes))


def verify_lock(session: Session, study_code: str) -> tuple[bool, str | None, str]:
    """Recompute the content hash and re-hash the locked files: ``(unchanged, stored_hash, recomputed_hash)``.

    ``unchanged`` is False when the stored hash differs or any locked file changed
    (:func:`verify_study` says which).
    """
    result = verify_study(session, study_code)
    return (result.hash_matches and not result.changes, result.stored_hash, result.now_hash)
