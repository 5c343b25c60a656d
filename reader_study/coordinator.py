"""What study coordinators do: create a study, add readers, make the design, open, close.

Every function takes a :class:`sqlalchemy.orm.Session` in an open transaction and never commits
itself; the caller decides the transaction (``with db.transaction() as session: ...``), so a
failed step changes nothing. Each change is recorded in the audit log.

Lifecycle of a study::

    create_study(...)            status draft: cases, truth lesions, readers, treatments, settings
    add_readers(...)             (draft only)
    make_design(...)             (draft only; may be re-made until locked)
    lock_study(...)              truth, design and settings frozen; content hash stored
    open_study(...)              status open: readers can read
    close_study(...)             status closed: no more reading; export

Beside it, by role: what a study is made from (treatments, the readers file, the import of a
case list's cases) in :mod:`reader_study.study_inputs`; the lock and its verification in
:mod:`reader_study.lock`; reading progress in :mod:`reader_study.status`; exports, imports of
marks and backups in :mod:`reader_study.exchange`.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Sequence

import pandas as pd
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from . import audit
from .design import DesignPlan, PlannedRead, plan_design
from .errors import (
    DesignError,
    DuplicateReaderError,
    InputFileError,
    InputProblem,
    NotFoundError,
    ReaderStudyError,
    StudyLockedError,
    StudyStateError,
)
from .models import (
    ACCEPTANCE_RULES,
    PARADIGMS,
    RATING_SCALES,
    CaseRead,
    Reader,
    ReadingSession,
    Study,
    StudyCase,
    StudyReader,
    Treatment,
    utcnow,
)
from .study_inputs import CODE_RE, DEFAULT_TREATMENTS, FORMULA_STARTS, ReaderSpec, TreatmentSpec, add_cases, file_sha256

__all__ = [
    "get_study",
    "list_studies",
    "study_readers",
    "create_study",
    "add_readers",
    "make_design",
    "load_design",
    "open_study",
    "close_study",
    "waive_washout",
]


# ------------------------------------------------------------------------------------------------


# ------------------------------------------------------------------------------------------------
def get_study(session: Session, code: str) -> Study:
    """The study with ``code``, or :class:`NotFoundError` listing the studies there are."""
    study = session.scalar(select(Study).where(Study.code == code))
    if study is None:
        codes = list(session.scalars(select(Study.code).order_by(Study.code)))
        known = f"studies in this database: {', '.join(codes)}" if codes else "this database has no studies yet (tsct study create)"
        raise NotFoundError(f"No study {code!r}; {known}.")
    return study


def list_studies(session: Session) -> pd.DataFrame:
    """One row per study: code, title, paradigm, status, locked, numbers of readers and cases."""
    rows = []
    for study in session.scalars(select(Study).order_by(Study.id)):
        n_readers = session.scalar(select(func.count()).select_from(StudyReader).where(StudyReader.study_id == study.id))
        n_cases = session.scalar(select(func.count()).select_from(StudyCase).where(StudyCase.study_id == study.id, StudyCase.is_training.is_(False)))
        rows.append(
            {
                "code": study.code,
                "title": study.title,
                "paradigm": study.paradigm,
                "scale": study.rating_scale,
                "status": study.status,
                "locked": study.is_locked,
                "design": study.design or "",
                "readers": n_readers,
                "cases": n_cases,
            }
        )
    return pd.DataFrame(rows, columns=["code", "title", "paradigm", "scale", "status", "locked", "design", "readers", "cases"])


def study_readers(session: Session, study_code: str) -> pd.DataFrame:
    """One row per reader of a study: code (R01…), name, group, role, years of experience, sequence group (1-based; empty before the design)."""
    study = get_study(session, study_code)
    rows = session.execute(
        select(StudyReader.reader_code, Reader.name, Reader.group, Reader.role, Reader.experience_years, StudyReader.sequence_group)
        .join(Reader, Reader.id == StudyReader.reader_id)
        .where(StudyReader.study_id == study.id)
        .order_by(StudyReader.reader_code)
    ).all()
    frame = pd.DataFrame(rows, columns=["code", "name", "group", "role", "experience_years", "sequence_group"])
    frame["sequence_group"] = [None if g is None else int(g) + 1 for g in frame["sequence_group"]]
    return frame


def require_draft(study: Study, action: str) -> None:
    if study.is_locked:
        raise StudyLockedError(
            f"Cannot {action}: study {study.code!r} was locked at {study.locked_at:%Y-%m-%d %H:%M} UTC (content hash {study.content_hash[:12]}…). "  # type: ignore[index]
            "Truth and design of a locked study are frozen; create a new study to change them."
        )


def create_study(
    session: Session,
    *,
    code: str,
    case_list: Any,
    readers: Sequence[ReaderSpec] = (),
    title: str = "",
    paradigm: str = "FROC",
    rating_scale: str = "1-5",
    treatments: Sequence[TreatmentSpec] = DEFAULT_TREATMENTS,
    acceptance_rule: str = "radius",
    acceptance_radius_mm: float | None = 10.0,
    washout_days: float = 28.0,
    seed: int = 0,
    training_case_list: Any = None,
    carry_marks_forward: bool = True,
    hash_files: bool = True,
    actor: str = "coordinator",
    detector_dir: str | Path | None = None,
) -> Study:
    """Create a draft study from a case list (truth included) and, optionally, its readers.

    Parameters
    ----------
    code : short unique identifier (letters, digits, ``-_.``), e.g. ``TS-2026``.
    case_list : a :class:`cases.CaseList` or the path of a case-list CSV (docs/case-list.md). A
        path is read with the full content checks of ``tsct cases validate``
        (``read_case_list(path, check_images=True)``); a :class:`cases.CaseList` is taken as
        already checked.
    readers : readers to add now (more with :func:`add_readers`).
    paradigm : ``"FROC"`` (marks with ratings; default) or ``"ROC"`` (one rating per case).
    rating_scale : ``"1-5"`` (whole numbers) or ``"0-100"``.
    treatments : reading conditions, in order (the first is read first in sequential designs).
    acceptance_rule : ``"radius"`` (a mark within ``acceptance_radius_mm`` of the lesion centre)
        or ``"extent"`` (inside the lesion's label map or sphere); see :mod:`reader_study.scoring`.
    washout_days : minimum time between a reader's sessions (crossover designs).
    seed : seed of the design's random choices.
    training_case_list : cases read first for practice, never analysed.
    carry_marks_forward : sequential designs: the aided reading starts with copies of the unaided marks.
    hash_files : store SHA-256 of every exam and label map (part of the lock's content hash).
    actor : who is doing this (for the audit log).
    detector_dir : the detector's batch output folder (``<dir>/<case id>/outputs.json``). When
        given and a treatment shows detector outputs, every case must have a finished manifest
        whose grid agrees with the exam's (as now recorded in the database); the outputs
        (folder, manifests' hash, model; :func:`detector.outputs.outputs_record`) are recorded
        in the study's ``CREATE_STUDY`` audit entry.

    Raises
    ------
    ReaderStudyError
        For an invalid setting or code, a code already used, unreadable exams
        (:class:`InputFileError` listing each), repeated case codes between study and training
        cases, missing or mismatched detector outputs (with ``detector_dir``), or reader problems
        (see :func:`add_readers`).
    """
    if not CODE_RE.match(str(code)):
        raise ReaderStudyError(f"Study code {code!r} must be 1-64 letters, digits, '-', '_' or '.', starting with a letter or digit (e.g. TS-2026).")
    if session.scalar(select(Study.id).where(Study.code == code)) is not None:
        raise ReaderStudyError(f"A study {code!r} already exists; choose another code.")
    if paradigm not in PARADIGMS:
        raise ReaderStudyError(f"Paradigm {paradigm!r} is not supported; use one of {', '.join(PARADIGMS)}.")
    if rating_scale not in RATING_SCALES:
        raise ReaderStudyError(f"Rating scale {rating_scale!r} is not supported; use one of {', '.join(RATING_SCALES)}.")
    if acceptance_rule not in ACCEPTANCE_RULES:
        raise ReaderStudyError(
            f"Acceptance rule {acceptance_rule!r} is not supported; use 'radius' (within a distance of the lesion centre) or 'extent' (inside the lesion)."
        )
    if acceptance_rule == "radius" and (acceptance_radius_mm is None or not acceptance_radius_mm > 0):
        raise ReaderStudyError(f"The radius acceptance rule needs a positive acceptance radius in mm, got {acceptance_radius_mm!r}.")
    if not washout_days >= 0:
        raise ReaderStudyError(f"The washout (--washout-days) must be zero or more days, got {washout_days!r}.")
    treatments = tuple(treatments)
    if not treatments:
        raise ReaderStudyError("A study needs at least one treatment (e.g. unaided and aided=subtraction+zmap).")
    repeated = [c for c, n in Counter(t.code for t in treatments).items() if n > 1]
    if repeated:
        raise ReaderStudyError(f"Treatment codes must be unique; repeated: {', '.join(repeated)}.")
    from .aids import AID_NAMES, unknown_overlays

    for spec in treatments:
        unknown = unknown_overlays(spec.overlays)
        if unknown:
            raise ReaderStudyError(
                f"Treatment {spec.code!r} (--treatment): unknown overlay(s) {', '.join(unknown)}; readers would see nothing for them. "
                f"Known overlays: {', '.join(sorted(AID_NAMES))}, e.g. aided=subtraction+zmap."
            )

    from cases import CaseList, read_case_list

    # The full content checks of `tsct cases validate` (every exam read in full, same patient,
    # truth inside the current exam's field of view and in bone, label maps on its grid): wrong
    # data is refused here as there, long before a lock.
    cl = case_list if isinstance(case_list, CaseList) else read_case_list(case_list, check_images=True)
    training = None
    if training_case_list is not None:
        training = training_case_list if isinstance(training_case_list, CaseList) else read_case_list(training_case_list, check_images=True)
        clash = sorted(set(cl.case_ids) & set(training.case_ids))
        if clash:
            raise ReaderStudyError(
                f"Case IDs {', '.join(clash)} appear in both the case list and the training case list; a training case must not be analysed."
            )
    source = cl.source
    study = Study(
        code=code,
        title=title,
        paradigm=paradigm,
        rating_scale=rating_scale,
        acceptance_rule=acceptance_rule,
        acceptance_radius_mm=float(acceptance_radius_mm) if acceptance_radius_mm is not None else None,
        washout_days=float(washout_days),
        seed=int(seed),
        carry_marks_forward=bool(carry_marks_forward),
        status="draft",
        case_list_path=str(source) if source else "",
        case_list_sha256=file_sha256(source) if source and Path(source).is_file() else "",
        tsct_version=audit.tsct_version(),
    )
    session.add(study)
    session.flush()
    for position, spec in enumerate(treatments):
        session.add(Treatment(study_id=study.id, code=spec.code, label=spec.display_label, overlays=",".join(spec.overlays), position=position))
    problems: list[InputProblem] = []
    n_cases = add_cases(session, study, cl, training=False, first_jafroc_id=1, hash_files=hash_files, problems=problems)
    n_training = 0
    if training is not None:
        n_training = add_cases(session, study, training, training=True, first_jafroc_id=len(cl) + 1, hash_files=hash_files, problems=problems)
    detector_record = None
    if detector_dir is not None and not problems and any(spec.overlays for spec in treatments):
        detector_record = _check_detector_outputs(study, detector_dir, problems)
    if problems:
        raise InputFileError(source or "case list", problems, what="case list")
    audit.record(
        session,
        actor=actor,
        action="CREATE_STUDY",
        entity="study",
        entity_id=study.id,
        study_id=study.id,
        settings={
            "paradigm": paradigm,
            "rating_scale": rating_scale,
            "acceptance_rule": acceptance_rule,
            "acceptance_radius_mm": acceptance_radius_mm,
            "washout_days": washout_days,
            "seed": seed,
            "treatments": [t.code for t in treatments],
        },
        case_list=str(source) if source else None,
        n_cases=n_cases,
        n_training_cases=n_training,
        **({"detector_outputs": detector_record} if detector_record is not None else {}),
    )
    if readers:
        add_readers(session, code, readers, actor=actor)
    session.flush()
    return study


def _check_detector_outputs(study: Study, detector_dir: str | Path, problems: list[InputProblem]) -> dict[str, Any]:
    """Each case's detector outputs: a finished manifest on the grid the database records for its current exam."""
    from detector.outputs import CaseOutputsError, outputs_record, read_case_outputs

    root = Path(detector_dir)
    for case in study.cases:
        try:
            read_case_outputs(root / case.code).check_grid(case.grid(), f"the current exam of case {case.code} ({case.current_path})")
        except CaseOutputsError as exc:
            problems.append(InputProblem(None, "current", f"case {case.code}: {exc}"))
    return outputs_record(root, [c.code for c in study.cases])


def add_readers(session: Session, study_code: str, readers: Iterable[ReaderSpec], *, actor: str = "coordinator") -> list[StudyReader]:
    """Add readers to a draft study, creating each reader the first time their name is seen.

    A reader who already exists (same name, compared case-insensitively) is reused when group and
    role match. The study's reader codes are ``R01``, ``R02``… in order of addition.

    Raises
    ------
    DuplicateReaderError
        A name given twice, a reader already in the study, or an existing reader of that name
        with another group or role.
    StudyLockedError
        When the study is locked.
    """
    study = get_study(session, study_code)
    require_draft(study, "add readers")
    specs = list(readers)
    seen: dict[str, ReaderSpec] = {}
    for spec in specs:
        name = spec.name.strip()
        if not name:
            raise DuplicateReaderError("A reader needs a name (--name, or the 'name' column of the readers file).")
        if len(name) > 200 or any(not ch.isprintable() for ch in name):
            raise ReaderStudyError(f"Reader name {name[:40]!r} must be 1-200 printable characters.")
        for label, value in (("name", name), ("group", (spec.group or "").strip()), ("role", (spec.role or "").strip())):
            if value.startswith(FORMULA_STARTS):
                raise ReaderStudyError(
                    f"Reader {label} {value[:40]!r} starts with {value[0]!r}: spreadsheets would run it as a formula when the study's "
                    f"exports are opened. Start the {label} with a letter or digit."
                )
        years = spec.experience_years
        if years is not None and not (isinstance(years, (int, float)) and years == years and 0 <= years < 100):
            raise ReaderStudyError(f"Reader {name!r}: years of experience (--years) must be a number from 0 to 99, got {years!r}.")
        if name.casefold() in seen:
            raise DuplicateReaderError(f"Reader name {name!r} is given twice; reader names must be unique.")
        seen[name.casefold()] = spec
    existing_codes = list(session.scalars(select(StudyReader.reader_code).where(StudyReader.study_id == study.id)))
    next_number = 1 + max([int(c[1:]) for c in existing_codes if re.fullmatch(r"R\d+", c)] or [0])
    added = []
    for spec in specs:
        name = spec.name.strip()
        reader = session.scalar(select(Reader).where(func.lower(Reader.name) == name.lower()))
        if reader is None:
            reader = Reader(name=name, group=spec.group, role=spec.role or "radiologist", experience_years=spec.experience_years)
            session.add(reader)
            session.flush()
            audit.record(
                session, actor=actor, action="CREATE_READER", entity="reader", entity_id=reader.id, name=name, group=spec.group, role=reader.role
            )
        else:
            if (spec.group and spec.group != reader.group) or (spec.role and spec.role != reader.role and spec.role != "radiologist"):
                raise DuplicateReaderError(
                    f"A reader named {reader.name!r} already exists with group {reader.group!r} and role {reader.role!r}; "
                    "use the same group and role to add that reader, or a different name for a different person."
                )
        if session.scalar(select(StudyReader.id).where(StudyReader.study_id == study.id, StudyReader.reader_id == reader.id)) is not None:
            raise DuplicateReaderError(f"Reader {reader.name!r} is already a reader of study {study.code!r}.")
        code = f"R{next_number:02d}"
        next_number += 1
        sr = StudyReader(study_id=study.id, reader_id=reader.id, reader_code=code)
        session.add(sr)
        session.flush()
        audit.record(
            session, actor=actor, action="ADD_READER", entity="study_reader", entity_id=sr.id, study_id=study.id, reader=reader.name, reader_code=code
        )
        added.append(sr)
    return added


# ------------------------------------------------------------------------------------------------
def make_design(
    session: Session,
    study_code: str,
    *,
    kind: str = "crossover",
    case_blocks: int | None = None,
    seed: int | None = None,
    actor: str = "coordinator",
) -> DesignPlan:
    """Plan the reading design (:func:`reader_study.design.plan_design`) and store it, replacing any earlier one.

    Only while the study is a draft. Returns the plan; check it with ``plan.check_balance()``.
    """
    study = get_study(session, study_code)
    require_draft(study, "change the design")
    seed = study.seed if seed is None else int(seed)
    treatments = list(session.scalars(select(Treatment).where(Treatment.study_id == study.id).order_by(Treatment.position)))
    study_readers = list(session.scalars(select(StudyReader).where(StudyReader.study_id == study.id).order_by(StudyReader.id)))
    cases = list(session.scalars(select(StudyCase).where(StudyCase.study_id == study.id).order_by(StudyCase.jafroc_id)))
    reader_rows = {sr.id: session.get(Reader, sr.reader_id) for sr in study_readers}
    plan = plan_design(
        [sr.reader_code for sr in study_readers],
        [c.code for c in cases if not c.is_training],
        [t.code for t in treatments],
        kind=kind,
        case_blocks=case_blocks,
        seed=seed,
        training_cases=[c.code for c in cases if c.is_training],
        abnormal={c.code: c.abnormal for c in cases},
        reader_strata={sr.reader_code: reader_rows[sr.id].group for sr in study_readers},  # type: ignore[union-attr]
    )
    # Replace the stored design.
    session.execute(delete(CaseRead).where(CaseRead.study_id == study.id))
    session.execute(delete(ReadingSession).where(ReadingSession.study_id == study.id))
    by_code_reader = {sr.reader_code: sr for sr in study_readers}
    by_code_case = {c.code: c for c in cases}
    by_code_treatment = {t.code: t for t in treatments}
    for sr in study_readers:
        sr.sequence_group = plan.reader_groups[sr.reader_code]
    for c in cases:
        c.block = None if c.is_training else plan.case_block_of[c.code]
    study.design = plan.kind
    study.case_blocks = plan.case_blocks
    study.seed = plan.seed
    session.flush()
    session_ids: dict[tuple[str, int], int] = {}
    for sr in study_readers:
        for s_index in range(1, plan.n_sessions + 1):
            rs = ReadingSession(study_id=study.id, reader_id=sr.reader_id, session_index=s_index, status="scheduled")
            session.add(rs)
            session.flush()
            session_ids[(sr.reader_code, s_index)] = rs.id
    session.execute(
        CaseRead.__table__.insert(),
        [
            {
                "study_id": study.id,
                "rating_scale": study.rating_scale,
                "session_id": session_ids[(r.reader, r.session_index)],
                "reader_id": by_code_reader[r.reader].reader_id,
                "case_id": by_code_case[r.case].id,
                "treatment_id": by_code_treatment[r.treatment].id,
                "order_index": r.order_index,
                "status": "pending",
                "no_lesion": False,
            }
            for r in plan.reads
        ],
    )
    audit.record(
        session,
        actor=actor,
        action="MAKE_DESIGN",
        entity="study",
        entity_id=study.id,
        study_id=study.id,
        kind=plan.kind,
        case_blocks=plan.case_blocks,
        seed=plan.seed,
        n_sessions=plan.n_sessions,
        n_reads=len(plan.reads),
    )
    session.flush()
    return plan


def load_design(session: Session, study_code: str) -> DesignPlan:
    """The stored design as a :class:`DesignPlan` (to print or check it again)."""
    study = get_study(session, study_code)
    if study.design is None:
        raise DesignError(f"Study {study.code!r} has no design yet; make one with `tsct study design {study.code}`.")
    treatments = list(session.scalars(select(Treatment.code).where(Treatment.study_id == study.id).order_by(Treatment.position)))
    study_readers = list(session.scalars(select(StudyReader).where(StudyReader.study_id == study.id).order_by(StudyReader.id)))
    cases = list(session.scalars(select(StudyCase).where(StudyCase.study_id == study.id).order_by(StudyCase.jafroc_id)))
    code_of_reader = {sr.reader_id: sr.reader_code for sr in study_readers}
    code_of_case = {c.id: c.code for c in cases}
    training = {c.id for c in cases if c.is_training}
    code_of_treatment = dict(session.execute(select(Treatment.id, Treatment.code).where(Treatment.study_id == study.id)).all())
    rows = session.execute(
        select(CaseRead.reader_id, ReadingSession.session_index, CaseRead.order_index, CaseRead.case_id, CaseRead.treatment_id)
        .join(ReadingSession, ReadingSession.id == CaseRead.session_id)
        .where(CaseRead.study_id == study.id)
    ).all()
    reads = sorted(
        (PlannedRead(code_of_reader[r[0]], r[1], r[2], code_of_case[r[3]], code_of_treatment[r[4]], r[3] in training) for r in rows),
        key=lambda r: (r.reader, r.session_index, r.order_index),
    )
    n_sessions = max((r.session_index for r in reads), default=0)
    return DesignPlan(
        kind=study.design,
        treatments=tuple(treatments),
        readers=tuple(sr.reader_code for sr in study_readers),
        cases=tuple(c.code for c in cases if not c.is_training),
        training_cases=tuple(c.code for c in cases if c.is_training),
        n_sessions=n_sessions,
        case_blocks=study.case_blocks or 1,
        reader_groups={sr.reader_code: sr.sequence_group if sr.sequence_group is not None else 0 for sr in study_readers},
        case_block_of={c.code: c.block if c.block is not None else 0 for c in cases if not c.is_training},
        reads=tuple(reads),
        seed=study.seed,
        abnormal={c.code: c.abnormal for c in cases},
    )


# ------------------------------------------------------------------------------------------------


#: status -> (the study's time-stamp column, the audit action)
_STATUS_CHANGES = {"open": ("opened_at", "OPEN_STUDY"), "closed": ("closed_at", "CLOSE_STUDY")}


def _change_status(session: Session, study: Study, status: str, *, actor: str, now: dt.datetime | None) -> Study:
    """Move a study to ``open`` or ``closed`` (checked by the caller): the status, its time stamp and the audit entry."""
    stamp, action = _STATUS_CHANGES[status]
    study.status = status
    setattr(study, stamp, now or utcnow())
    session.flush()
    audit.record(session, actor=actor, action=action, entity="study", entity_id=study.id, study_id=study.id)
    return study


def open_study(session: Session, study_code: str, *, actor: str = "coordinator", now: dt.datetime | None = None) -> Study:
    """Open a locked study for reading."""
    study = get_study(session, study_code)
    if study.status == "open":
        return study
    if study.status == "closed":
        raise StudyStateError(f"Study {study.code!r} is closed; a closed study is not reopened (its data may already have been analysed).")
    if not study.is_locked:
        raise StudyStateError(f"Study {study.code!r} is not locked; lock truth and design first (`tsct study lock {study.code}`).")
    return _change_status(session, study, "open", actor=actor, now=now)


def close_study(session: Session, study_code: str, *, actor: str = "coordinator", now: dt.datetime | None = None) -> Study:
    """Close an open study: no more reading or marks."""
    study = get_study(session, study_code)
    if study.status == "closed":
        return study
    if study.status != "open":
        raise StudyStateError(f"Study {study.code!r} is {study.status}; only an open study can be closed.")
    return _change_status(session, study, "closed", actor=actor, now=now)


def waive_washout(
    session: Session,
    study_code: str,
    reader_name: str,
    session_index: int,
    *,
    reason: str,
    actor: str = "coordinator",
    now: dt.datetime | None = None,
) -> None:
    """Let a reader open session ``session_index`` before the washout has passed (audited; give the reason)."""
    if not reason.strip():
        raise ReaderStudyError("Give the reason for waiving the washout; it is kept in the audit log.")
    study = get_study(session, study_code)
    reader = session.scalar(select(Reader).where(func.lower(Reader.name) == reader_name.strip().lower()))
    if reader is None:
        raise NotFoundError(f"No reader named {reader_name!r}.")
    rs = session.scalar(
        select(ReadingSession).where(
            ReadingSession.study_id == study.id, ReadingSession.reader_id == reader.id, ReadingSession.session_index == session_index
        )
    )
    if rs is None:
        raise NotFoundError(f"Reader {reader.name!r} has no session {session_index} in study {study.code!r}.")
    if rs.status != "scheduled":
        raise StudyStateError(f"Session {session_index} of {reader.name!r} is already {rs.status}.")
    rs.washout_waived_at = now or utcnow()
    rs.washout_waiver = reason.strip()
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="WAIVE_WASHOUT",
        entity="reading_session",
        entity_id=rs.id,
        study_id=study.id,
        reader=reader.name,
        session_index=session_index,
        reason=reason.strip(),
    )


# ------------------------------------------------------------------------------------------------
