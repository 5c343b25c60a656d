"""The reader-facing service: everything a reader's workstation may do, for one reader only.

:class:`ReadingService` is bound to **one** reader of **one** study when it is made (normally from
a verified log-in, :func:`reader_study.accounts.verify_login`). It offers only what a reader
needs — sessions and worklist, opening a case, saving a mark, changing a rating, deleting a mark,
listing the reader's own marks, rating a case (ROC studies), finishing a case — and every query
it runs is filtered on its reader. It has no method that returns truth (lesions, normal/abnormal
status) or another reader's marks or progress; what it returns are frozen dataclasses, not
database objects, so nothing can be navigated from them to other rows. (Training cases are the
one exception by design: after finishing a training case the reader may see its truth through
:meth:`ReadingService.training_feedback`.) Identifiers of other readers' case reads and marks
behave exactly like identifiers that do not exist.

Rules enforced here (and, where possible, again by the database):

* the study must be open; sessions open in order, and session ``k+1`` only once session ``k`` is
  closed and the washout has passed (unless a coordinator waived it, audited);
* cases are read in the reader's assigned order; a finished case read is locked, so in the
  sequential design the unaided reading is final before the aided one opens (whose marks start as
  copies of the unaided ones when the study carries marks forward);
* each mark is saved in its own short transaction the moment it is made; ``client_key`` makes a
  repeated save (double click, browser refresh, network retry) return the existing mark;
* ratings must lie on the study's scale; marks must lie inside the current exam's volume;
* changes and deletions are soft and audited: the old rating and the deleted mark stay in the
  audit log, the mark row keeps ``changed_at``/``deleted_at``.

Example
-------
>>> svc = ReadingService(db, reader_id=account.reader_id, study_code="TS-2026")   # doctest: +SKIP
>>> svc.open_session()                                                             # doctest: +SKIP
>>> item = svc.next_case(); view = svc.open_case(item.case_read_id)                # doctest: +SKIP
>>> svc.save_mark(view.case_read_id, client_key="click-1718034",                   # doctest: +SKIP
...               point_mm=(12.5, -40.0, 310.0), rating=4)
>>> svc.finish_case(view.case_read_id)                                             # doctest: +SKIP
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
from sqlalchemy import bindparam, func, select
from sqlalchemy import case as sql_case
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cases import Grid

from . import audit
from .db import Database
from .errors import (
    ClientKeyConflictError,
    MarkPositionError,
    NotFoundError,
    ReadingStateError,
    StudyStateError,
    WashoutError,
)
from .models import RATING_SCALES, CaseRead, Mark, RatingScale, Reader, ReadingSession, Study, StudyCase, StudyReader, Treatment, utcnow

__all__ = [
    "ReadingService",
    "SessionView",
    "WorklistItem",
    "GridInfo",
    "MarkView",
    "CaseView",
    "TrainingFeedback",
    "session_not_before",
    "locate_mark",
]


def session_not_before(previous_closed_at: dt.datetime | None, washout_days: float) -> dt.datetime | None:
    """When a session may open: the previous session's close plus the washout (``None``: not yet known)."""
    if previous_closed_at is None:
        return None
    return previous_closed_at + dt.timedelta(days=float(washout_days))


# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SessionView:
    """One of the reader's sessions. ``can_open`` says whether :meth:`ReadingService.open_session` would succeed now, ``reason`` why not."""

    session_index: int
    status: str
    n_reads: int
    n_finished: int
    opened_at: dt.datetime | None
    closed_at: dt.datetime | None
    not_before: dt.datetime | None
    can_open: bool
    reason: str


@dataclass(frozen=True)
class WorklistItem:
    """A case read in the reader's order: position is 1-based within its session."""

    case_read_id: int
    session_index: int
    position: int
    n_in_session: int
    case_code: str
    treatment: str
    treatment_label: str
    overlays: tuple[str, ...]
    training: bool
    status: str


class GridInfo(Grid):
    """The current exam's voxel grid as the study database holds it: a :class:`cases.Grid`
    (ITK order x, y, z; LPS mm), with the names the reading views have always used."""

    @property
    def size_xyz(self) -> tuple[int, int, int]:
        """Grid size ``(n_x, n_y, n_z)`` (the same as :attr:`size`)."""
        return self.size

    def to_volume(self) -> "GridInfo":
        """The grid itself: it maps marks with ``point_to_index``/``index_to_point_mm``/``contains_point``
        (kept for callers written when this returned a voxel-less :class:`cases.Volume`)."""
        return self


@dataclass(frozen=True)
class MarkView:
    """One of the reader's marks."""

    mark_id: int
    case_read_id: int
    client_key: str
    point_mm: tuple[float, float, float]
    index_xyz: tuple[int, int, int]
    rating: float
    source: str
    created_at: dt.datetime
    changed_at: dt.datetime | None
    deleted_at: dt.datetime | None

    @property
    def deleted(self) -> bool:
        return self.deleted_at is not None


