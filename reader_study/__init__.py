"""Reader studies: studies, readers, reading design, marks and scoring, in a real database.

The third stage of the platform's data flow (cases → detector → reader_study → analysis). It
keeps every reading safe (each mark saved at once, idempotently, never overwritten; an
append-only audit log; truth and design frozen by a content-hashed lock) and makes the design
that statisticians and regulators expect — multi-reader multi-case, fully crossed,
counterbalanced crossover with washout, or sequential reading — the easy path.

Databases: SQLite (embedded default, WAL) or PostgreSQL (multi-site) — :func:`init_db`.
Documentation: ``docs/reader-study.md``.

Public API
----------
Database, init_db, open_db, default_database_url
    Engines and short transactions (``db.transaction()``, ``db.snapshot()``); schema by Alembic.
ReadingService and its views (SessionView, WorklistItem, CaseView, MarkView, GridInfo, TrainingFeedback)
    What a reader's workstation may do, bound to one reader; no access to truth or others' marks.
create_study, add_readers, make_design, load_design, lock_study, verify_lock, open_study,
close_study, waive_washout, study_status, list_studies, study_readers, read_readers_file, TreatmentSpec, ReaderSpec
    The coordinator's work (functions take a Session in the caller's transaction).
study_records, StudyRecords, export_study, import_marks, backup_database
    Scored tidy records (and ``StudyRecords.to_observer_data()`` for :mod:`analysis`), exports
    (JAFROC Excel, iMRMC, CSV), importing marks from other tools, consistent backups.
plan_design, DesignPlan, BalanceReport
    Designs as pure data, with a balance check.
score_marks, roc_ratings, AcceptanceRule, TruthLesion, MarkToScore, ScoringResult
    Pure scoring of marks against truth (LL/NL).
create_account, login, check_login, change_password, set_account_active, find_account,
list_accounts, reset_password, AccountInfo
    Log-ins with argon2 password hashes and roles.
ReaderStudyError and subclasses
    Every refusal, with what to fix.
"""

from .accounts import AccountInfo, LoginResult, change_password, check_login, create_account, find_account, list_accounts, login, reset_password, set_account_active
from .accounts import LOCAL_CLIENT, THROTTLE, ThrottlePolicy, recent_login_attempts, unlock_account
from .detector_folder import detector_dir_of, set_detector_dir
from .websessions import LiveSession, create_web_session, end_account_sessions, end_web_session, list_web_sessions, lookup_web_session, revoke_web_session
from .audit import audit_frame
from .coordinator import (
    DEFAULT_TREATMENTS,
    ReaderSpec,
    StudyStatus,
    TreatmentSpec,
    add_readers,
    close_study,
    create_study,
    get_study,
    list_studies,
    load_design,
    study_readers,
    lock_study,
    make_design,
    open_study,
    parse_treatment,
    read_readers_file,
    study_status,
    verify_lock,
    verify_study,
    LockVerification,
    waive_washout,
)
from .db import Database, default_database_url, init_db, open_db
from .design import BalanceReport, DesignPlan, PlannedRead, plan_design
from .errors import (
    AuditLogError,
    AuthenticationError,
    ClientKeyConflictError,
    DesignError,
    DuplicateReaderError,
    InputFileError,
    InputProblem,
    MarkPositionError,
    NotFoundError,
    RatingError,
    ReaderStudyError,
    ReadingStateError,
    SchemaVersionError,
    StudyLockedError,
    StudyStateError,
    WashoutError,
)
from .exchange import BackupResult, ExportError, ExportResult, ImportResult, StudyRecords, backup_database, export_study, import_marks, study_records
from .models import RATING_SCALES, RatingScale
from .reading import CaseView, GridInfo, MarkView, ReadingService, SessionView, TrainingFeedback, WorklistItem
from .scoring import AcceptanceRule, MarkScore, MarkToScore, ScoringError, ScoringResult, TruthLesion, roc_ratings, score_marks

__all__ = [
    # database
    "Database",
    "init_db",
    "open_db",
    "default_database_url",
    # reader-facing service
    "ReadingService",
    "SessionView",
    "WorklistItem",
    "CaseView",
    "MarkView",
    "GridInfo",
    "TrainingFeedback",
    # coordinator
    "TreatmentSpec",
    "ReaderSpec",
    "DEFAULT_TREATMENTS",
    "parse_treatment",
    "read_readers_file",
    "create_study",
    "add_readers",
    "make_design",
    "load_design",
    "lock_study",
    "verify_lock",
    "verify_study",
    "LockVerification",
    "open_study",
    "close_study",
    "waive_washout",
    "study_status",
    "StudyStatus",
    "list_studies",
    "study_readers",
    "get_study",
    "audit_frame",
    # exchange
    "study_records",
    "StudyRecords",
    "export_study",
    "ExportResult",
    "ExportError",
    "import_marks",
    "ImportResult",
    "backup_database",
    "BackupResult",
    # design
    "plan_design",
    "DesignPlan",
    "PlannedRead",
    "BalanceReport",
    # scoring
    "score_marks",
    "roc_ratings",
    "AcceptanceRule",
    "TruthLesion",
    "MarkToScore",
    "MarkScore",
    "ScoringResult",
    "ScoringError",
    # accounts
    "create_account",
    "login",
    "check_login",
    "unlock_account",
    "LOCAL_CLIENT",
    "recent_login_attempts",
    "ThrottlePolicy",
    "THROTTLE",
    "LiveSession",
    "create_web_session",
    "lookup_web_session",
    "end_web_session",
    "end_account_sessions",
    "revoke_web_session",
    "list_web_sessions",
    "set_detector_dir",
    "detector_dir_of",
    "change_password",
    "set_account_active",
    "find_account",
    "list_accounts",
    "reset_password",
    "AccountInfo",
    "LoginResult",
    # rating scales
    "RatingScale",
    "RATING_SCALES",
    # errors
    "ReaderStudyError",
    "NotFoundError",
    "StudyStateError",
    "StudyLockedError",
    "DesignError",
    "WashoutError",
    "RatingError",
    "MarkPositionError",
    "ClientKeyConflictError",
    "ReadingStateError",
    "DuplicateReaderError",
    "AuditLogError",
    "AuthenticationError",
    "SchemaVersionError",
    "InputFileError",
    "InputProblem",
]
