"""What study coordinators do: create a study, add readers, make the design, lock, open, close, follow progress.

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

Exports, imports of marks and backups are in :mod:`reader_study.exchange`.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from statistics import median
from typing import Any, Iterable, Sequence

import numpy as np
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
    Lesion,
    Reader,
    ReadingSession,
    Study,
    StudyCase,
    StudyFile,
    StudyReader,
    Treatment,
    utcnow,
)
from .reading import session_not_before

__all__ = [
    "TreatmentSpec",
    "ReaderSpec",
    "DEFAULT_TREATMENTS",
    "parse_treatment",
    "read_readers_file",
    "get_study",
    "list_studies",
    "study_readers",
    "create_study",
    "add_readers",
    "make_design",
    "load_design",
    "study_content",
    "content_hash",
    "lock_study",
    "verify_lock",
    "verify_study",
    "LockVerification",
    "lock_manifest",
    "open_study",
    "close_study",
    "waive_washout",
    "StudyStatus",
    "study_status",
    "file_sha256",
]

_CODE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TreatmentSpec:
    """A reading condition: ``code`` (used in exports), ``overlays`` shown on the CT, and a readable ``label``."""

    code: str
    overlays: tuple[str, ...] = ()
    label: str = ""

    @property
    def display_label(self) -> str:
        if self.label:
            return self.label
        return f"{self.code}: {' + '.join(self.overlays)}" if self.overlays else self.code


DEFAULT_TREATMENTS: tuple[TreatmentSpec, ...] = (
    TreatmentSpec("unaided", (), "unaided"),
    TreatmentSpec("aided", ("subtraction", "zmap"), "aided: subtraction + z-map"),
)


def parse_treatment(text: str) -> TreatmentSpec:
    """Parse ``CODE`` or ``CODE=OVERLAY+OVERLAY`` (e.g. ``unaided``, ``aided=subtraction+zmap``)."""
    code, _, overlays = str(text).partition("=")
    code = code.strip()
    if not _CODE_RE.match(code):
        raise ReaderStudyError(f"Treatment {text!r}: the code must be letters, digits, '-', '_' or '.', e.g. 'unaided' or 'aided=subtraction+zmap'.")
    names = tuple(o.strip() for o in overlays.split("+") if o.strip())
    return TreatmentSpec(code, names)


#: reader names and groups may not start with these: spreadsheets run such cells as formulas
_FORMULA_STARTS = ("=", "+", "-", "@")


@dataclass(frozen=True)
class ReaderSpec:
    """A reader to add: name (unique), group (e.g. board-certified, resident), role, years of experience."""

    name: str
    group: str = ""
    role: str = "radiologist"
    experience_years: float | None = None


def read_readers_file(path: str | Path) -> list[ReaderSpec]:
    """Read a readers CSV: columns ``name`` (required), ``group``, ``role``, ``experience_years``.

    Raises
    ------
    InputFileError
        Listing every problem with its row number (missing names, repeated names, bad numbers).
    """
    import tsct_files

    path = Path(path)
    if not path.exists():
        raise InputFileError(path, [InputProblem(None, None, "file not found; give a CSV with a 'name' column (and optionally group, role, experience_years)")], what="readers file")
    try:
        text = tsct_files.read_input_text(path, what="readers file")
    except tsct_files.InputFileError as exc:
        raise InputFileError(path, [InputProblem(None, None, str(exc).removeprefix(f"{path}: "))], what="readers file") from None
    reader = csv.DictReader(text.splitlines())
    try:
        header = [h.strip() for h in (reader.fieldnames or [])]
        rows = list(reader)
    except csv.Error as exc:
        raise InputFileError(path, [InputProblem(reader.line_num, None, tsct_files.csv_field_error(path, exc).removeprefix(f"{path}: "))], what="readers file") from None
    problems: list[InputProblem] = []
    known = {"name", "group", "role", "experience_years"}
    twice = sorted({h for h in header if h and header.count(h) > 1})
    if twice:
        raise InputFileError(path, [InputProblem(1, None, f"column(s) {', '.join(twice)} appear more than once in the header; keep one of each")], what="readers file")
    if "name" not in header:
        raise InputFileError(path, [InputProblem(1, None, f"no 'name' column; the header must include name (and may include {', '.join(sorted(known - {'name'}))})")], what="readers file")
    unknown = [h for h in header if h and h not in known]
    if unknown:
        problems.append(InputProblem(1, None, f"unknown column(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"))
    specs: list[ReaderSpec] = []
    first_row: dict[str, int] = {}
    for row_number, raw in enumerate(rows, start=2):
        row = {(k or "").strip(): (v if isinstance(v, str) else ",".join(v or [])).strip() for k, v in raw.items()}
        if not any(row.values()):
            continue
        name = row.get("name", "")
        if not name:
            problems.append(InputProblem(row_number, "name", "empty; every reader needs a name"))
            continue
        key = name.casefold()
        if key in first_row:
            problems.append(InputProblem(row_number, "name", f"'{name}' repeats row {first_row[key]}; reader names must be unique"))
            continue
        first_row[key] = row_number
        formula = [c for c in ("name", "group", "role") if row.get(c, "").startswith(_FORMULA_STARTS)]
        if formula:
            problems.append(InputProblem(row_number, formula[0], f"'{row[formula[0]]}' starts with {row[formula[0]][0]!r}, which spreadsheets run as a formula; start it with a letter or digit"))
            continue
        years = None
        if row.get("experience_years"):
            try:
                years = float(row["experience_years"])
                if years < 0:
                    raise ValueError
            except ValueError:
                problems.append(InputProblem(row_number, "experience_years", f"'{row['experience_years']}' is not a non-negative number"))
                continue
        specs.append(ReaderSpec(name, row.get("group", ""), row.get("role", "") or "radiologist", years))
    if not specs and not problems:
        problems.append(InputProblem(None, None, "no readers listed"))
    if problems:
        raise InputFileError(path, problems, what="readers file")
    return specs


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file, or of a folder (DICOM series): :func:`cases.file_sha256`."""
    from cases import file_sha256 as _sha256

    return _sha256(path)