@dataclass(frozen=True)
class CaseView:
    """What the viewer needs to show one case read (no truth).

    ``overlays`` names the images that may be shown on top of the CT in this treatment (empty:
    unaided reading; show none). ``marks`` are the reader's own current marks on this read.
    """

    case_read_id: int
    case_code: str
    session_index: int
    position: int
    n_in_session: int
    treatment: str
    treatment_label: str
    overlays: tuple[str, ...]
    training: bool
    status: str
    paradigm: str
    rating_scale: RatingScale
    prior_path: str
    current_path: str
    grid: GridInfo
    opened_at: dt.datetime | None
    finished_at: dt.datetime | None
    reading_time_s: float | None
    no_lesion: bool
    case_rating: float | None
    marks: tuple[MarkView, ...]


@dataclass(frozen=True)
class TrainingFeedback:
    """Truth of a finished training case and how the reader's marks scored against it."""

    case_read_id: int
    case_code: str
    lesions: tuple[dict, ...]
    marks: tuple[dict, ...]


def _mark_view(m: Mark) -> MarkView:
    return MarkView(
        mark_id=m.id,
        case_read_id=m.case_read_id,
        client_key=m.client_key,
        point_mm=(m.x_mm, m.y_mm, m.z_mm),
        index_xyz=(m.index_x, m.index_y, m.index_z),
        rating=m.rating,
        source=m.source,
        created_at=m.created_at,
        changed_at=m.changed_at,
        deleted_at=m.deleted_at,
    )


def locate_mark(
    grid: GridInfo, case_code: str, point_mm: Sequence[float] | None, index_xyz: Sequence[int] | None
) -> tuple[tuple[float, float, float], tuple[int, int, int]]:
    """A mark's position in LPS mm and as the nearest voxel index ``(x, y, z)``, from either one.

    Raises :class:`MarkPositionError` when both or neither are given, when a value is not a finite
    number (whole numbers for indices), or when the position lies outside the exam's volume
    (more than half a voxel beyond the outer voxel centres).
    """
    if (point_mm is None) == (index_xyz is None):
        raise MarkPositionError(
            "Give the mark's position either in patient millimetres (point_mm) or as a voxel index (index_xyz), not both or neither."
        )
    volume = grid
    size = np.asarray(grid.size)
    if index_xyz is not None:
        try:
            idx = np.asarray([float(v) for v in index_xyz])
        except (TypeError, ValueError):
            raise MarkPositionError(f"Voxel index {index_xyz!r} must be three whole numbers (x, y, z).") from None
        if idx.shape != (3,) or not np.all(np.isfinite(idx)) or np.any(idx != np.round(idx)):
            raise MarkPositionError(f"Voxel index {index_xyz!r} must be three whole numbers (x, y, z).")
        if np.any(idx < 0) or np.any(idx >= size):
            raise MarkPositionError(
                f"Voxel index {tuple(int(v) for v in idx)} lies outside the current exam of case {case_code} "
                f"(valid x 0..{size[0] - 1}, y 0..{size[1] - 1}, z 0..{size[2] - 1})."
            )
        point = volume.index_to_point_mm(idx)
        return tuple(float(v) for v in point), tuple(int(v) for v in idx)  # type: ignore[return-value]
    try:
        p = np.asarray([float(v) for v in point_mm], dtype=float)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise MarkPositionError(f"Position {point_mm!r} must be three numbers (x, y, z) in mm.") from None
    if p.shape != (3,) or not np.all(np.isfinite(p)):
        raise MarkPositionError(f"Position {point_mm!r} must be three finite numbers (x, y, z) in mm.")
    if not volume.contains_point(p):
        lo = volume.index_to_point_mm((-0.5, -0.5, -0.5))
        hi = volume.index_to_point_mm(size - 0.5)
        raise MarkPositionError(
            f"Position ({p[0]:.1f}, {p[1]:.1f}, {p[2]:.1f}) mm lies outside the current exam of case {case_code} "
            f"(LPS box from ({lo[0]:.1f}, {lo[1]:.1f}, {lo[2]:.1f}) to ({hi[0]:.1f}, {hi[1]:.1f}, {hi[2]:.1f}) mm)."
        )
    idx = np.clip(np.floor(volume.point_to_index(p) + 0.5), 0, size - 1).astype(int)
    return tuple(float(v) for v in p), tuple(int(v) for v in idx)  # type: ignore[return-value]


# Statements of the save path, built once (building and cache-keying a statement costs more than running it).
_CONTEXT = (
    select(
        CaseRead.id,
        CaseRead.status,
        ReadingSession.status,
        ReadingSession.session_index,
        Study.status,
        StudyCase.id,
        StudyCase.code,
        CaseRead.treatment_id,
    )
    .join(ReadingSession, ReadingSession.id == CaseRead.session_id)
    .join(Study, Study.id == CaseRead.study_id)
    .join(StudyCase, StudyCase.id == CaseRead.case_id)
    .where(CaseRead.id == bindparam("read_id"), CaseRead.reader_id == bindparam("reader_id"), CaseRead.study_id == bindparam("study_id"))
)
_INSERT_MARK: dict[str, object] = {}


