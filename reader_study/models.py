"""The reader-study data model (SQLAlchemy 2, typed declarative models).

One database holds any number of studies. The tables, in the order data flows through them:

``study``           paradigm (FROC/ROC), rating scale, acceptance rule, design, washout, status
                    (draft → open → closed), lock time and content hash
``treatment``       the reading conditions of a study ("unaided", "aided: subtraction + z-map")
``reader``          people who read (name, group such as board-certified or resident, role)
``study_reader``    a reader's part in one study: JAFROC reader code and counterbalancing group
``study_case``      cases from a case list (study and training cases) with the current exam's grid
``lesion``          truth lesions, in LPS mm of the current exam (frozen by ``lock``)
``reading_session`` one reader's session k of a study (washout between sessions)
``case_read``       one reading of one case in one treatment: order, opened/finished, time, "no lesion"
``mark``            a reader's mark: position in mm and voxels, rating, times, client key, soft delete
``audit_event``     append-only log of every change
``account``         log-ins: argon2 password hash and role, optionally linked to a reader
``web_session``     server-side browser sessions (hash of the cookie's token, expiry, revocation)
``login_attempt``   every log-in attempt (user name, client, outcome), for throttling and review

Conventions: every timestamp is timezone-aware UTC; positions are DICOM/ITK LPS millimetres of the
current exam, voxel indices are ITK ``(x, y, z)`` order of the same exam; enumerations are
stored as text under CHECK constraints so both SQLite and PostgreSQL enforce them. Ratings are
checked against the study's scale *in the database*: ``mark`` and ``case_read`` carry the study's
scale through a composite foreign key to ``study (id, rating_scale)``, and a CHECK constraint
ties the rating to that scale.

The schema is created and upgraded only by the Alembic migrations in
``reader_study/migrations`` (:func:`reader_study.db.init_db`); the migrations also install the
triggers that keep the audit log append-only and locked truth and design unchanged.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from dataclasses import dataclass
from typing import Any, Optional

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

__all__ = [
    "Base",
    "RatingScale",
    "RATING_SCALES",
    "PARADIGMS",
    "ACCEPTANCE_RULES",
    "DESIGNS",
    "STUDY_STATUSES",
    "SESSION_STATUSES",
    "READ_STATUSES",
    "ACCOUNT_ROLES",
    "MARK_SOURCES",
    "utcnow",
    "Study",
    "Treatment",
    "Reader",
    "StudyReader",
    "StudyCase",
    "StudyFile",
    "Lesion",
    "ReadingSession",
    "CaseRead",
    "Mark",
    "AuditEvent",
    "Account",
    "WebSessionRecord",
    "LoginAttempt",
]

PARADIGMS = ("FROC", "ROC")
ACCEPTANCE_RULES = ("radius", "extent")
DESIGNS = ("crossover", "sequential")
STUDY_STATUSES = ("draft", "open", "closed")
SESSION_STATUSES = ("scheduled", "open", "closed")
READ_STATUSES = ("pending", "open", "finished")
ACCOUNT_ROLES = ("reader", "coordinator", "statistician", "admin")
MARK_SOURCES = ("app", "import", "carried")


@dataclass(frozen=True)
class RatingScale:
    """A rating scale: its name, lowest and highest rating, and whether only integers are allowed.

    Ratings are positive-directed (higher = more confident that a lesion is there), as RJafroc and
    iMRMC expect. ``unmarked`` is the value a case without any mark gets when ROC ratings are
    derived for iMRMC: one below the lowest rating, so it ranks below every marked case.
    """

    name: str
    low: float
    high: float
    integer: bool

    @property
    def unmarked(self) -> float:
        return self.low - 1

    def check(self, rating: Any) -> float:
        """The rating as a float, or a :class:`~reader_study.errors.RatingError` saying what is allowed."""
        from .errors import RatingError

        try:
            value = float(rating)
        except (TypeError, ValueError):
            raise RatingError(f"Rating {rating!r} is not a number; {self.describe()}.") from None
        if not math.isfinite(value) or value < self.low or value > self.high:
            raise RatingError(f"Rating {rating!r} is outside the study's scale; {self.describe()}.")
        if self.integer and value != int(value):
            raise RatingError(f"Rating {rating!r} is not a whole number; {self.describe()}.")
        return value

    def describe(self) -> str:
        kind = "a whole number" if self.integer else "a number"
        return f"use {kind} from {self.low:g} (least confident) to {self.high:g} (most confident)"


RATING_SCALES: dict[str, RatingScale] = {
    "1-5": RatingScale("1-5", 1.0, 5.0, True),
    "0-100": RatingScale("0-100", 0.0, 100.0, False),
}

_RATING_CHECK = "(rating_scale = '1-5' AND {col} IN (1, 2, 3, 4, 5)) OR (rating_scale = '0-100' AND {col} >= 0 AND {col} <= 100)"


def utcnow() -> dt.datetime:
    """The current time, timezone-aware UTC (the only kind of time stored)."""
    return dt.datetime.now(dt.timezone.utc)


class UTCDateTime(TypeDecorator):
    """A timestamp stored in UTC and always returned timezone-aware (SQLite keeps no time zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"Naive datetime {value!r}: store timezone-aware UTC times (use reader_study.models.utcnow()).")
        value = value.astimezone(dt.timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.timezone.utc)
        return value.astimezone(dt.timezone.utc)


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base with deterministic constraint names (so migrations match the models)."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {dt.datetime: UTCDateTime()}