def _exam_grid(path: Path) -> tuple[tuple[int, int, int], tuple[float, ...], tuple[float, ...], tuple[float, ...]]:
    """Size (x, y, z), spacing, origin and direction of an exam, from its headers only (:func:`cases.read_grid`)."""
    from cases import read_grid

    grid = read_grid(path)
    return grid.size, grid.spacing_mm, grid.origin_mm, grid.direction


def _exam_problem(path: Path) -> str:
    """Why an exam cannot be used (empty when it reads in full): missing, truncated, or unreadable.

    Both exams of every case are read before a study is created: NIfTI files must hold every
    voxel their header promises, other formats (NRRD, MHA, DICOM folders) are read in full.
    """
    from .integrity import IncompleteFileError, check_complete

    path = Path(path)
    if not path.exists():
        return "does not exist"
    name = path.name.lower()
    try:
        if path.is_file() and name.endswith((".nii", ".nii.gz")):
            check_complete(path)
            _exam_grid(path)
        else:
            from cases import read_exam

            read_exam(path, check_hu=False)
    except IncompleteFileError as exc:
        return f"is incomplete: {str(exc).replace(str(path), 'the file')}"
    except (ValueError, RuntimeError, OSError) as exc:
        return f"cannot be read ({' '.join(str(exc).split())[:300]})"
    return ""


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
            {"code": study.code, "title": study.title, "paradigm": study.paradigm, "scale": study.rating_scale, "status": study.status,
             "locked": study.is_locked, "design": study.design or "", "readers": n_readers, "cases": n_cases}
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


def _require_draft(study: Study, action: str) -> None:
    if study.is_locked:
        raise StudyLockedError(
            f"Cannot {action}: study {study.code!r} was locked at {study.locked_at:%Y-%m-%d %H:%M} UTC (content hash {study.content_hash[:12]}…). "  # type: ignore[index]
            "Truth and design of a locked study are frozen; create a new study to change them."
        )


