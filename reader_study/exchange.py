"""Getting data out of and into a study: tidy records and exports, importing marks, backups.

* :func:`study_records` scores every finished study reading against the truth
  (:mod:`reader_study.scoring`) and returns tidy tables: truth, NL marks, LL marks, every mark
  with its outcome, every case read with its time, and case-level ROC ratings.
  :meth:`StudyRecords.to_observer_data` hands them to :mod:`analysis`.
* :func:`export_study` writes them as a JAFROC Excel workbook (RJafroc-compatible), an iMRMC file
  (case-level ROC ratings) and CSV tables, with a provenance file; every file's SHA-256 goes into
  the audit log.
* :func:`import_marks` brings in marks made with another tool (CSV), checked row by row; all or
  nothing.

Consistent backups while readers keep working are in :mod:`reader_study.backup`.

Only finished readings of study cases are analysed. A reading that is not finished cannot be
told apart from one where the reader found nothing, so an export with unfinished readings is
refused, or — with ``allow_incomplete`` — leaves out the readers who have not finished, and says so.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import pandas as pd
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from . import audit
from .coordinator import get_study
from .db import Database
from .errors import InputFileError, InputProblem, MarkPositionError, RatingError, ReaderStudyError, StudyStateError
from .models import CaseRead, Lesion, Mark, Reader, ReadingSession, Study, StudyCase, StudyReader, Treatment, utcnow
from .reading import GridInfo, locate_mark
from .scoring import AcceptanceRule, MarkToScore, ScoringError, TruthLesion, roc_ratings, score_marks
from .study_inputs import file_sha256

__all__ = [
    "StudyRecords",
    "study_records",
    "load_label_maps",
    "ExportResult",
    "export_study",
    "EXPORT_FORMATS",
    "ImportResult",
    "import_marks",
    "MARK_IMPORT_COLUMNS",
    "ExportError",
]

EXPORT_FORMATS = ("jafroc", "imrmc", "csv")
MARK_IMPORT_COLUMNS = ("reader", "case_id", "treatment", "rating", "x_mm", "y_mm", "z_mm", "index_x", "index_y", "index_z", "client_key")


class ExportError(ReaderStudyError):
    """A study cannot be exported as asked (unfinished readings, nothing read yet)."""


# ------------------------------------------------------------------------------------------------
def load_label_maps(lesions: Iterable[Lesion], case_code: str | None = None) -> dict[tuple[str, str], Any]:
    """Label maps of lesions described by one, keyed by ``(case code, lesion code)``; each file is read once.

    Checks each file against the SHA-256 stored when the study was created, so scoring never
    uses a label map that changed after the truth was locked.
    """
    from cases import read_volume

    cache: dict[str, Any] = {}
    out: dict[tuple[str, str], Any] = {}
    for les in lesions:
        if not les.label_map_path:
            continue
        path = les.label_map_path
        if path not in cache:
            if not Path(path).is_file():
                raise ScoringError(
                    f"Label map {path} of lesion {les.code} is missing; restore it (its SHA-256 is {les.label_map_sha256 or 'not recorded'})."
                )
            if les.label_map_sha256 and file_sha256(path) != les.label_map_sha256:
                raise ScoringError(
                    f"Label map {path} of lesion {les.code} changed after the study was created (SHA-256 differs); restore the original file."
                )
            cache[path] = read_volume(path, label=True)
        out[(case_code or les.case.code, les.code)] = cache[path]
    return out


@dataclass(frozen=True)
class StudyRecords:
    """Tidy tables of a study, scored against its truth (see :func:`study_records`).

    Attributes
    ----------
    truth : one row per lesion (case_id, lesion_id, weight, location, lesion_type) and one per
        normal case (lesion_id empty).
    nl : non-lesion localisations: treatment, reader, case_id, rating.
    ll : lesion localisations: treatment, reader, case_id, lesion_id, rating.
    marks : every analysed mark with outcome (LL/NL/dropped), lesion, distance, position and times.
    reads : every study case read: reader, session, position, case, treatment, status, times, no_lesion, n_marks.
    roc : case-level ratings (FROC: highest mark rating, ``-inf`` when unmarked; ROC: the case rating).
    excluded_readers : readers left out because they had not finished (``allow_incomplete``).
    provenance : study code, content hash, rule, versions, export time.
    """

    study_code: str
    paradigm: str
    treatments: tuple[str, ...]
    readers: tuple[str, ...]
    reader_groups: dict[str, str]
    truth: pd.DataFrame = field(repr=False)
    nl: pd.DataFrame = field(repr=False)
    ll: pd.DataFrame = field(repr=False)
    marks: pd.DataFrame = field(repr=False)
    reads: pd.DataFrame = field(repr=False)
    roc: pd.DataFrame = field(repr=False)
    excluded_readers: tuple[str, ...] = ()
    provenance: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> str:
        n_cases = self.truth["case_id"].nunique()
        n_lesions = int(self.truth["lesion_id"].notna().sum())
        outcome = Counter(self.marks["outcome"]) if len(self.marks) else Counter()
        text = (
            f"Study {self.study_code} ({self.paradigm}): {len(self.readers)} readers × {n_cases} cases ({n_lesions} lesions) × "
            f"{len(self.treatments)} treatments; {len(self.marks)} marks: {outcome.get('LL', 0)} LL, {outcome.get('NL', 0)} NL, "
            f"{outcome.get('dropped', 0)} dropped"
        )
        if self.excluded_readers:
            text += f"; left out (unfinished): {', '.join(self.excluded_readers)}"
        return text

    def to_observer_data(self):  # -> analysis.ObserverData
        """The study as :class:`analysis.ObserverData` (``ObserverData.from_marks``)."""
        from analysis import ObserverData

        if self.paradigm == "ROC":
            truth = self.truth.copy()
            abnormal = truth["lesion_id"].notna()
            truth = pd.concat(
                [
                    truth[~abnormal][["case_id", "lesion_id"]],
                    truth[abnormal].drop_duplicates("case_id")[["case_id"]].assign(lesion_id="1", weight=1.0),
                ]
            )
            normal_ids = set(truth.loc[truth["lesion_id"].isna(), "case_id"])
            nl = self.roc[self.roc["case_id"].isin(normal_ids)]
            ll = self.roc[~self.roc["case_id"].isin(normal_ids)].assign(lesion_id="1")
            return ObserverData.from_marks(
                truth,
                nl,
                ll,
                paradigm="ROC",
                treatments=self.treatments,
                readers=self.readers,
                reader_groups=self.reader_groups,
                name=self.study_code,
            )
        return ObserverData.from_marks(
            self.truth,
            self.nl,
            self.ll,
            paradigm="FROC",
            treatments=self.treatments,
            readers=self.readers,
            reader_groups=self.reader_groups,
            name=self.study_code,
        )


def study_records(session: Session, study_code: str, *, allow_incomplete: bool = False) -> StudyRecords:
    """Score a study's finished readings and return tidy tables (see :class:`StudyRecords`).

    Parameters
    ----------
    session : a session (a snapshot, ``db.snapshot()``, gives a consistent view).
    study_code : the study.
    allow_incomplete : leave out readers with unfinished study readings instead of refusing.

    Raises
    ------
    ExportError
        When readings are unfinished (without ``allow_incomplete``) or no reader has finished.
    ScoringError
        When a label map needed by the extent rule is missing or changed.
    """
    study = get_study(session, study_code)
    if study.design is None:
        raise ExportError(f"Study {study.code!r} has no design and no readings yet.")
    treatments = list(session.scalars(select(Treatment).where(Treatment.study_id == study.id).order_by(Treatment.position)))
    study_readers = session.execute(
        select(StudyReader.reader_id, StudyReader.reader_code, Reader.group)
        .join(Reader, Reader.id == StudyReader.reader_id)
        .where(StudyReader.study_id == study.id)
        .order_by(StudyReader.reader_code)
    ).all()
    cases = list(
        session.scalars(select(StudyCase).where(StudyCase.study_id == study.id, StudyCase.is_training.is_(False)).order_by(StudyCase.jafroc_id))
    )
    case_ids = {c.id for c in cases}
    code_of_case = {c.id: c.code for c in cases}
    code_of_reader = {r[0]: r[1] for r in study_readers}
    code_of_treatment = {t.id: t.code for t in treatments}

    read_rows = session.execute(
        select(
            CaseRead.id,
            CaseRead.reader_id,
            ReadingSession.session_index,
            CaseRead.order_index,
            CaseRead.case_id,
            CaseRead.treatment_id,
            CaseRead.status,
            CaseRead.opened_at,
            CaseRead.finished_at,
            CaseRead.reading_time_s,
            CaseRead.no_lesion,
            CaseRead.case_rating,
        )
        .join(ReadingSession, ReadingSession.id == CaseRead.session_id)
        .where(CaseRead.study_id == study.id, CaseRead.case_id.in_(case_ids) if case_ids else False)
        .order_by(CaseRead.reader_id, ReadingSession.session_index, CaseRead.order_index)
    ).all()
    unfinished = Counter(code_of_reader[r[1]] for r in read_rows if r[6] != "finished")
    excluded: tuple[str, ...] = ()
    if unfinished:
        detail = ", ".join(f"{code} {n}" for code, n in sorted(unfinished.items()))
        if not allow_incomplete:
            raise ExportError(
                f"Study {study.code!r} has unfinished study readings ({detail}). Unfinished readings cannot be told apart from "
                "readings without findings; wait until every reader has finished, or export the readers who have finished "
                "with allow_incomplete (--allow-incomplete)."
            )
        excluded = tuple(sorted(unfinished))
    readers = tuple(r[1] for r in study_readers if r[1] not in excluded)
    if not readers:
        raise ExportError(f"No reader of study {study.code!r} has finished all study readings yet; nothing to export.")
    kept_reader_ids = {r[0] for r in study_readers if r[1] in readers}
    read_rows = [r for r in read_rows if r[1] in kept_reader_ids]
    read_ids = [r[0] for r in read_rows]
    treatment_of_read = {r[0]: code_of_treatment[r[5]] for r in read_rows}
    reader_of_read = {r[0]: code_of_reader[r[1]] for r in read_rows}
    case_of_read = {r[0]: code_of_case[r[4]] for r in read_rows}

    marks_orm = list(session.scalars(select(Mark).where(Mark.study_id == study.id, Mark.deleted_at.is_(None)).order_by(Mark.id)))
    marks_orm = [m for m in marks_orm if m.case_read_id in treatment_of_read]
    n_marks = Counter(m.case_read_id for m in marks_orm)

    lesions = list(session.scalars(select(Lesion).where(Lesion.study_id == study.id).order_by(Lesion.case_id, Lesion.number)))
    lesions = [les for les in lesions if les.case_id in case_ids]
    truth_rows = []
    lesions_of: dict[int, list[Lesion]] = defaultdict(list)
    for les in lesions:
        lesions_of[les.case_id].append(les)
    for c in cases:
        if not lesions_of.get(c.id):
            truth_rows.append({"case_id": c.code, "lesion_id": None, "weight": 0.0, "location": None, "lesion_type": None})
        for les in lesions_of.get(c.id, []):
            truth_rows.append(
                {"case_id": c.code, "lesion_id": les.code, "weight": les.weight, "location": les.location, "lesion_type": les.lesion_type}
            )
    truth = pd.DataFrame(truth_rows, columns=["case_id", "lesion_id", "weight", "location", "lesion_type"])

    reads = pd.DataFrame(
        [
            {
                "reader": code_of_reader[r[1]],
                "session": r[2],
                "position": r[3] + 1,
                "case_id": code_of_case[r[4]],
                "treatment": code_of_treatment[r[5]],
                "status": r[6],
                "opened_at": r[7],
                "finished_at": r[8],
                "reading_time_s": r[9],
                "no_lesion": bool(r[10]),
                "case_rating": r[11],
                "n_marks": n_marks.get(r[0], 0),
            }
            for r in read_rows
        ],
        columns=[
            "reader",
            "session",
            "position",
            "case_id",
            "treatment",
            "status",
            "opened_at",
            "finished_at",
            "reading_time_s",
            "no_lesion",
            "case_rating",
            "n_marks",
        ],
    )

    rule = AcceptanceRule(study.acceptance_rule, study.acceptance_radius_mm)  # type: ignore[arg-type]
    to_score = [
        MarkToScore(m.id, treatment_of_read[m.case_read_id], reader_of_read[m.case_read_id], case_of_read[m.case_read_id], m.point_mm, m.rating)
        for m in marks_orm
    ]
    if study.paradigm == "FROC":
        truth_lesions = [
            TruthLesion(code_of_case[les.case_id], les.code, les.center_mm, les.radius_mm, les.weight, les.label_value) for les in lesions
        ]
        label_maps = None
        if rule.kind == "extent" and any(les.label_map_path for les in lesions):
            label_maps = {}
            for les in lesions:
                if les.label_map_path:
                    label_maps.update(load_label_maps([les], code_of_case[les.case_id]))
        result = score_marks(to_score, truth_lesions, rule, label_maps=label_maps)
        scored = result.marks_frame()
        by_id = {m.id: m for m in marks_orm}
        scored["index_x"] = [by_id[i].index_x for i in scored["mark_id"]]
        scored["index_y"] = [by_id[i].index_y for i in scored["mark_id"]]
        scored["index_z"] = [by_id[i].index_z for i in scored["mark_id"]]
        scored["source"] = [by_id[i].source for i in scored["mark_id"]]
        scored["created_at"] = [by_id[i].created_at for i in scored["mark_id"]]
        scored["changed_at"] = [by_id[i].changed_at for i in scored["mark_id"]]
        nl, ll = result.nl_frame(), result.ll_frame()
        roc = roc_ratings(to_score, [(treatment_of_read[i], reader_of_read[i], case_of_read[i]) for i in read_ids])
    else:
        scored = pd.DataFrame(
            columns=["mark_id", "treatment", "reader", "case_id", "x_mm", "y_mm", "z_mm", "rating", "outcome", "lesion_id", "distance_mm"]
        )
        nl = pd.DataFrame(columns=["treatment", "reader", "case_id", "rating"])
        ll = pd.DataFrame(columns=["treatment", "reader", "case_id", "lesion_id", "rating"])
        roc = pd.DataFrame(
            [
                {"treatment": code_of_treatment[r[5]], "reader": code_of_reader[r[1]], "case_id": code_of_case[r[4]], "rating": r[11]}
                for r in read_rows
            ],
            columns=["treatment", "reader", "case_id", "rating"],
        )
    truth_status = {c.code: c.abnormal for c in cases}
    roc = roc.assign(abnormal=[truth_status[c] for c in roc["case_id"]])
    provenance = {
        "study": study.code,
        "title": study.title,
        "paradigm": study.paradigm,
        "rating_scale": study.rating_scale,
        "acceptance_rule": rule.describe() if study.paradigm == "FROC" else "not applicable (ROC)",
        "multiple_marks_on_one_lesion": "highest rating is the lesion localisation; the others are dropped (neither LL nor NL)",
        "mark_hitting_two_lesions": "assigned to the lesion with the nearest centre",
        "design": study.design,
        "case_blocks": study.case_blocks,
        "washout_days": study.washout_days,
        "seed": study.seed,
        "status": study.status,
        "locked_at": study.locked_at.isoformat() if study.locked_at else None,
        "content_hash": study.content_hash,
        "case_list": study.case_list_path,
        "case_list_sha256": study.case_list_sha256,
        "treatments": [t.code for t in treatments],
        "readers": list(readers),
        "excluded_readers": list(excluded),
        "tsct_version": audit.tsct_version(),
        "records_made_at": utcnow().isoformat(),
    }
    return StudyRecords(
        study_code=study.code,
        paradigm=study.paradigm,
        treatments=tuple(t.code for t in treatments),
        readers=readers,
        reader_groups={r[1]: r[2] for r in study_readers if r[1] in readers},
        truth=truth,
        nl=nl,
        ll=ll,
        marks=scored,
        reads=reads,
        roc=roc,
        excluded_readers=excluded,
        provenance=provenance,
    )


# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ExportResult:
    """Files written by :func:`export_study`, each with its SHA-256."""

    study_code: str
    out_dir: Path
    files: dict[str, str]
    records: StudyRecords = field(repr=False)

    def summary(self) -> str:
        lines = [f"Exported study {self.study_code} to {self.out_dir}: {self.records.summary()}"]
        lines += [f"  {name}  sha256 {digest[:16]}…" for name, digest in self.files.items()]
        return "\n".join(lines)


def export_study(
    db: Database,
    study_code: str,
    out_dir: str | Path,
    *,
    formats: Sequence[str] = EXPORT_FORMATS,
    allow_incomplete: bool = False,
    actor: str = "coordinator",
) -> ExportResult:
    """Export a study for analysis: JAFROC Excel, iMRMC and/or CSV tables, plus ``provenance.json``.

    Files (``<code>`` is the study code):

    ``<code>-jafroc.xlsx``     RJafroc-compatible workbook (Truth, NL, LL sheets; integer case IDs;
                               ``ID_MAP`` sheet back to the study's IDs), via :mod:`analysis`
    ``<code>.imrmc``           case-level ROC ratings for FDA iMRMC (FROC: highest mark rating,
                               unmarked cases below every rating)
    ``<code>-tidy.csv``        the analysis package's single-file tidy layout
    ``truth.csv``, ``nl.csv``, ``ll.csv``, ``marks.csv``, ``reads.csv``, ``roc.csv``, ``readers.csv``
                               the tidy tables of :class:`StudyRecords` (marks with LL/NL/dropped and
                               distances; reads with times), and the readers' codes and groups
    ``provenance.json``        settings, rules, content hash, versions, and each file's SHA-256

    The records are taken from one consistent snapshot of the database, so readers may keep
    working. The export is recorded in the audit log with the files' hashes.
    """
    from tsct_files import check_output_dir

    unknown = [f for f in formats if f not in EXPORT_FORMATS]
    if unknown:
        raise ExportError(f"Unknown export format(s) {', '.join(unknown)}; choose from {', '.join(EXPORT_FORMATS)} (--format).")
    out = check_output_dir(Path(out_dir), option="--out")
    with db.snapshot() as s:
        records = study_records(s, study_code, allow_incomplete=allow_incomplete)
        names = dict(
            s.execute(
                select(StudyReader.reader_code, Reader.name)
                .join(Reader, Reader.id == StudyReader.reader_id)
                .join(Study, Study.id == StudyReader.study_id)
                .where(Study.code == study_code)
            ).all()
        )
    code = records.study_code
    # Every file is written into a hidden staging folder beside OUT and moved in when all are
    # complete: a failed or killed export leaves no half-written file under OUT.
    try:
        hashes = _write_export(out, code, formats, records, names)
    except OSError as exc:  # a full or read-only disk, found while writing
        raise ExportError(
            f"--out {out}: the export could not be written ({exc.strerror or exc}); is the disk full or read-only? Nothing was left under {out}."
        ) from None
    with db.transaction() as s:
        study = get_study(s, study_code)
        audit.record(
            s,
            actor=actor,
            action="EXPORT",
            entity="study",
            entity_id=study.id,
            study_id=study.id,
            out_dir=str(out.resolve()),
            files=hashes,
            excluded_readers=list(records.excluded_readers),
        )
    return ExportResult(code, out, hashes, records)


def _write_export(out: Path, code: str, formats: Sequence[str], records: StudyRecords, names: dict[str, str]) -> dict[str, str]:
    """Write the export's files into a staging folder moved under ``out`` when complete; their SHA-256 by name."""
    from tsct_files import csv_safe_frame, pause_point, staged_dir

    with staged_dir(out.resolve()) as stage:
        written: dict[str, Path] = {}
        if "jafroc" in formats or "imrmc" in formats or "csv" in formats:
            from analysis import write_imrmc, write_jafroc_excel, write_tidy_csv

            data = records.to_observer_data()
            if "jafroc" in formats:
                written[f"{code}-jafroc.xlsx"] = write_jafroc_excel(data, stage / f"{code}-jafroc.xlsx", rjafroc_compatible=True)
            if "imrmc" in formats:
                roc = data.to_roc() if data.paradigm == "FROC" else data
                written[f"{code}.imrmc"] = write_imrmc(
                    roc,
                    stage / f"{code}.imrmc",
                    description=f"TSCT study {code}: case-level ratings ({'highest mark rating' if data.paradigm == 'FROC' else 'case rating'})",
                )
            if "csv" in formats:
                written[f"{code}-tidy.csv"] = write_tidy_csv(data, stage / f"{code}-tidy.csv")
        if "csv" in formats:
            for name, frame in (
                ("truth", records.truth),
                ("nl", records.nl),
                ("ll", records.ll),
                ("marks", records.marks),
                ("reads", records.reads),
                ("roc", records.roc),
            ):
                path = stage / f"{name}.csv"
                csv_safe_frame(frame).to_csv(path, index=False)  # text a spreadsheet would run as a formula is quoted
                written[path.name] = path
            readers = pd.DataFrame([{"reader": r, "name": names.get(r, ""), "group": records.reader_groups.get(r, "")} for r in records.readers])
            csv_safe_frame(readers).to_csv(stage / "readers.csv", index=False)
            written["readers.csv"] = stage / "readers.csv"
        hashes = {name: file_sha256(path) for name, path in written.items()}
        provenance = {**records.provenance, "files": hashes}
        (stage / "provenance.json").write_text(json.dumps(provenance, indent=2, default=str) + "\n")
        hashes["provenance.json"] = file_sha256(stage / "provenance.json")
        pause_point("export-staged")
    return hashes


# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ImportResult:
    """What :func:`import_marks` did."""

    path: Path
    n_rows: int
    n_added: int
    n_already_present: int
    n_reads_finished: int

    def summary(self) -> str:
        return (
            f"Imported {self.path}: {self.n_rows} rows, {self.n_added} marks added, {self.n_already_present} already present "
            f"(imported before), {self.n_reads_finished} case reads finished."
        )


def import_marks(
    session: Session,
    study_code: str,
    path: str | Path,
    *,
    complete_reads: bool = False,
    actor: str = "tsct study import-marks",
    now: dt.datetime | None = None,
) -> ImportResult:
    """Import marks made elsewhere (e.g. another viewer) from a CSV file, all or nothing.

    Columns: ``reader`` (name or reader code), ``case_id``, ``treatment``, ``rating``, and the
    position either as ``x_mm, y_mm, z_mm`` (LPS mm of the current exam) or as
    ``index_x, index_y, index_z`` (voxel index); optional ``client_key`` (default: derived from the
    file's content and the row number, so importing the same file twice adds nothing).

    Every row is checked — reader, case and treatment known, the reading exists in the design
    and is not already finished in the workstation, rating on the study's scale, position inside
    the exam — and every problem is reported with its row number; if there is any, nothing is
    imported. The readings that receive marks are finished (they were read elsewhere); with
    ``complete_reads``, every other unfinished study reading of the readers in the file is
    finished too, as read without findings ("no lesion").

    Raises
    ------
    InputFileError
        Listing every bad row.
    StudyStateError
        When the study is not open or is an ROC study.
    """
    path = Path(path)
    study = get_study(session, study_code)
    if study.status != "open":
        raise StudyStateError(f"Study {study.code!r} is {study.status}; marks can be imported only into an open study.")
    if study.paradigm != "FROC":
        raise StudyStateError(f"Study {study.code!r} is an ROC study; it has case ratings, not marks, to import.")
    import tsct_files

    if not path.exists():
        raise InputFileError(path, [InputProblem(None, None, "file not found")], what="marks file")
    try:
        text = tsct_files.read_input_text(path, what="marks file")
    except tsct_files.InputFileError as exc:
        raise InputFileError(path, [InputProblem(None, None, str(exc).removeprefix(f"{path}: "))], what="marks file") from None
    file_digest = hashlib.sha256(path.read_bytes()).hexdigest()
    parser = csv.DictReader(text.splitlines())
    try:
        rows = list(parser)
    except csv.Error as exc:
        raise InputFileError(
            path, [InputProblem(parser.line_num, None, tsct_files.csv_field_error(path, exc).removeprefix(f"{path}: "))], what="marks file"
        ) from None
    header = [h.strip() for h in next(csv.reader(text.splitlines()[:1]), [])]
    problems: list[InputProblem] = []
    twice = sorted({h for h in header if h and header.count(h) > 1})
    if twice:
        raise InputFileError(
            path, [InputProblem(1, None, f"column(s) {', '.join(twice)} appear more than once in the header; keep one of each")], what="marks file"
        )
    required = ("reader", "case_id", "treatment", "rating")
    missing = [c for c in required if c not in header]
    has_mm = all(c in header for c in ("x_mm", "y_mm", "z_mm"))
    has_index = all(c in header for c in ("index_x", "index_y", "index_z"))
    if missing:
        problems.append(InputProblem(1, None, f"missing column(s) {', '.join(missing)}"))
    if not has_mm and not has_index:
        problems.append(InputProblem(1, None, "no position columns: give x_mm, y_mm, z_mm (LPS mm) or index_x, index_y, index_z (voxel index)"))
    unknown = [h for h in header if h and h not in MARK_IMPORT_COLUMNS]
    if unknown:
        problems.append(InputProblem(1, None, f"unknown column(s) {', '.join(unknown)}; known: {', '.join(MARK_IMPORT_COLUMNS)}"))
    if problems:
        raise InputFileError(path, problems, what="marks file")

    readers = session.execute(
        select(StudyReader.reader_id, StudyReader.reader_code, Reader.name)
        .join(Reader, Reader.id == StudyReader.reader_id)
        .where(StudyReader.study_id == study.id)
    ).all()
    reader_by_key: dict[str, int] = {}
    for rid, rcode, rname in readers:
        reader_by_key[rcode.casefold()] = rid
        reader_by_key[rname.casefold()] = rid
    cases = {c.code: c for c in session.scalars(select(StudyCase).where(StudyCase.study_id == study.id))}
    treatments = {t.code: t for t in session.scalars(select(Treatment).where(Treatment.study_id == study.id))}
    reads = {(r.reader_id, r.case_id, r.treatment_id): r for r in session.scalars(select(CaseRead).where(CaseRead.study_id == study.id))}
    scale = study.scale
    planned: list[dict[str, Any]] = []
    keys_seen: dict[tuple[int, str], int] = {}
    marks_seen: dict[tuple[int, int, tuple[int, ...]], int] = {}
    for row_number, raw_row in enumerate(rows, start=2):
        row = {(k or "").strip(): (v or "").strip() for k, v in raw_row.items() if k is not None}
        if not any(row.values()):
            continue
        n_before = len(problems)
        rid = reader_by_key.get(row.get("reader", "").casefold())
        if rid is None:
            problems.append(
                InputProblem(row_number, "reader", f"'{row.get('reader', '')}' is not a reader of study {study.code} (give the name or reader code)")
            )
        case = cases.get(row.get("case_id", ""))
        if case is None:
            problems.append(InputProblem(row_number, "case_id", f"'{row.get('case_id', '')}' is not a case of study {study.code}"))
        treatment = treatments.get(row.get("treatment", ""))
        if treatment is None:
            problems.append(
                InputProblem(
                    row_number, "treatment", f"'{row.get('treatment', '')}' is not a treatment of study {study.code} ({', '.join(treatments)})"
                )
            )
        try:
            rating = scale.check(row.get("rating", ""))
        except RatingError as exc:
            problems.append(InputProblem(row_number, "rating", str(exc)))
            rating = None
        read = None
        if rid is not None and case is not None and treatment is not None:
            read = reads.get((rid, case.id, treatment.id))
            if read is None:
                problems.append(
                    InputProblem(row_number, None, f"the design has no reading of case {case.code} in {treatment.code} by {row['reader']}")
                )
            elif read.status == "finished" and not _imported_read(session, read.id):
                problems.append(
                    InputProblem(
                        row_number,
                        None,
                        f"the reading of case {case.code} in {treatment.code} by {row['reader']} was already finished in the workstation; its marks cannot be replaced",
                    )
                )
        point = index = None
        if case is not None:
            grid = GridInfo(case.size, case.spacing_mm, case.origin_mm, case.direction)
            use_mm = has_mm and any(row.get(c) for c in ("x_mm", "y_mm", "z_mm"))
            try:
                if use_mm:
                    point, index = locate_mark(grid, case.code, [row.get("x_mm", ""), row.get("y_mm", ""), row.get("z_mm", "")], None)
                else:
                    point, index = locate_mark(grid, case.code, None, [row.get("index_x", ""), row.get("index_y", ""), row.get("index_z", "")])
            except MarkPositionError as exc:
                names = ("x_mm", "y_mm", "z_mm") if use_mm else ("index_x", "index_y", "index_z")
                column = next((c for c in names if not _finite_number(row.get(c, ""))), None) or _axis_outside(
                    grid, names, [row.get(c, "") for c in names], use_mm
                )
                problems.append(InputProblem(row_number, column, str(exc)))
            if use_mm and has_index and any(row.get(c) for c in ("index_x", "index_y", "index_z")):
                problems.append(
                    InputProblem(
                        row_number,
                        "index_x",
                        "both a position in mm (x_mm, y_mm, z_mm) and a voxel index (index_x, index_y, index_z); give one of them",
                    )
                )
        key = row.get("client_key") or f"import:{file_digest[:16]}:{row_number}"
        if rid is not None:
            if (rid, key) in keys_seen:
                problems.append(
                    InputProblem(row_number, "client_key", f"'{key}' repeats row {keys_seen[(rid, key)]} for the same reader; keys must be unique")
                )
            keys_seen.setdefault((rid, key), row_number)
        if len(problems) == n_before and read is not None and index is not None:
            same = (rid, read.id, tuple(int(v) for v in index))
            if same in marks_seen:
                problems.append(
                    InputProblem(
                        row_number,
                        None,
                        f"repeats the mark of row {marks_seen[same]} (same reader, reading of case {case.code} in {treatment.code}, and voxel); a lesion is marked once: delete the duplicate row",
                    )
                )
                continue
            marks_seen[same] = row_number
        if len(problems) == n_before and read is not None:
            planned.append(
                {"row": row_number, "reader_id": rid, "read": read, "case": case, "key": key, "point": point, "index": index, "rating": rating}
            )
    if not rows:
        problems.append(InputProblem(None, None, "the file has a header but no marks"))
    # Keys used before: the same mark imported again is skipped; a different mark is an error.
    existing = {}
    if planned:
        for m in session.scalars(select(Mark).where(Mark.study_id == study.id, Mark.client_key.in_({p["key"] for p in planned}))):
            existing[(m.reader_id, m.client_key)] = m
    for p in planned:
        m = existing.get((p["reader_id"], p["key"]))
        if m is not None and (
            m.case_read_id != p["read"].id or abs(m.x_mm - p["point"][0]) + abs(m.y_mm - p["point"][1]) + abs(m.z_mm - p["point"][2]) > 1e-6
        ):
            problems.append(InputProblem(p["row"], "client_key", f"'{p['key']}' was already used for another mark ({m.id}); use a new key"))
    if problems:
        raise InputFileError(path, problems, what="marks file")

    now = now or utcnow()
    added = skipped = 0
    touched: dict[int, CaseRead] = {}
    for p in planned:
        if (p["reader_id"], p["key"]) in existing:
            skipped += 1
            continue
        read: CaseRead = p["read"]
        if read.status == "finished":  # finished by an earlier import: reopen is not allowed; skip (already there)
            skipped += 1
            continue
        if read.status == "pending":
            read.status = "open"
            read.opened_at = now
            session.flush()
        touched[read.id] = read
        mark = Mark(
            study_id=study.id,
            rating_scale=study.rating_scale,
            reader_id=p["reader_id"],
            case_read_id=read.id,
            client_key=p["key"],
            x_mm=p["point"][0],
            y_mm=p["point"][1],
            z_mm=p["point"][2],
            index_x=p["index"][0],
            index_y=p["index"][1],
            index_z=p["index"][2],
            rating=p["rating"],
            source="import",
            created_at=now,
        )
        session.add(mark)
        session.flush()
        audit.record(
            session,
            actor=actor,
            action="ADD_MARK",
            entity="mark",
            entity_id=mark.id,
            study_id=study.id,
            source="import",
            file=str(path),
            row=p["row"],
            case_read_id=read.id,
            point_mm=p["point"],
            rating=p["rating"],
        )
        added += 1
    finished = 0
    for read in touched.values():
        read.status = "finished"
        read.finished_at = now
        read.no_lesion = False
        finished += 1
    if complete_reads:
        reader_ids = {p["reader_id"] for p in planned}
        training_ids = {c.id for c in cases.values() if c.is_training}
        for read in reads.values():
            if read.reader_id in reader_ids and read.status != "finished" and read.case_id not in training_ids:
                if read.status == "pending":
                    read.status = "open"
                    read.opened_at = now
                    session.flush()
                read.status = "finished"
                read.finished_at = now
                read.no_lesion = True
                finished += 1
    session.flush()
    # Close sessions whose readings are now all finished.
    for rs in session.scalars(select(ReadingSession).where(ReadingSession.study_id == study.id, ReadingSession.status != "closed")):
        left = session.scalar(select(func.count()).select_from(CaseRead).where(CaseRead.session_id == rs.id, CaseRead.status != "finished"))
        if left == 0:
            rs.opened_at = rs.opened_at or now
            rs.status = "closed"
            rs.closed_at = now
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="IMPORT_MARKS",
        entity="study",
        entity_id=study.id,
        study_id=study.id,
        file=str(path),
        sha256=file_digest,
        rows=len(planned),
        added=added,
        skipped=skipped,
        reads_finished=finished,
    )
    return ImportResult(path, len(planned), added, skipped, finished)


def _axis_outside(grid: GridInfo, names: tuple[str, ...], values: list[str], use_mm: bool) -> str:
    """The column whose coordinate lies outside the exam (all of them when that cannot be told)."""
    import numpy as np

    try:
        volume = grid.to_volume()
        v = np.asarray([float(x) for x in values])
        idx = volume.point_to_index(v) if use_mm else v
        size = np.asarray(volume.size, dtype=float)
        outside = [n for n, i, s_ in zip(names, idx, size) if i < -0.5 or i > s_ - 0.5]
    except Exception:  # noqa: BLE001 - only to name a column in a message
        outside = []
    return ", ".join(outside or names)


def _finite_number(text: str) -> bool:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return False
    return value == value and abs(value) != float("inf")


def _imported_read(session: Session, read_id: int) -> bool:
    """Whether a finished read was finished by an import (so re-importing the same file is a no-op)."""
    sources = set(session.scalars(select(Mark.source).where(Mark.case_read_id == read_id)))
    return sources == {"import"}