# ------------------------------------------------------------------------------------------------
class Study(Base):
    """A reader study: what is read, how it is rated and scored, and its design and status."""

    __tablename__ = "study"
    __table_args__ = (
        UniqueConstraint("id", "rating_scale"),  # target of the rating-scale foreign keys
        CheckConstraint(_in("paradigm", PARADIGMS), name="paradigm"),
        CheckConstraint(_in("rating_scale", tuple(RATING_SCALES)), name="rating_scale"),
        CheckConstraint(_in("acceptance_rule", ACCEPTANCE_RULES), name="acceptance_rule"),
        CheckConstraint(
            "acceptance_rule <> 'radius' OR (acceptance_radius_mm IS NOT NULL AND acceptance_radius_mm > 0)",
            name="acceptance_radius",
        ),
        CheckConstraint("design IS NULL OR " + _in("design", DESIGNS), name="design"),
        CheckConstraint("case_blocks IS NULL OR case_blocks >= 1", name="case_blocks"),
        CheckConstraint("washout_days >= 0", name="washout_days"),
        CheckConstraint(_in("status", STUDY_STATUSES), name="status"),
        CheckConstraint("(locked_at IS NULL) = (content_hash IS NULL)", name="lock_hash"),
        CheckConstraint("status = 'draft' OR locked_at IS NOT NULL", name="open_needs_lock"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    title: Mapped[str] = mapped_column(String(300), default="")
    paradigm: Mapped[str] = mapped_column(String(8))
    rating_scale: Mapped[str] = mapped_column(String(8))
    acceptance_rule: Mapped[str] = mapped_column(String(16))
    acceptance_radius_mm: Mapped[Optional[float]] = mapped_column(Float)
    design: Mapped[Optional[str]] = mapped_column(String(16))
    case_blocks: Mapped[Optional[int]] = mapped_column(Integer)
    carry_marks_forward: Mapped[bool] = mapped_column(Boolean, default=True)
    washout_days: Mapped[float] = mapped_column(Float, default=28.0)
    seed: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(8), default="draft")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    locked_at: Mapped[Optional[dt.datetime]]
    opened_at: Mapped[Optional[dt.datetime]]
    closed_at: Mapped[Optional[dt.datetime]]
    content_hash: Mapped[Optional[str]] = mapped_column(String(64))
    case_list_path: Mapped[str] = mapped_column(Text, default="")
    case_list_sha256: Mapped[str] = mapped_column(String(64), default="")
    tsct_version: Mapped[str] = mapped_column(String(32), default="")
    #: the detector's output folder for this study's cases (``<dir>/<case id>/``); empty: the app's default
    detector_dir: Mapped[str] = mapped_column(Text, default="", server_default="")

    treatments: Mapped[list["Treatment"]] = relationship(back_populates="study", order_by="Treatment.position")
    cases: Mapped[list["StudyCase"]] = relationship(back_populates="study", order_by="StudyCase.id")
    study_readers: Mapped[list["StudyReader"]] = relationship(back_populates="study", order_by="StudyReader.id")

    @property
    def scale(self) -> RatingScale:
        return RATING_SCALES[self.rating_scale]

    @property
    def is_locked(self) -> bool:
        return self.locked_at is not None

    def __repr__(self) -> str:
        return f"Study(code={self.code!r}, paradigm={self.paradigm}, scale={self.rating_scale}, status={self.status}, locked={self.is_locked})"


class Treatment(Base):
    """A reading condition (modality) of a study; ``overlays`` names what the viewer shows on top of the CT."""

    __tablename__ = "treatment"
    __table_args__ = (
        UniqueConstraint("study_id", "code"),
        UniqueConstraint("study_id", "position"),
        CheckConstraint("position >= 0", name="position"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id"), index=True)
    code: Mapped[str] = mapped_column(String(64))
    label: Mapped[str] = mapped_column(String(200), default="")
    overlays: Mapped[str] = mapped_column(String(200), default="")
    position: Mapped[int] = mapped_column(Integer)

    study: Mapped[Study] = relationship(back_populates="treatments")

    @property
    def overlay_names(self) -> tuple[str, ...]:
        return tuple(o for o in self.overlays.split(",") if o)

    def __repr__(self) -> str:
        return f"Treatment(code={self.code!r}, overlays={self.overlay_names})"


class Reader(Base):
    """A person who reads cases. Names are unique (case-insensitively, checked on insert)."""

    __tablename__ = "reader"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    group: Mapped[str] = mapped_column(String(100), default="")
    role: Mapped[str] = mapped_column(String(100), default="radiologist")
    experience_years: Mapped[Optional[float]] = mapped_column(Float)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    def __repr__(self) -> str:
        return f"Reader(name={self.name!r}, group={self.group!r}, role={self.role!r})"


class StudyReader(Base):
    """A reader's part in a study: the code used in exports and the counterbalancing group."""

    __tablename__ = "study_reader"
    __table_args__ = (
        UniqueConstraint("study_id", "reader_id"),
        UniqueConstraint("study_id", "reader_code"),
        CheckConstraint("sequence_group IS NULL OR sequence_group >= 0", name="sequence_group"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id"), index=True)
    reader_id: Mapped[int] = mapped_column(ForeignKey("reader.id"), index=True)
    reader_code: Mapped[str] = mapped_column(String(64))
    sequence_group: Mapped[Optional[int]] = mapped_column(Integer)

    study: Mapped[Study] = relationship(back_populates="study_readers")
    reader: Mapped[Reader] = relationship()

    def __repr__(self) -> str:
        return f"StudyReader(study_id={self.study_id}, reader_code={self.reader_code!r}, group={self.sequence_group})"


class StudyCase(Base):
    """A case of a study (or a training case), with the current exam's voxel grid for mark positions."""

    __tablename__ = "study_case"
    __table_args__ = (
        UniqueConstraint("study_id", "code"),
        UniqueConstraint("study_id", "jafroc_id"),
        CheckConstraint("size_x > 0 AND size_y > 0 AND size_z > 0", name="size"),
        CheckConstraint("spacing_x_mm > 0 AND spacing_y_mm > 0 AND spacing_z_mm > 0", name="spacing"),
        CheckConstraint("block IS NULL OR block >= 0", name="block"),
        CheckConstraint("NOT (is_training AND block IS NOT NULL)", name="training_no_block"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id"), index=True)
    code: Mapped[str] = mapped_column(String(128))
    jafroc_id: Mapped[int] = mapped_column(Integer)
    is_training: Mapped[bool] = mapped_column(Boolean, default=False)
    abnormal: Mapped[bool] = mapped_column(Boolean)
    block: Mapped[Optional[int]] = mapped_column(Integer)
    prior_path: Mapped[str] = mapped_column(Text)
    current_path: Mapped[str] = mapped_column(Text)
    prior_sha256: Mapped[str] = mapped_column(String(64), default="")
    current_sha256: Mapped[str] = mapped_column(String(64), default="")
    size_x: Mapped[int] = mapped_column(Integer)
    size_y: Mapped[int] = mapped_column(Integer)
    size_z: Mapped[int] = mapped_column(Integer)
    spacing_x_mm: Mapped[float] = mapped_column(Float)
    spacing_y_mm: Mapped[float] = mapped_column(Float)
    spacing_z_mm: Mapped[float] = mapped_column(Float)
    origin_x_mm: Mapped[float] = mapped_column(Float)
    origin_y_mm: Mapped[float] = mapped_column(Float)
    origin_z_mm: Mapped[float] = mapped_column(Float)
    direction_json: Mapped[str] = mapped_column(Text, default="[1,0,0,0,1,0,0,0,1]")

    study: Mapped[Study] = relationship(back_populates="cases")
    lesions: Mapped[list["Lesion"]] = relationship(back_populates="case", order_by="Lesion.number")

    @property
    def size(self) -> tuple[int, int, int]:
        """Grid size in ITK order ``(n_x, n_y, n_z)``."""
        return (self.size_x, self.size_y, self.size_z)

    @property
    def spacing_mm(self) -> tuple[float, float, float]:
        return (self.spacing_x_mm, self.spacing_y_mm, self.spacing_z_mm)

    @property
    def origin_mm(self) -> tuple[float, float, float]:
        return (self.origin_x_mm, self.origin_y_mm, self.origin_z_mm)

    @property
    def direction(self) -> tuple[float, ...]:
        return tuple(float(v) for v in json.loads(self.direction_json))

    def grid(self):  # -> cases.Grid
        """The current exam's voxel grid (:class:`cases.Grid`, no voxel data), read from the grid columns.

        Used to map marks between LPS millimetres and voxel indices with the same maths as
        every other package.
        """
        from cases import Grid

        return Grid(self.size, self.spacing_mm, self.origin_mm, self.direction)

    def __repr__(self) -> str:
        kind = "training" if self.is_training else ("abnormal" if self.abnormal else "normal")
        return f"StudyCase(code={self.code!r}, jafroc_id={self.jafroc_id}, {kind}, size={self.size})"


class StudyFile(Base):
    """One file whose content the lock protects: an exam file (prior or current; every file of a
    DICOM folder), a label map, or a detector output that readers see, with its SHA-256.

    Written by :func:`reader_study.lock_study` in the same transaction that locks the study, and
    re-hashed by :func:`reader_study.verify_study`, which names any file that changed by case and
    file. ``model_name``/``model_version`` record the detector model that made a detector output.
    """

    __tablename__ = "study_file"
    __table_args__ = (
        CheckConstraint("role IN ('prior', 'current', 'label_map', 'detector')", name="role"),
        CheckConstraint("size_bytes >= 0", name="size_bytes"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id"), index=True)
    case_id: Mapped[Optional[int]] = mapped_column(ForeignKey("study_case.id"), index=True)
    role: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(Text)
    path: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    model_name: Mapped[str] = mapped_column(String(200), default="")
    model_version: Mapped[str] = mapped_column(String(64), default="")

    def __repr__(self) -> str:
        return f"StudyFile(role={self.role}, name={self.name!r}, sha256={self.sha256[:12]}…)"


class Lesion(Base):
    """A truth lesion of an abnormal case: centre in LPS mm of the current exam and its extent."""

    __tablename__ = "lesion"
    __table_args__ = (
        UniqueConstraint("case_id", "code"),
        UniqueConstraint("case_id", "number"),
        CheckConstraint("number >= 1", name="number"),
        CheckConstraint("weight > 0 AND weight <= 1", name="weight"),
        CheckConstraint("radius_mm IS NULL OR radius_mm > 0", name="radius"),
        CheckConstraint("radius_mm IS NOT NULL OR label_map_path IS NOT NULL", name="extent"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id"), index=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("study_case.id"), index=True)
    code: Mapped[str] = mapped_column(String(128))
    number: Mapped[int] = mapped_column(Integer)
    center_x_mm: Mapped[float] = mapped_column(Float)
    center_y_mm: Mapped[float] = mapped_column(Float)
    center_z_mm: Mapped[float] = mapped_column(Float)
    radius_mm: Mapped[Optional[float]] = mapped_column(Float)
    label_map_path: Mapped[Optional[str]] = mapped_column(Text)
    label_map_sha256: Mapped[str] = mapped_column(String(64), default="")
    label_value: Mapped[Optional[int]] = mapped_column(Integer)
    weight: Mapped[float] = mapped_column(Float)
    lesion_type: Mapped[str] = mapped_column(String(32))
    location: Mapped[str] = mapped_column(String(32))

    case: Mapped[StudyCase] = relationship(back_populates="lesions")

    @property
    def center_mm(self) -> tuple[float, float, float]:
        return (self.center_x_mm, self.center_y_mm, self.center_z_mm)

    def __repr__(self) -> str:
        return f"Lesion(code={self.code!r}, number={self.number}, center_mm={self.center_mm}, radius_mm={self.radius_mm})"


class ReadingSession(Base):
    """Session ``session_index`` (1, 2, …) of one reader in one study; sessions are separated by the washout."""

    __tablename__ = "reading_session"
    __table_args__ = (
        UniqueConstraint("study_id", "reader_id", "session_index"),
        CheckConstraint("session_index >= 1", name="session_index"),
        CheckConstraint(_in("status", SESSION_STATUSES), name="status"),
        CheckConstraint("status <> 'open' OR opened_at IS NOT NULL", name="opened"),
        CheckConstraint("status <> 'closed' OR closed_at IS NOT NULL", name="closed"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id"), index=True)
    reader_id: Mapped[int] = mapped_column(ForeignKey("reader.id"), index=True)
    session_index: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(12), default="scheduled")
    opened_at: Mapped[Optional[dt.datetime]]
    closed_at: Mapped[Optional[dt.datetime]]
    washout_waived_at: Mapped[Optional[dt.datetime]]
    washout_waiver: Mapped[str] = mapped_column(Text, default="")

    def __repr__(self) -> str:
        return f"ReadingSession(study_id={self.study_id}, reader_id={self.reader_id}, index={self.session_index}, status={self.status})"


class CaseRead(Base):
    """One reading of one case in one treatment by one reader, at a fixed position of the session."""

    __tablename__ = "case_read"
    __table_args__ = (
        UniqueConstraint("session_id", "order_index"),
        UniqueConstraint("study_id", "reader_id", "case_id", "treatment_id"),
        ForeignKeyConstraint(["study_id", "rating_scale"], ["study.id", "study.rating_scale"]),
        CheckConstraint("order_index >= 0", name="order_index"),
        CheckConstraint(_in("status", READ_STATUSES), name="status"),
        CheckConstraint("status = 'pending' OR opened_at IS NOT NULL", name="opened"),
        CheckConstraint("status <> 'finished' OR finished_at IS NOT NULL", name="finished"),
        CheckConstraint("reading_time_s IS NULL OR reading_time_s >= 0", name="reading_time"),
        CheckConstraint("case_rating IS NULL OR " + _RATING_CHECK.format(col="case_rating"), name="case_rating_scale"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id"), index=True)
    rating_scale: Mapped[str] = mapped_column(String(8))
    session_id: Mapped[int] = mapped_column(ForeignKey("reading_session.id"), index=True)
    reader_id: Mapped[int] = mapped_column(ForeignKey("reader.id"), index=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("study_case.id"), index=True)
    treatment_id: Mapped[int] = mapped_column(ForeignKey("treatment.id"), index=True)
    order_index: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(12), default="pending")
    opened_at: Mapped[Optional[dt.datetime]]
    finished_at: Mapped[Optional[dt.datetime]]
    reading_time_s: Mapped[Optional[float]] = mapped_column(Float)
    no_lesion: Mapped[bool] = mapped_column(Boolean, default=False)
    case_rating: Mapped[Optional[float]] = mapped_column(Float)

    session: Mapped[ReadingSession] = relationship()
    case: Mapped[StudyCase] = relationship()
    treatment: Mapped[Treatment] = relationship()

    def __repr__(self) -> str:
        return f"CaseRead(id={self.id}, reader_id={self.reader_id}, case_id={self.case_id}, treatment_id={self.treatment_id}, order={self.order_index}, status={self.status})"


class Mark(Base):
    """A reader's mark on the current exam: where (mm and voxel), how confident, and its history.

    Never deleted: ``deleted_at`` marks a deletion, and the audit log keeps each earlier rating.
    ``client_key`` is chosen by the client (e.g. the click's time stamp or a UUID); a repeated
    save with the same key returns the existing mark instead of adding one.
    """

    __tablename__ = "mark"
    __table_args__ = (
        UniqueConstraint("reader_id", "client_key"),
        ForeignKeyConstraint(["study_id", "rating_scale"], ["study.id", "study.rating_scale"]),
        CheckConstraint(_RATING_CHECK.format(col="rating"), name="rating_scale"),
        CheckConstraint("index_x >= 0 AND index_y >= 0 AND index_z >= 0", name="index"),
        CheckConstraint(_in("source", MARK_SOURCES), name="source"),
        CheckConstraint("length(client_key) > 0", name="client_key"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id"), index=True)
    rating_scale: Mapped[str] = mapped_column(String(8))
    reader_id: Mapped[int] = mapped_column(ForeignKey("reader.id"), index=True)
    case_read_id: Mapped[int] = mapped_column(ForeignKey("case_read.id"), index=True)
    client_key: Mapped[str] = mapped_column(String(200))
    x_mm: Mapped[float] = mapped_column(Float)
    y_mm: Mapped[float] = mapped_column(Float)
    z_mm: Mapped[float] = mapped_column(Float)
    index_x: Mapped[int] = mapped_column(Integer)
    index_y: Mapped[int] = mapped_column(Integer)
    index_z: Mapped[int] = mapped_column(Integer)
    rating: Mapped[float] = mapped_column(Float)
    source: Mapped[str] = mapped_column(String(12), default="app")
    carried_from_id: Mapped[Optional[int]] = mapped_column(ForeignKey("mark.id"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    changed_at: Mapped[Optional[dt.datetime]]
    deleted_at: Mapped[Optional[dt.datetime]]

    @property
    def point_mm(self) -> tuple[float, float, float]:
        return (self.x_mm, self.y_mm, self.z_mm)

    def __repr__(self) -> str:
        gone = ", deleted" if self.deleted_at else ""
        return f"Mark(id={self.id}, case_read_id={self.case_read_id}, point_mm=({self.x_mm:.1f}, {self.y_mm:.1f}, {self.z_mm:.1f}), rating={self.rating:g}{gone})"


class AuditEvent(Base):
    """One entry of the append-only audit log: who did what to which record, before and after.

    Rows are only ever inserted: the ORM refuses to flush a changed or deleted event
    (:mod:`reader_study.audit`) and database triggers refuse UPDATE and DELETE statements.
    """

    __tablename__ = "audit_event"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)
    study_id: Mapped[Optional[int]] = mapped_column(ForeignKey("study.id"), index=True)
    actor: Mapped[str] = mapped_column(String(200))
    actor_reader_id: Mapped[Optional[int]] = mapped_column(ForeignKey("reader.id"))
    action: Mapped[str] = mapped_column(String(64))
    entity: Mapped[str] = mapped_column(String(64))
    entity_id: Mapped[Optional[int]] = mapped_column(Integer)
    detail_json: Mapped[str] = mapped_column(Text, default="{}")
    tsct_version: Mapped[str] = mapped_column(String(32), default="")

    @property
    def detail(self) -> dict[str, Any]:
        return json.loads(self.detail_json)

    def __repr__(self) -> str:
        return f"AuditEvent(id={self.id}, at={self.at:%Y-%m-%d %H:%M:%S}, actor={self.actor!r}, action={self.action}, {self.entity}#{self.entity_id})"


class Account(Base):
    """A log-in: user name, argon2 password hash and role; a reader's account links to the reader."""

    __tablename__ = "account"
    __table_args__ = (
        CheckConstraint(_in("role", ACCOUNT_ROLES), name="role"),
        CheckConstraint("role <> 'reader' OR reader_id IS NOT NULL", name="reader_link"),
        CheckConstraint("failed_logins >= 0", name="failed_logins"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(100), unique=True)
    password_hash: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(16))
    reader_id: Mapped[Optional[int]] = mapped_column(ForeignKey("reader.id"), unique=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    must_change_password: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    password_changed_at: Mapped[Optional[dt.datetime]]
    last_login_at: Mapped[Optional[dt.datetime]]
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    #: no log-in is accepted before this time (after too many failed attempts); ``None``: not locked
    locked_until: Mapped[Optional[dt.datetime]]
    last_failed_login_at: Mapped[Optional[dt.datetime]]

    def __repr__(self) -> str:
        return f"Account(username={self.username!r}, role={self.role}, reader_id={self.reader_id}, active={self.active})"


class WebSessionRecord(Base):
    """A logged-in browser: only the SHA-256 of the cookie's token is kept; ends at log-out, expiry or revocation."""

    __tablename__ = "web_session"
    __table_args__ = (CheckConstraint(_in("method", ("password", "oidc")), name="method"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("account.id"), index=True)
    method: Mapped[str] = mapped_column(String(16), default="password")
    client: Mapped[str] = mapped_column(String(100), default="")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime]
    ended_at: Mapped[Optional[dt.datetime]]
    #: why it ended: "logout", "revoked by <user>", "account disabled", "password changed"
    end_reason: Mapped[str] = mapped_column(String(200), default="")


class LoginAttempt(Base):
    """One log-in attempt: who (the user name as typed, lower case), from which client, and the outcome."""

    __tablename__ = "login_attempt"
    __table_args__ = (CheckConstraint(_in("outcome", ("ok", "failed", "throttled")), name="outcome"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)
    username: Mapped[str] = mapped_column(String(200), index=True)
    account_id: Mapped[Optional[int]] = mapped_column(ForeignKey("account.id"))
    client: Mapped[str] = mapped_column(String(100), default="", index=True)
    outcome: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(String(200), default="")


# ------------------------------------------------------------------------------------------------
# ORM-level guards. The database triggers installed by the migrations enforce the same rules for
# any SQL; these give a clear error before a flush reaches the database.

from sqlalchemy import event, inspect, select  # noqa: E402

#: Columns of rows that make up the design; frozen once the study is locked.
_FROZEN_COLUMNS: dict[type, tuple[str, ...] | None] = {
    Treatment: None,  # None: every column
    StudyCase: None,
    Lesion: None,
    StudyReader: None,
    ReadingSession: ("study_id", "reader_id", "session_index"),
    CaseRead: ("study_id", "session_id", "reader_id", "case_id", "treatment_id", "order_index", "rating_scale"),
    StudyFile: None,
}

_FROZEN_STUDY_COLUMNS = (
    "code",
    "paradigm",
    "rating_scale",
    "acceptance_rule",
    "acceptance_radius_mm",
    "design",
    "case_blocks",
    "carry_marks_forward",
    "washout_days",
    "seed",
    "locked_at",
    "content_hash",
    "case_list_sha256",
)


def _refuse_audit_change(mapper: Any, connection: Any, target: AuditEvent) -> None:
    from .errors import AuditLogError

    raise AuditLogError(
        f"Audit event {target.id} cannot be changed or deleted: the audit log is append-only. Record a new event that corrects it instead."
    )


event.listen(AuditEvent, "before_update", _refuse_audit_change)
event.listen(AuditEvent, "before_delete", _refuse_audit_change)


def _locked(connection: Any, study_id: int | None) -> bool:
    if study_id is None:
        return False
    locked_at = connection.execute(select(Study.__table__.c.locked_at).where(Study.__table__.c.id == study_id)).scalar()
    return locked_at is not None


def _guard_frozen(operation: str):
    def guard(mapper: Any, connection: Any, target: Any) -> None:
        columns = _FROZEN_COLUMNS[type(target)]
        if operation == "update":
            state = inspect(target)
            names = columns or tuple(a.key for a in mapper.column_attrs)
            changed = [n for n in names if state.attrs[n].history.has_changes()]
            if not changed:
                return
        else:
            changed = []
        if _locked(connection, target.study_id):
            from .errors import StudyLockedError

            what = f" (columns {', '.join(changed)})" if changed else ""
            raise StudyLockedError(
                f"Cannot {operation} {type(target).__name__}{what}: the study's truth and design were locked. "
                "A locked study is frozen so the analysis matches what was pre-specified; create a new study "
                "to change cases, lesions, readers or the design."
            )

    return guard


for _cls in _FROZEN_COLUMNS:
    for _op in ("insert", "update", "delete"):
        event.listen(_cls, f"before_{_op}", _guard_frozen(_op))


def _guard_study(mapper: Any, connection: Any, target: Study) -> None:
    state = inspect(target)
    changed = [n for n in _FROZEN_STUDY_COLUMNS if state.attrs[n].history.has_changes()]
    if not changed:
        return
    if _locked(connection, target.id):  # the row in the database still holds the value before this flush
        from .errors import StudyLockedError

        raise StudyLockedError(
            f"Cannot change {', '.join(changed)} of study {target.code!r}: it was locked at {target.locked_at}. "
            "These settings are part of the pre-specified analysis; create a new study to change them."
        )


event.listen(Study, "before_update", _guard_study)