def _add_cases(session: Session, study: Study, case_list: Any, *, training: bool, first_jafroc_id: int, hash_files: bool, problems: list[InputProblem]) -> int:
    """Add the cases of ``case_list`` (a CaseList or a path); returns the number added."""
    from cases import CaseList, read_case_list

    cl = case_list if isinstance(case_list, CaseList) else read_case_list(case_list)
    jafroc_id = first_jafroc_id
    for case in cl:
        unreadable = False
        for role, exam_path in (("prior", case.prior), ("current", case.current)):
            why = _exam_problem(exam_path)
            if why:
                problems.append(InputProblem(None, role, f"case {case.case_id}: the {role} exam {exam_path} {why}"))
                unreadable = True
        if unreadable:
            continue
        try:
            size, spacing, origin, direction = _exam_grid(case.current)
        except (ValueError, RuntimeError, OSError) as exc:
            problems.append(InputProblem(None, "current", f"case {case.case_id}: the current exam {case.current} cannot be read ({exc})"))
            continue
        row = StudyCase(
            study_id=study.id, code=case.case_id, jafroc_id=jafroc_id, is_training=training, abnormal=case.abnormal,
            prior_path=str(case.prior), current_path=str(case.current),
            prior_sha256=file_sha256(case.prior) if hash_files else "", current_sha256=file_sha256(case.current) if hash_files else "",
            size_x=size[0], size_y=size[1], size_z=size[2], spacing_x_mm=spacing[0], spacing_y_mm=spacing[1], spacing_z_mm=spacing[2],
            origin_x_mm=origin[0], origin_y_mm=origin[1], origin_z_mm=origin[2], direction_json=json.dumps([float(v) for v in direction]),
        )
        session.add(row)
        session.flush()
        weights = case.lesion_weights()
        for number, lesion in enumerate(case.lesions, start=1):
            label_hash = ""
            if lesion.label_map is not None and hash_files:
                label_hash = file_sha256(lesion.label_map)
            session.add(
                Lesion(
                    study_id=study.id, case_id=row.id, code=lesion.lesion_id, number=number,
                    center_x_mm=lesion.center_mm[0], center_y_mm=lesion.center_mm[1], center_z_mm=lesion.center_mm[2],
                    radius_mm=lesion.radius_mm, label_map_path=None if lesion.label_map is None else str(lesion.label_map),
                    label_map_sha256=label_hash, label_value=lesion.label_value, weight=float(weights[lesion.lesion_id]),
                    lesion_type=lesion.lesion_type.value, location=lesion.location.value,
                )
            )
        jafroc_id += 1
    session.flush()
    return jafroc_id - first_jafroc_id


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
    if not _CODE_RE.match(str(code)):
        raise ReaderStudyError(f"Study code {code!r} must be 1-64 letters, digits, '-', '_' or '.', starting with a letter or digit (e.g. TS-2026).")
    if session.scalar(select(Study.id).where(Study.code == code)) is not None:
        raise ReaderStudyError(f"A study {code!r} already exists; choose another code.")
    if paradigm not in PARADIGMS:
        raise ReaderStudyError(f"Paradigm {paradigm!r} is not supported; use one of {', '.join(PARADIGMS)}.")
    if rating_scale not in RATING_SCALES:
        raise ReaderStudyError(f"Rating scale {rating_scale!r} is not supported; use one of {', '.join(RATING_SCALES)}.")
    if acceptance_rule not in ACCEPTANCE_RULES:
        raise ReaderStudyError(f"Acceptance rule {acceptance_rule!r} is not supported; use 'radius' (within a distance of the lesion centre) or 'extent' (inside the lesion).")
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
            raise ReaderStudyError(f"Case IDs {', '.join(clash)} appear in both the case list and the training case list; a training case must not be analysed.")
    source = cl.source
    study = Study(
        code=code, title=title, paradigm=paradigm, rating_scale=rating_scale, acceptance_rule=acceptance_rule,
        acceptance_radius_mm=float(acceptance_radius_mm) if acceptance_radius_mm is not None else None,
        washout_days=float(washout_days), seed=int(seed), carry_marks_forward=bool(carry_marks_forward), status="draft",
        case_list_path=str(source) if source else "", case_list_sha256=file_sha256(source) if source and Path(source).is_file() else "",
        tsct_version=audit.tsct_version(),
    )
    session.add(study)
    session.flush()
    for position, spec in enumerate(treatments):
        session.add(Treatment(study_id=study.id, code=spec.code, label=spec.display_label, overlays=",".join(spec.overlays), position=position))
    problems: list[InputProblem] = []
    n_cases = _add_cases(session, study, cl, training=False, first_jafroc_id=1, hash_files=hash_files, problems=problems)
    n_training = 0
    if training is not None:
        n_training = _add_cases(session, study, training, training=True, first_jafroc_id=len(cl) + 1, hash_files=hash_files, problems=problems)
    detector_record = None
    if detector_dir is not None and not problems and any(spec.overlays for spec in treatments):
        detector_record = _check_detector_outputs(study, detector_dir, problems)
    if problems:
        raise InputFileError(source or "case list", problems, what="case list")
    audit.record(
        session, actor=actor, action="CREATE_STUDY", entity="study", entity_id=study.id, study_id=study.id,
        settings={"paradigm": paradigm, "rating_scale": rating_scale, "acceptance_rule": acceptance_rule, "acceptance_radius_mm": acceptance_radius_mm,
                  "washout_days": washout_days, "seed": seed, "treatments": [t.code for t in treatments]},
        case_list=str(source) if source else None, n_cases=n_cases, n_training_cases=n_training,
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
    _require_draft(study, "add readers")
    specs = list(readers)
    seen: dict[str, ReaderSpec] = {}
    for spec in specs:
        name = spec.name.strip()
        if not name:
            raise DuplicateReaderError("A reader needs a name (--name, or the 'name' column of the readers file).")
        if len(name) > 200 or any(not ch.isprintable() for ch in name):
            raise ReaderStudyError(f"Reader name {name[:40]!r} must be 1-200 printable characters.")
        for label, value in (("name", name), ("group", (spec.group or "").strip()), ("role", (spec.role or "").strip())):
            if value.startswith(_FORMULA_STARTS):
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
            audit.record(session, actor=actor, action="CREATE_READER", entity="reader", entity_id=reader.id, name=name, group=spec.group, role=reader.role)
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
        audit.record(session, actor=actor, action="ADD_READER", entity="study_reader", entity_id=sr.id, study_id=study.id, reader=reader.name, reader_code=code)
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
    _require_draft(study, "change the design")
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
                "study_id": study.id, "rating_scale": study.rating_scale, "session_id": session_ids[(r.reader, r.session_index)],
                "reader_id": by_code_reader[r.reader].reader_id, "case_id": by_code_case[r.case].id,
                "treatment_id": by_code_treatment[r.treatment].id, "order_index": r.order_index, "status": "pending", "no_lesion": False,
            }
            for r in plan.reads
        ],
    )
    audit.record(
        session, actor=actor, action="MAKE_DESIGN", entity="study", entity_id=study.id, study_id=study.id,
        kind=plan.kind, case_blocks=plan.case_blocks, seed=plan.seed, n_sessions=plan.n_sessions, n_reads=len(plan.reads),
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
            "code": study.code, "paradigm": study.paradigm, "rating_scale": study.rating_scale,
            "acceptance_rule": study.acceptance_rule, "acceptance_radius_mm": study.acceptance_radius_mm,
            "design": study.design, "case_blocks": study.case_blocks, "carry_marks_forward": study.carry_marks_forward,
            "washout_days": study.washout_days, "seed": study.seed, "case_list_sha256": study.case_list_sha256,
        },
        "treatments": [{"code": t.code, "label": t.label, "overlays": t.overlays, "position": t.position} for t in treatments],
        "readers": [
            {"code": sr.reader_code, "name": sr.reader.name, "group": sr.reader.group, "role": sr.reader.role, "sequence_group": sr.sequence_group}
            for sr in study_readers
        ],
        "cases": [
            {
                "code": c.code, "jafroc_id": c.jafroc_id, "training": c.is_training, "abnormal": c.abnormal, "block": c.block,
                "prior_sha256": c.prior_sha256, "current_sha256": c.current_sha256,
                "grid": {"size": list(c.size), "spacing_mm": list(c.spacing_mm), "origin_mm": list(c.origin_mm), "direction": list(c.direction)},
                "lesions": [
                    {"code": les.code, "number": les.number, "center_mm": list(les.center_mm), "radius_mm": les.radius_mm,
                     "label_map_sha256": les.label_map_sha256, "label_value": les.label_value, "weight": les.weight,
                     "lesion_type": les.lesion_type, "location": les.location}
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
    _require_draft(study, "lock the study again")
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
            session.add(StudyFile(
                study_id=study.id, case_id=e[0], role=e[1].role, name=e[1].name, path=str(e[1].path), sha256=e[1].sha256,
                size_bytes=e[1].size_bytes, model_name=e[1].model_name, model_version=e[1].model_version,
            ))
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


def lock_manifest(session: Session, study: Study, *, detector_dir: str | Path | None = None, require_detector: bool = False) -> list[tuple[int | None, Any]]:
    """Hash every file the lock protects: ``[(case row id, FileEntry), …]``.

    Raises
    ------
    ReaderStudyError
        Listing every problem: an exam or label map missing, truncated or changed since the
        study was created; a case without complete detector outputs for an aided treatment.
    """
    from tsct_files import problems_file

    from detector.outputs import CaseOutputsError

    from .integrity import (
        FileEntry, IncompleteFileError, check_complete, check_detector_case, detector_model, detector_output_files, exam_files,
        overlay_roles_needed, sha256_file,
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
        entries.append((case.id if case else None, FileEntry(case.code if case else None, role, name, path.resolve(), digest, path.stat().st_size, *model)))
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
                problems.append(f"case {case.code}: the {role} exam {path} changed since the study was created (sha256 then {stored[:12]}…); "
                                "create the study again from the files readers should read")
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
                        problems.append(f"case {case.code}: {name} is listed in {case_dir / 'outputs.json'} but missing; rerun `tsct detect batch` for this case")
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


def open_study(session: Session, study_code: str, *, actor: str = "coordinator", now: dt.datetime | None = None) -> Study:
    """Open a locked study for reading."""
    study = get_study(session, study_code)
    if study.status == "open":
        return study
    if study.status == "closed":
        raise StudyStateError(f"Study {study.code!r} is closed; a closed study is not reopened (its data may already have been analysed).")
    if not study.is_locked:
        raise StudyStateError(f"Study {study.code!r} is not locked; lock truth and design first (`tsct study lock {study.code}`).")
    study.status = "open"
    study.opened_at = now or utcnow()
    session.flush()
    audit.record(session, actor=actor, action="OPEN_STUDY", entity="study", entity_id=study.id, study_id=study.id)
    return study


def close_study(session: Session, study_code: str, *, actor: str = "coordinator", now: dt.datetime | None = None) -> Study:
    """Close an open study: no more reading or marks."""
    study = get_study(session, study_code)
    if study.status == "closed":
        return study
    if study.status != "open":
        raise StudyStateError(f"Study {study.code!r} is {study.status}; only an open study can be closed.")
    study.status = "closed"
    study.closed_at = now or utcnow()
    session.flush()
    audit.record(session, actor=actor, action="CLOSE_STUDY", entity="study", entity_id=study.id, study_id=study.id)
    return study


def waive_washout(session: Session, study_code: str, reader_name: str, session_index: int, *, reason: str, actor: str = "coordinator", now: dt.datetime | None = None) -> None:
    """Let a reader open session ``session_index`` before the washout has passed (audited; give the reason)."""
    if not reason.strip():
        raise ReaderStudyError("Give the reason for waiving the washout; it is kept in the audit log.")
    study = get_study(session, study_code)
    reader = session.scalar(select(Reader).where(func.lower(Reader.name) == reader_name.strip().lower()))
    if reader is None:
        raise NotFoundError(f"No reader named {reader_name!r}.")
    rs = session.scalar(select(ReadingSession).where(ReadingSession.study_id == study.id, ReadingSession.reader_id == reader.id, ReadingSession.session_index == session_index))
    if rs is None:
        raise NotFoundError(f"Reader {reader.name!r} has no session {session_index} in study {study.code!r}.")
    if rs.status != "scheduled":
        raise StudyStateError(f"Session {session_index} of {reader.name!r} is already {rs.status}.")
    rs.washout_waived_at = now or utcnow()
    rs.washout_waiver = reason.strip()
    session.flush()
    audit.record(session, actor=actor, action="WAIVE_WASHOUT", entity="reading_session", entity_id=rs.id, study_id=study.id, reader=reader.name, session_index=session_index, reason=reason.strip())


# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StudyStatus:
    """Progress of a study: per reader and session, and reading times per treatment."""

    code: str
    status: str
    locked: bool
    content_hash: str | None
    sessions: pd.DataFrame = field(repr=False)
    times: pd.DataFrame = field(repr=False)

    def to_frame(self) -> pd.DataFrame:
        return self.sessions.copy()

    def summary(self) -> str:
        total = int(self.sessions["reads"].sum()) if len(self.sessions) else 0
        done = int(self.sessions["finished"].sum()) if len(self.sessions) else 0
        pct = 100.0 * done / total if total else 0.0
        lines = [f"Study {self.code}: {self.status}{', locked' if self.locked else ''}; {done} of {total} case reads finished ({pct:.0f}%)."]
        for _, row in self.times.iterrows():
            if row["n_reads"]:
                lines.append(f"  {row['treatment']}: median {row['median_time_s']:.0f} s per case over {int(row['n_reads'])} finished study reads")
            else:
                lines.append(f"  {row['treatment']}: no finished study reads yet")
        return "\n".join(lines)


def study_status(session: Session, study_code: str, *, now: dt.datetime | None = None) -> StudyStatus:
    """Progress per reader and session (reads finished, times per case) and median time per case per treatment."""
    study = get_study(session, study_code)
    now = now or utcnow()
    readers = session.execute(
        select(StudyReader.reader_code, Reader.name, Reader.group, Reader.id, StudyReader.sequence_group)
        .join(Reader, Reader.id == StudyReader.reader_id)
        .where(StudyReader.study_id == study.id)
        .order_by(StudyReader.reader_code)
    ).all()
    sessions = list(session.scalars(select(ReadingSession).where(ReadingSession.study_id == study.id).order_by(ReadingSession.reader_id, ReadingSession.session_index)))
    reads = session.execute(
        select(CaseRead.session_id, CaseRead.status, CaseRead.reading_time_s, Treatment.code, StudyCase.is_training)
        .join(Treatment, Treatment.id == CaseRead.treatment_id)
        .join(StudyCase, StudyCase.id == CaseRead.case_id)
        .where(CaseRead.study_id == study.id)
    ).all()
    by_session: dict[int, list] = {}
    for r in reads:
        by_session.setdefault(r[0], []).append(r)
    sessions_of: dict[int, list[ReadingSession]] = {}
    for rs in sessions:
        sessions_of.setdefault(rs.reader_id, []).append(rs)
    rows = []
    for code, name, group, reader_id, seq_group in readers:
        previous = None
        for rs in sessions_of.get(reader_id, []):
            rr = by_session.get(rs.id, [])
            times = [r[2] for r in rr if r[1] == "finished" and r[2] is not None]
            not_before = session_not_before(previous.closed_at, study.washout_days) if previous is not None else None
            rows.append(
                {
                    "reader": code, "name": name, "group": group, "sequence": None if seq_group is None else seq_group + 1,
                    "session": rs.session_index, "status": rs.status, "reads": len(rr), "finished": sum(r[1] == "finished" for r in rr),
                    "median_time_s": median(times) if times else float("nan"), "total_time_s": float(sum(times)) if times else 0.0,
                    "opened_at": rs.opened_at, "closed_at": rs.closed_at,
                    "not_before": not_before,
                    "washout_waived": rs.washout_waived_at is not None,
                }
            )
            previous = rs
    frame = pd.DataFrame(
        rows,
        columns=["reader", "name", "group", "sequence", "session", "status", "reads", "finished", "median_time_s", "total_time_s", "opened_at", "closed_at", "not_before", "washout_waived"],
    )
    per_treatment: dict[str, list[float]] = {}
    for r in reads:
        if r[1] == "finished" and r[2] is not None and not r[4]:
            per_treatment.setdefault(r[3], []).append(float(r[2]))
    treatments = list(session.scalars(select(Treatment.code).where(Treatment.study_id == study.id).order_by(Treatment.position)))
    times = pd.DataFrame(
        [
            {"treatment": t, "n_reads": len(per_treatment.get(t, [])), "median_time_s": median(per_treatment[t]) if per_treatment.get(t) else float("nan")}
            for t in treatments
        ],
        columns=["treatment", "n_reads", "median_time_s"],
    )
    return StudyStatus(study.code, study.status, study.is_locked, study.content_hash, frame, times)
