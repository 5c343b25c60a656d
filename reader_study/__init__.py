"""Reader studies: studies, readers, reading design, marks and scoring, in a real database.

The third stage of the platform's data flow (cases → detector → reader_study → analysis). It
keeps every reading safe (each mark saved at once, idempotently, never overwritten; an
append-only audit log; truth and design frozen by a content-hashed lock) and makes the design
that statisticians and regulators expect — multi-reader multi-case, fully crossed,
counterbalanced crossover with washout, or sequential reading — the easy path.

Databases: SQLite (embedded default, WAL) or PostgreSQL (multi-site) — :func:`init_db`.
Documentation: ``docs/reader-study.md``.

This package is the study *data layer*; beside it, not part of it (nothing here imports them):
:mod:`reader_study.simulation` (simulated readers that read the images), :mod:`reader_study.harness`
(a throw-away PostgreSQL server, tiny synthetic case lists and the mark-server load test, for
tests and benchmarks) and :mod:`reader_study.cli` (``tsct study``).

Public API, by domain
---------------------
Database
    ``Database``, ``init_db``, ``open_db``, ``default_database_url``: engines and short
    transactions (``db.transaction()``, ``db.snapshot()``); schema by Alembic.
Studies (the coordinator's work; functions take a Session in the caller's transaction)
    ``create_study``, ``add_readers``, ``make_design``, ``lock_study``, ``open_study``,
    ``close_study``, ``study_status`` …; designs as pure data (``plan_design``, ``DesignPlan``,
    ``BalanceReport``); rating scales; the study's detector folder; the audit log.
Reading
    ``ReadingService`` and its views: what a reader's workstation may do, bound to one reader;
    no access to truth or others' marks.
Scoring and exchange
    Pure scoring of marks against truth (``score_marks``, ``AcceptanceRule``, ``TruthLesion``);
    scored tidy records (``study_records``, ``StudyRecords.to_observer_data()`` for
    :mod:`analysis`), exports (JAFROC Excel, iMRMC, CSV), importing marks, consistent backups.
Accounts and web sessions
    Log-ins with argon2 password hashes and roles, throttling, the app's web sessions.
Errors
    ``ReaderStudyError`` and its subclasses (``reader_study.errors.__all__``): every refusal,
    with what to fix.
"""

# database ---------------------------------------------------------------------------------------
# errors: every refusal is public (the names are reader_study.errors.__all__) ----------------------------
from . import errors as _errors

# accounts and web sessions ----------------------------------------------------------------------------
from .accounts import (
    LOCAL_CLIENT,
    THROTTLE,
    AccountInfo,
    LoginResult,
    ThrottlePolicy,
    change_password,
    check_login,
    create_account,
    find_account,
    list_accounts,
    login,
    recent_login_attempts,
    reset_password,
    set_account_active,
    unlock_account,
)
from .audit import audit_frame
from .backup import BackupResult, backup_database
from .coordinator import (
    add_readers,
    close_study,
    create_study,
    get_study,
    list_studies,
    load_design,
    make_design,
    open_study,
    study_readers,
    waive_washout,
)
from .db import Database, default_database_url, init_db, open_db
from .design import BalanceReport, DesignPlan, PlannedRead, plan_design
from .detector_folder import detector_dir_of, set_detector_dir
from .errors import *  # noqa: F403
from .exchange import ExportError, ExportResult, ImportResult, StudyRecords, export_study, import_marks, study_records
from .lock import LockVerification, lock_study, verify_lock, verify_study
from .models import RATING_SCALES, RatingScale

# reading: what a reader's workstation may do ------------------------------------------------------
from .reading import CaseView, GridInfo, MarkView, ReadingService, SessionView, TrainingFeedback, WorklistItem

# scoring and exchange -------------------------------------------------------------------------------
from .scoring import AcceptanceRule, MarkScore, MarkToScore, ScoringError, ScoringResult, TruthLesion, roc_ratings, score_marks
from .status import StudyStatus, study_status

# studies: inputs, creation, design, lock, state, progress, rating scales, detector folder, audit log
from .study_inputs import DEFAULT_TREATMENTS, ReaderSpec, TreatmentSpec, parse_treatment, read_readers_file
from .websessions import (
    LiveSession,
    create_web_session,
    end_account_sessions,
    end_web_session,
    list_web_sessions,
    lookup_web_session,
    revoke_web_session,
)

__all__ = [
    # database
    "Database",
    "default_database_url",
    "init_db",
    "open_db",
    # studies
    "DEFAULT_TREATMENTS",
    "LockVerification",
    "ReaderSpec",
    "StudyStatus",
    "TreatmentSpec",
    "add_readers",
    "close_study",
    "create_study",
    "get_study",
    "list_studies",
    "load_design",
    "lock_study",
    "make_design",
    "open_study",
    "parse_treatment",
    "read_readers_file",
    "study_readers",
    "study_status",
    "verify_lock",
    "verify_study",
    "waive_washout",
    "BalanceReport",
    "DesignPlan",
    "PlannedRead",
    "plan_design",
    "RATING_SCALES",
    "RatingScale",
    "detector_dir_of",
    "set_detector_dir",
    "audit_frame",
    # reading
    "CaseView",
    "GridInfo",
    "MarkView",
    "ReadingService",
    "SessionView",
    "TrainingFeedback",
    "WorklistItem",
    # scoring and exchange
    "AcceptanceRule",
    "MarkScore",
    "MarkToScore",
    "ScoringError",
    "ScoringResult",
    "TruthLesion",
    "roc_ratings",
    "score_marks",
    "BackupResult",
    "ExportError",
    "ExportResult",
    "ImportResult",
    "StudyRecords",
    "backup_database",
    "export_study",
    "import_marks",
    "study_records",
    # accounts and web sessions
    "LOCAL_CLIENT",
    "THROTTLE",
    "AccountInfo",
    "LoginResult",
    "ThrottlePolicy",
    "change_password",
    "check_login",
    "create_account",
    "find_account",
    "list_accounts",
    "login",
    "recent_login_attempts",
    "reset_password",
    "set_account_active",
    "unlock_account",
    "LiveSession",
    "create_web_session",
    "end_account_sessions",
    "end_web_session",
    "list_web_sessions",
    "lookup_web_session",
    "revoke_web_session",
]
__all__ += _errors.__all__