def _insert_mark(dialect: str):  # noqa: ANN202
    """``INSERT … ON CONFLICT (reader_id, client_key) DO NOTHING RETURNING id`` for the dialect."""
    stmt = _INSERT_MARK.get(dialect)
    if stmt is None:
        table = Mark.__table__
        insert = (pg_dialect.insert if dialect == "postgresql" else sqlite_dialect.insert)(table)
        stmt = _INSERT_MARK[dialect] = insert.on_conflict_do_nothing(index_elements=["reader_id", "client_key"]).returning(table.c.id)
    return stmt


@dataclass(frozen=True)
class _ReadContext:
    read_id: int
    read_status: str
    session_status: str
    session_index: int
    study_status: str
    case_id: int
    case_code: str
    treatment_id: int


class ReadingService:
    """The reading workstation's access to the study, bound to one reader.

    Parameters
    ----------
    db : the database.
    reader_id : the reader this service acts for (from the verified log-in).
    study_code : the study read.
    clock : returns the current UTC time (tests pass a fake clock to check the washout).
    actor : name written to the audit log (default: the reader's name).

    Raises
    ------
    NotFoundError
        When the study does not exist or the reader is not one of its readers.
    """

    def __init__(
        self,
        db: Database,
        *,
        reader_id: int,
        study_code: str,
        clock: Callable[[], dt.datetime] = utcnow,
        actor: str | None = None,
    ) -> None:
        self._db = db
        self._clock = clock
        with db.snapshot() as s:
            row = s.execute(
                select(Study.id, Study.paradigm, Study.rating_scale, Study.washout_days, Reader.name)
                .join(StudyReader, StudyReader.study_id == Study.id)
                .join(Reader, Reader.id == StudyReader.reader_id)
                .where(Study.code == study_code, StudyReader.reader_id == reader_id)
            ).one_or_none()
        if row is None:
            raise NotFoundError(
                f"Reader {reader_id} is not a reader of study {study_code!r} (or the study does not exist); ask the coordinator to add you."
            )
        self._study_id: int = row.id
        self._study_code = study_code
        self._paradigm: str = row.paradigm
        self._scale: RatingScale = RATING_SCALES[row.rating_scale]
        self._washout_days: float = row.washout_days
        self._reader_id = reader_id
        self.reader_name: str = row.name
        self._actor = actor or row.name
        self._grids: dict[int, GridInfo] = {}

    # ------------------------------------------------------------------ properties
    @property
    def study_code(self) -> str:
        return self._study_code

    @property
    def paradigm(self) -> str:
        return self._paradigm

    @property
    def rating_scale(self) -> RatingScale:
        return self._scale

    def __repr__(self) -> str:
        return f"ReadingService(study={self._study_code!r}, reader={self.reader_name!r})"

    # ------------------------------------------------------------------ helpers
    def _audit(self, s: Session, action: str, entity: str, entity_id: int | None, **detail: object) -> None:
        audit.record(
            s,
            actor=self._actor,
            actor_reader_id=self._reader_id,
            study_id=self._study_id,
            action=action,
            entity=entity,
            entity_id=entity_id,
            **detail,
        )

    def _study_status(self, s: Session) -> str:
        return s.scalar(select(Study.status).where(Study.id == self._study_id))  # type: ignore[return-value]

    def _require_open_study(self, s: Session) -> None:
        status = self._study_status(s)
        if status != "open":
            hint = "the coordinator has not opened it yet" if status == "draft" else "it was closed by the coordinator"
            raise StudyStateError(f"Study {self._study_code!r} is {status}, not open for reading ({hint}); nothing was saved.")

    def _sessions(self, s: Session) -> list[ReadingSession]:
        return list(
            s.scalars(
                select(ReadingSession)
                .where(ReadingSession.study_id == self._study_id, ReadingSession.reader_id == self._reader_id)
                .order_by(ReadingSession.session_index)
            )
        )

    def _session_views(self, s: Session) -> list[SessionView]:
        sessions = self._sessions(s)
        counts = dict(
            (row[0], (row[1], row[2]))
            for row in s.execute(
                select(CaseRead.session_id, func.count(), func.sum(sql_case((CaseRead.status == "finished", 1), else_=0)))
                .where(CaseRead.reader_id == self._reader_id, CaseRead.study_id == self._study_id)
                .group_by(CaseRead.session_id)
            )
        )
        study_status = self._study_status(s)
        now = self._clock()
        views = []
        previous: ReadingSession | None = None
        for rs in sessions:
            n, done = counts.get(rs.id, (0, 0))
            not_before = None if previous is None else session_not_before(previous.closed_at, self._washout_days)
            can_open, reason = self._can_open(rs, previous, study_status, now)
            views.append(SessionView(rs.session_index, rs.status, int(n), int(done or 0), rs.opened_at, rs.closed_at, not_before, can_open, reason))
            previous = rs
        return views

    def _can_open(self, rs: ReadingSession, previous: ReadingSession | None, study_status: str, now: dt.datetime) -> tuple[bool, str]:
        if rs.status == "open":
            return True, "already open"
        if rs.status == "closed":
            return False, "this session is finished"
        if study_status != "open":
            return False, f"the study is {study_status}, not open for reading"
        if previous is None:
            return True, ""
        if previous.status != "closed":
            return False, f"session {previous.session_index} is not finished yet"
        if rs.washout_waived_at is not None:
            return True, f"washout waived by the coordinator: {rs.washout_waiver}"
        not_before = session_not_before(previous.closed_at, self._washout_days)
        if not_before is not None and now < not_before:
            return (
                False,
                f"washout: session {rs.session_index} opens on {not_before:%Y-%m-%d %H:%M} UTC ({self._washout_days:g} days after session {previous.session_index} was finished)",
            )
        return True, ""

    def _context(self, s: Session, case_read_id: int) -> _ReadContext:
        row = s.connection().execute(_CONTEXT, {"read_id": case_read_id, "reader_id": self._reader_id, "study_id": self._study_id}).one_or_none()
        if row is None:
            raise NotFoundError(f"There is no case read {case_read_id} in your worklist of study {self._study_code!r}.")
        return _ReadContext(*row)

    def _require_open_read(self, ctx: _ReadContext, action: str) -> None:
        if ctx.study_status != "open":
            raise StudyStateError(f"Study {self._study_code!r} is {ctx.study_status}, not open for reading; cannot {action}. Nothing was saved.")
        if ctx.read_status != "open":
            state = "finished and locked" if ctx.read_status == "finished" else "not opened yet"
            raise ReadingStateError(f"Case {ctx.case_code} (case read {ctx.read_id}) is {state}; cannot {action}.")

    def _grid(self, s: Session, case_id: int) -> GridInfo:
        grid = self._grids.get(case_id)
        if grid is None:
            c = s.get(StudyCase, case_id)
            assert c is not None
            grid = GridInfo(c.size, c.spacing_mm, c.origin_mm, c.direction)
            self._grids[case_id] = grid
        return grid

    def _own_mark(self, s: Session, mark_id: int) -> Mark:
        mark = s.scalar(select(Mark).where(Mark.id == mark_id, Mark.reader_id == self._reader_id, Mark.study_id == self._study_id))
        if mark is None:
            raise NotFoundError(f"You have no mark {mark_id} in study {self._study_code!r}.")
        return mark

    def _marks(self, s: Session, case_read_id: int, include_deleted: bool = False) -> list[Mark]:
        stmt = select(Mark).where(Mark.case_read_id == case_read_id, Mark.reader_id == self._reader_id)
        if not include_deleted:
            stmt = stmt.where(Mark.deleted_at.is_(None))
        return list(s.scalars(stmt.order_by(Mark.id)))

    def _next_read_id(self, s: Session, session_id: int) -> int | None:
        return s.scalar(
            select(CaseRead.id)
            .where(CaseRead.session_id == session_id, CaseRead.reader_id == self._reader_id, CaseRead.status != "finished")
            .order_by(CaseRead.order_index)
            .limit(1)
        )

    def _worklist_items(self, s: Session, session_id: int, session_index: int) -> list[WorklistItem]:
        rows = s.execute(
            select(
                CaseRead.id,
                CaseRead.order_index,
                CaseRead.status,
                StudyCase.code,
                StudyCase.is_training,
                Treatment.code,
                Treatment.label,
                Treatment.overlays,
            )
            .join(StudyCase, StudyCase.id == CaseRead.case_id)
            .join(Treatment, Treatment.id == CaseRead.treatment_id)
            .where(CaseRead.session_id == session_id, CaseRead.reader_id == self._reader_id)
            .order_by(CaseRead.order_index)
        ).all()
        n = len(rows)
        return [
            WorklistItem(r[0], session_index, i + 1, n, r[3], r[5], r[6], tuple(o for o in r[7].split(",") if o), bool(r[4]), r[2])
            for i, r in enumerate(rows)
        ]

    def _case_view(self, s: Session, case_read_id: int) -> CaseView:
        read = s.scalar(
            select(CaseRead).where(CaseRead.id == case_read_id, CaseRead.reader_id == self._reader_id, CaseRead.study_id == self._study_id)
        )
        if read is None:
            raise NotFoundError(f"There is no case read {case_read_id} in your worklist of study {self._study_code!r}.")
        rs = s.get(ReadingSession, read.session_id)
        case = s.get(StudyCase, read.case_id)
        treatment = s.get(Treatment, read.treatment_id)
        assert rs is not None and case is not None and treatment is not None
        n = s.scalar(select(func.count()).select_from(CaseRead).where(CaseRead.session_id == rs.id)) or 0
        return CaseView(
            case_read_id=read.id,
            case_code=case.code,
            session_index=rs.session_index,
            position=read.order_index + 1,
            n_in_session=int(n),
            treatment=treatment.code,
            treatment_label=treatment.label,
            overlays=treatment.overlay_names,
            training=case.is_training,
            status=read.status,
            paradigm=self._paradigm,
            rating_scale=self._scale,
            prior_path=case.prior_path,
            current_path=case.current_path,
            grid=self._grid(s, case.id),
            opened_at=read.opened_at,
            finished_at=read.finished_at,
            reading_time_s=read.reading_time_s,
            no_lesion=read.no_lesion,
            case_rating=read.case_rating,
            marks=tuple(_mark_view(m) for m in self._marks(s, read.id)),
        )

    # ------------------------------------------------------------------ sessions and worklist
    def sessions(self) -> list[SessionView]:
        """The reader's sessions in order, with progress and whether each can be opened now."""
        with self._db.snapshot() as s:
            return self._session_views(s)

    def open_session(self, session_index: int | None = None) -> SessionView:
        """Open the next session (or ``session_index``); returns it. Opening an open session is a no-op.

        Raises
        ------
        WashoutError
            When the previous session is not finished or the washout has not passed.
        StudyStateError
            When the study is not open.
        """
        with self._db.transaction() as s:
            sessions = self._sessions(s)
            if not sessions:
                raise NotFoundError(f"You have no reading sessions in study {self._study_code!r}; the coordinator has not made the design yet.")
            if session_index is None:
                current = next((rs for rs in sessions if rs.status != "closed"), None)
                if current is None:
                    raise ReadingStateError(f"You have finished every session of study {self._study_code!r}. Thank you!")
            else:
                current = next((rs for rs in sessions if rs.session_index == session_index), None)
                if current is None:
                    raise NotFoundError(f"You have no session {session_index} in study {self._study_code!r} (sessions 1 to {len(sessions)}).")
            previous = next((rs for rs in sessions if rs.session_index == current.session_index - 1), None)
            study_status = self._study_status(s)
            can, reason = self._can_open(current, previous, study_status, self._clock())
            if not can:
                if study_status != "open":
                    raise StudyStateError(f"Cannot open session {current.session_index}: {reason}.")
                raise WashoutError(f"Cannot open session {current.session_index} yet: {reason}.")
            if current.status == "scheduled":
                current.status = "open"
                current.opened_at = self._clock()
                s.flush()
                self._audit(
                    s,
                    "OPEN_SESSION",
                    "reading_session",
                    current.id,
                    session_index=current.session_index,
                    washout_waived=current.washout_waived_at is not None,
                )
            index = current.session_index
        return next(v for v in self.sessions() if v.session_index == index)

    def _open_session_row(self, s: Session) -> ReadingSession | None:
        return s.scalar(
            select(ReadingSession).where(
                ReadingSession.study_id == self._study_id, ReadingSession.reader_id == self._reader_id, ReadingSession.status == "open"
            )
        )

    def worklist(self, session_index: int | None = None) -> list[WorklistItem]:
        """The case reads of the open session (or of ``session_index``), in the reader's order."""
        with self._db.snapshot() as s:
            if session_index is None:
                rs = self._open_session_row(s)
                if rs is None:
                    return []
            else:
                rs = s.scalar(
                    select(ReadingSession).where(
                        ReadingSession.study_id == self._study_id,
                        ReadingSession.reader_id == self._reader_id,
                        ReadingSession.session_index == session_index,
                    )
                )
                if rs is None:
                    raise NotFoundError(f"You have no session {session_index} in study {self._study_code!r}.")
            return self._worklist_items(s, rs.id, rs.session_index)

    def next_case(self) -> WorklistItem | None:
        """The case read to do now (the first unfinished one of the open session), or ``None``."""
        for item in self.worklist():
            if item.status != "finished":
                return item
        return None

    # ------------------------------------------------------------------ cases
    def open_case(self, case_read_id: int) -> CaseView:
        """Open a case read (the next one in the reader's order) and return what to display.

        Opening the case that is already open returns it unchanged (e.g. after a browser refresh).
        In a sequential design with marks carried forward, opening the aided reading of a case
        starts it with copies of the reader's marks from the unaided reading (the unaided marks
        themselves stay as they were).
        """
        with self._db.transaction() as s:
            ctx = self._context(s, case_read_id)
            if ctx.study_status != "open":
                raise StudyStateError(f"Study {self._study_code!r} is {ctx.study_status}, not open for reading.")
            if ctx.session_status != "open":
                raise WashoutError(
                    f"Case read {case_read_id} belongs to session {ctx.session_index}, which is {ctx.session_status}; open that session first."
                )
            if ctx.read_status == "pending":
                read = s.get(CaseRead, case_read_id)
                assert read is not None
                expected = self._next_read_id(s, read.session_id)
                if expected != read.id:
                    pos = s.scalar(select(CaseRead.order_index).where(CaseRead.id == expected))
                    raise ReadingStateError(
                        f"Cases are read in your assigned order; the next one is position {None if pos is None else pos + 1} "
                        f"(case read {expected}), not case read {case_read_id}."
                    )
                read.status = "open"
                read.opened_at = self._clock()
                s.flush()
                design, carry = s.execute(select(Study.design, Study.carry_marks_forward).where(Study.id == self._study_id)).one()
                carried = self._carry_forward(s, read) if design == "sequential" and carry and self._paradigm == "FROC" else 0
                self._audit(s, "OPEN_CASE", "case_read", read.id, case=ctx.case_code, carried_marks=carried)
            return self._case_view(s, case_read_id)

    def _carry_forward(self, s: Session, read: CaseRead) -> int:
        """Copy the marks of the previous phase of the same case into ``read`` (sequential design)."""
        treatment_position = s.scalar(select(Treatment.position).where(Treatment.id == read.treatment_id))
        previous = s.scalar(
            select(CaseRead)
            .join(Treatment, Treatment.id == CaseRead.treatment_id)
            .where(
                CaseRead.session_id == read.session_id,
                CaseRead.case_id == read.case_id,
                CaseRead.reader_id == self._reader_id,
                Treatment.position < treatment_position,
            )
            .order_by(Treatment.position.desc())
            .limit(1)
        )
        if previous is None:
            return 0
        n = 0
        for m in self._marks(s, previous.id):
            copy = Mark(
                study_id=m.study_id,
                rating_scale=m.rating_scale,
                reader_id=m.reader_id,
                case_read_id=read.id,
                client_key=f"carried:{read.id}:{m.id}",
                x_mm=m.x_mm,
                y_mm=m.y_mm,
                z_mm=m.z_mm,
                index_x=m.index_x,
                index_y=m.index_y,
                index_z=m.index_z,
                rating=m.rating,
                source="carried",
                carried_from_id=m.id,
                created_at=self._clock(),
            )
            s.add(copy)
            n += 1
        s.flush()
        return n

    def get_case(self, case_read_id: int) -> CaseView:
        """The current state of one of the reader's case reads (no change)."""
        with self._db.snapshot() as s:
            return self._case_view(s, case_read_id)

    # ------------------------------------------------------------------ marks
    def save_mark(
        self,
        case_read_id: int,
        *,
        client_key: str,
        rating: float,
        point_mm: Sequence[float] | None = None,
        index_xyz: Sequence[int] | None = None,
    ) -> MarkView:
        """Save a mark at once (its own transaction); idempotent by ``client_key``.

        Parameters
        ----------
        case_read_id : the open case read.
        client_key : a key the client chooses once per mark (click time stamp, UUID). Saving again
            with the same key returns the mark saved first and changes nothing (its rating may
            since have been changed with :meth:`change_rating`).
        rating : on the study's scale.
        point_mm : position in LPS mm of the current exam, or
        index_xyz : the voxel index ``(x, y, z)`` of the current exam (the mark is placed at the
            voxel's centre).

        Raises
        ------
        ClientKeyConflictError
            When the key was used before for a mark on another case read or position.
        RatingError, MarkPositionError, ReadingStateError, StudyStateError, NotFoundError
        """
        client_key = str(client_key).strip()
        if not client_key or len(client_key) > 200:
            raise ClientKeyConflictError("client_key must be 1 to 200 characters (e.g. the click's time stamp or a UUID).")
        try:
            with self._db.transaction() as s:
                return self._save_mark(s, case_read_id, client_key, rating, point_mm, index_xyz)
        except IntegrityError as exc:
            # A concurrent change (e.g. the case was finished in another tab) beat this save.
            with self._db.snapshot() as s:
                ctx = self._context(s, case_read_id)
                self._require_open_read(ctx, "add a mark")
            raise ReadingStateError(f"The mark could not be saved: {exc.orig}") from None

    def _save_mark(self, s: Session, case_read_id: int, client_key: str, rating: float, point_mm, index_xyz) -> MarkView:  # noqa: ANN001
        # The common path is three statements: the read's context, the insert, the audit event.
        ctx = self._context(s, case_read_id)
        grid = self._grid(s, ctx.case_id)
        point, index = locate_mark(grid, ctx.case_code, point_mm, index_xyz)
        if ctx.study_status != "open" or ctx.read_status != "open" or self._paradigm != "FROC":
            # A retry of a save that succeeded before the read was finished still gets its mark back.
            existing = s.scalar(select(Mark).where(Mark.reader_id == self._reader_id, Mark.client_key == client_key))
            if existing is not None:
                return self._same_mark(existing, case_read_id, point)
            if self._paradigm != "FROC":
                raise ReadingStateError(
                    f"Study {self._study_code!r} is an ROC study: rate the case as a whole (set_case_rating) instead of marking lesions."
                )
            self._require_open_read(ctx, "add a mark")
        value = self._scale.check(rating)
        now = self._clock()
        new_id = (
            s.connection()
            .execute(
                _insert_mark(self._db.dialect),
                {
                    "study_id": self._study_id,
                    "rating_scale": self._scale.name,
                    "reader_id": self._reader_id,
                    "case_read_id": case_read_id,
                    "client_key": client_key,
                    "x_mm": point[0],
                    "y_mm": point[1],
                    "z_mm": point[2],
                    "index_x": index[0],
                    "index_y": index[1],
                    "index_z": index[2],
                    "rating": value,
                    "source": "app",
                    "created_at": now,
                },
            )
            .scalar()
        )
        if new_id is None:  # this key was saved before (a repeated save): return that mark
            existing = s.scalar(select(Mark).where(Mark.reader_id == self._reader_id, Mark.client_key == client_key))
            assert existing is not None
            return self._same_mark(existing, case_read_id, point)
        self._audit(s, "ADD_MARK", "mark", new_id, case_read_id=case_read_id, client_key=client_key, point_mm=point, index_xyz=index, rating=value)
        return MarkView(new_id, case_read_id, client_key, point, index, value, "app", now, None, None)

    @staticmethod
    def _same_mark(existing: Mark, case_read_id: int, point: tuple[float, float, float]) -> MarkView:
        if existing.case_read_id != case_read_id or not np.allclose(existing.point_mm, point, atol=1e-6):
            raise ClientKeyConflictError(
                f"client_key {existing.client_key!r} was already used for mark {existing.id} on case read {existing.case_read_id} "
                f"at {tuple(round(v, 2) for v in existing.point_mm)} mm; use a new key for a new mark."
            )
        return _mark_view(existing)

    def change_rating(self, mark_id: int, rating: float) -> MarkView:
        """Change a mark's rating; the old rating stays in the audit log. Setting the same rating is a no-op."""
        with self._db.transaction() as s:
            mark = self._own_mark(s, mark_id)
            ctx = self._context(s, mark.case_read_id)
            self._require_open_read(ctx, "change a rating")
            if mark.deleted_at is not None:
                raise ReadingStateError(f"Mark {mark_id} was deleted; it cannot be rated again. Add a new mark instead.")
            value = self._scale.check(rating)
            if value != mark.rating:
                old = mark.rating
                mark.rating = value
                mark.changed_at = self._clock()
                s.flush()
                self._audit(s, "CHANGE_RATING", "mark", mark.id, case_read_id=mark.case_read_id, old_rating=old, new_rating=value)
            return _mark_view(mark)

    def delete_mark(self, mark_id: int) -> MarkView:
        """Delete a mark (softly: it keeps its row with ``deleted_at``; the audit log keeps it as it was). Deleting twice is a no-op."""
        with self._db.transaction() as s:
            mark = self._own_mark(s, mark_id)
            if mark.deleted_at is not None:
                return _mark_view(mark)
            ctx = self._context(s, mark.case_read_id)
            self._require_open_read(ctx, "delete a mark")
            mark.deleted_at = self._clock()
            s.flush()
            self._audit(
                s,
                "DELETE_MARK",
                "mark",
                mark.id,
                case_read_id=mark.case_read_id,
                client_key=mark.client_key,
                point_mm=mark.point_mm,
                rating=mark.rating,
            )
            return _mark_view(mark)

    def marks(self, case_read_id: int, *, include_deleted: bool = False) -> list[MarkView]:
        """The reader's own marks on one of their case reads (deleted ones only when asked)."""
        with self._db.snapshot() as s:
            self._context(s, case_read_id)
            return [_mark_view(m) for m in self._marks(s, case_read_id, include_deleted)]

    # ------------------------------------------------------------------ ROC rating and finishing
    def set_case_rating(self, case_read_id: int, rating: float) -> CaseView:
        """ROC studies: the reader's confidence that the case has a lesion, on the study's scale."""
        with self._db.transaction() as s:
            ctx = self._context(s, case_read_id)
            if self._paradigm != "ROC":
                raise ReadingStateError(
                    f"Study {self._study_code!r} is a FROC study: mark each lesion with its own rating instead of rating the case."
                )
            self._require_open_read(ctx, "rate the case")
            value = self._scale.check(rating)
            read = s.get(CaseRead, case_read_id)
            assert read is not None
            if read.case_rating != value:
                old = read.case_rating
                read.case_rating = value
                s.flush()
                self._audit(s, "SET_CASE_RATING", "case_read", read.id, old_rating=old, new_rating=value)
            return self._case_view(s, case_read_id)

    def finish_case(self, case_read_id: int, *, no_lesion: bool = False, reading_time_s: float | None = None) -> CaseView:
        """Finish (and lock) a case read; finishing the last one closes the session.

        Parameters
        ----------
        no_lesion : FROC: the reader declares that the case has no lesion. Required to finish a
            case without marks (so a case cannot be skipped by accident); refused when marks exist.
        reading_time_s : time actively spent on the case as measured by the client (e.g. with
            pauses excluded); default: from opening to finishing.

        Finishing an already finished case read returns it unchanged.
        """
        with self._db.transaction() as s:
            ctx = self._context(s, case_read_id)
            read = s.get(CaseRead, case_read_id)
            assert read is not None
            if read.status == "finished":
                return self._case_view(s, case_read_id)
            self._require_open_read(ctx, "finish the case")
            n_marks = (
                s.scalar(
                    select(func.count())
                    .select_from(Mark)
                    .where(Mark.case_read_id == case_read_id, Mark.reader_id == self._reader_id, Mark.deleted_at.is_(None))
                )
                or 0
            )
            if self._paradigm == "FROC":
                if n_marks and no_lesion:
                    raise ReadingStateError(f"Case {ctx.case_code} has {n_marks} mark(s); delete them before declaring that it has no lesion.")
                if not n_marks and not no_lesion:
                    raise ReadingStateError(f"Case {ctx.case_code} has no marks: confirm that it has no lesion (no_lesion=True) or add marks.")
            elif read.case_rating is None:
                raise ReadingStateError(f"Case {ctx.case_code} has no rating yet: rate it before finishing (set_case_rating).")
            now = self._clock()
            if reading_time_s is None:
                reading_time_s = max(0.0, (now - read.opened_at).total_seconds()) if read.opened_at else None
            elif not (reading_time_s >= 0):
                raise ReadingStateError(f"reading_time_s must be a non-negative number of seconds, got {reading_time_s!r}.")
            read.status = "finished"
            read.finished_at = now
            read.no_lesion = bool(no_lesion) if self._paradigm == "FROC" else False
            read.reading_time_s = reading_time_s
            s.flush()
            self._audit(
                s, "FINISH_CASE", "case_read", read.id, case=ctx.case_code, n_marks=n_marks, no_lesion=read.no_lesion, reading_time_s=reading_time_s
            )
            if self._next_read_id(s, read.session_id) is None:
                rs = s.get(ReadingSession, read.session_id)
                assert rs is not None
                rs.status = "closed"
                rs.closed_at = now
                s.flush()
                self._audit(s, "CLOSE_SESSION", "reading_session", rs.id, session_index=rs.session_index)
            return self._case_view(s, case_read_id)

    # ------------------------------------------------------------------ training
    def training_feedback(self, case_read_id: int) -> TrainingFeedback:
        """After a *training* case is finished: its truth lesions and how each of the reader's marks scored.

        Refused for study cases: their truth is never shown to readers.
        """
        from .models import Lesion
        from .scoring import AcceptanceRule, MarkToScore, TruthLesion, score_marks

        with self._db.snapshot() as s:
            ctx = self._context(s, case_read_id)
            case = s.get(StudyCase, ctx.case_id)
            assert case is not None
            if not case.is_training:
                raise NotFoundError(f"Case {case.code} is a study case; feedback on the truth is given for training cases only.")
            if ctx.read_status != "finished":
                raise ReadingStateError(f"Finish training case {case.code} first; feedback is shown afterwards.")
            study = s.get(Study, self._study_id)
            assert study is not None
            lesions = list(s.scalars(select(Lesion).where(Lesion.case_id == case.id).order_by(Lesion.number)))
            truth = [TruthLesion(case.code, les.code, les.center_mm, les.radius_mm, les.weight, les.label_value) for les in lesions]
            marks = self._marks(s, case_read_id)
            rule = AcceptanceRule(study.acceptance_rule, study.acceptance_radius_mm)  # type: ignore[arg-type]
            if rule.kind == "extent" and any(les.label_map_path for les in lesions):
                from .exchange import load_label_maps

                label_maps = load_label_maps(lesions, case.code)
            else:
                label_maps = None
            result = score_marks([MarkToScore(m.id, "t", "r", case.code, m.point_mm, m.rating) for m in marks], truth, rule, label_maps=label_maps)
            return TrainingFeedback(
                case_read_id=case_read_id,
                case_code=case.code,
                lesions=tuple(
                    {"lesion": les.code, "center_mm": les.center_mm, "radius_mm": les.radius_mm, "type": les.lesion_type, "location": les.location}
                    for les in lesions
                ),
                marks=tuple(
                    {"mark_id": sc.mark.mark_id, "rating": sc.mark.rating, "outcome": sc.outcome, "lesion": sc.lesion_id} for sc in result.scores
                ),
            )
