"""Errors of the reader-study package.

Every error a user or a calling program can cause derives from :class:`ReaderStudyError`, itself a
:class:`ValueError`, and says what was wrong and what to do about it. A failed operation never
leaves a partial change behind: each one runs in a single database transaction that is rolled
back on error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from cases import CaseListProblem

__all__ = [
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
    "InputProblem",
    "InputFileError",
]


class ReaderStudyError(ValueError):
    """Base class: a request the reader-study data layer refuses, with what to fix."""


class NotFoundError(ReaderStudyError):
    """A study, reader, case, case read or mark does not exist (or is not visible to the caller)."""


class StudyStateError(ReaderStudyError):
    """The study is not in the status the operation needs (e.g. saving a mark in a closed study)."""


class StudyLockedError(StudyStateError):
    """Truth and design are frozen by ``lock``; changing them afterwards is refused."""


class DesignError(ReaderStudyError):
    """A reading design cannot be made or is inconsistent."""


class WashoutError(ReaderStudyError):
    """A reading session cannot open yet: the previous one is not closed or the washout has not passed."""


class RatingError(ReaderStudyError):
    """A rating is outside the study's rating scale."""


class MarkPositionError(ReaderStudyError):
    """A mark lies outside the current exam's volume (or its position is malformed)."""


class ClientKeyConflictError(ReaderStudyError):
    """A client key was reused for a different mark (another case or position)."""


class ReadingStateError(ReaderStudyError):
    """The case read is not open for changes (not yet opened, already finished, or out of order)."""


class DuplicateReaderError(ReaderStudyError):
    """A reader name (or account user name) is already taken."""


class AuditLogError(ReaderStudyError):
    """An attempt to change or delete an audit event: the audit log is append-only."""


class AuthenticationError(ReaderStudyError):
    """A log-in failed (unknown user, wrong password or a disabled account)."""


class SchemaVersionError(ReaderStudyError):
    """The database schema is not the one this version of TSCT expects."""


@dataclass(frozen=True)
class InputProblem(CaseListProblem):
    """One problem in an input file (readers, marks to import): where (row number as the user sees
    it, 1 = header, ``None`` for the whole file), which column, and what to fix. The same record as
    a case list's problems, so every file-checking message reads alike."""


class InputFileError(ReaderStudyError):
    """An input file (readers, marks to import) has problems; ``problems`` lists every one."""

    def __init__(self, path: object, problems: Iterable[InputProblem], *, what: str = "file"):
        self.path = str(path)
        self.problems = list(problems)
        shown = self.problems[:50]
        lines = "\n".join(f"  - {p}" for p in shown)
        more = f"\n  … and {len(self.problems) - len(shown)} more" if len(self.problems) > len(shown) else ""
        super().__init__(f"The {what} {self.path} has {len(self.problems)} problem(s); nothing was changed:\n{lines}{more}")
