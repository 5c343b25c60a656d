"""Consistent backups of a study database while readers keep working (``tsct study backup``).

SQLite: the online backup API into a temporary file, checked (integrity check, row counts) and
renamed into place. PostgreSQL: ``pg_dump`` in custom format (the client found on ``PATH`` or
beside the server programs, :func:`reader_study.db.find_postgres_bin`). A backup never
overwrites anything but an earlier TSCT backup, and never the live database.
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from . import audit
from .db import Database
from .errors import ReaderStudyError
from .models import Mark
from .study_inputs import file_sha256

__all__ = ["BackupResult", "backup_database"]


@dataclass(frozen=True)
class BackupResult:
    """A backup: where, how big, its SHA-256, and what it holds (counted in the copy after writing)."""

    path: Path
    method: str
    size_bytes: int
    sha256: str
    n_marks: int | None
    counts: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        marks = f", {self.n_marks} marks" if self.n_marks is not None else ""
        held = ""
        if self.counts:
            held = "; checked after writing: " + ", ".join(f"{v} {k}" for k, v in self.counts.items())
        return f"Backup written to {self.path} ({self.method}, {self.size_bytes / 1e6:.1f} MB{marks}; sha256 {self.sha256[:16]}…){held}"


_BACKUP_TABLES = ("study", "study_case", "reader", "case_read", "mark", "audit_event", "account")


def _pg_tool(name: str) -> str:
    from .db import find_postgres_bin

    found = shutil.which(name)
    if found:
        return found
    folder = find_postgres_bin()
    if folder is not None and (folder / name).exists():
        return str(folder / name)
    raise ReaderStudyError(
        f"{name} was not found; install the PostgreSQL client programs (Debian package postgresql-client) to back up a PostgreSQL database."
    )


def _is_previous_backup(path: Path) -> bool:
    """Whether ``path`` is a TSCT backup: a SQLite file with this schema, or a pg_dump custom archive."""
    try:
        with path.open("rb") as handle:
            head = handle.read(16)
    except OSError:
        return False
    if head.startswith(b"PGDMP"):
        return True
    if not head.startswith(b"SQLite format 3"):
        return False
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            names = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        finally:
            con.close()
    except sqlite3.Error:
        return False
    return {"alembic_version", "study", "mark", "audit_event"} <= names


def _live_files(db: Database) -> list[Path]:
    """The live database's files (SQLite: the file and its journal, WAL and shared-memory files)."""
    if db.dialect != "sqlite":
        return []
    name = make_url(db.url).database
    if not name or name == ":memory:":
        return []
    live = Path(name).resolve()
    return [live] + [live.with_name(live.name + suffix) for suffix in ("-wal", "-shm", "-journal")]


def _check_backup_target(db: Database, dest: Path, force: bool) -> None:
    from tsct_files import OutputPathError, check_output_file

    if dest.is_dir():
        raise OutputPathError(f"--out {dest} is a folder; give the backup's file name, e.g. {dest / 'reader-study-backup.sqlite3'}.")
    resolved = dest.resolve()
    if resolved in _live_files(db):
        raise OutputPathError(f"--out {dest} is the live database (or one of its files); a backup must go to another file. Nothing was written.")
    check_output_file(dest, option="--out")
    if dest.exists():
        if not force:
            raise OutputPathError(f"--out {dest} already exists; give a new file name, or --force to replace it if it is an earlier backup.")
        if not _is_previous_backup(dest):
            raise OutputPathError(
                f"--out {dest} exists and is not a TSCT backup (a SQLite copy or pg_dump archive of a reader-study database); it is left alone even with --force. Give another file name."
            )


def _verify_sqlite_copy(path: Path) -> dict[str, int]:
    """Open a SQLite copy, run its integrity check, check the schema and count its rows; raises on any fault."""
    try:
        check = sqlite3.connect(f"file:{path}?mode=rw", uri=True)
    except sqlite3.Error as exc:
        raise ReaderStudyError(f"The backup copy cannot be opened ({exc}).") from None
    try:
        result = check.execute("PRAGMA integrity_check").fetchone()[0]
        if result != "ok":
            raise ReaderStudyError(f"The backup copy failed SQLite's integrity check ({result}); the database itself may be damaged.")
        names = {r[0] for r in check.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        missing = [t for t in ("alembic_version", *_BACKUP_TABLES) if t not in names]
        if missing:
            raise ReaderStudyError(f"The backup copy lacks table(s) {', '.join(missing)}; it is not a complete reader-study database.")
        counts = {t: int(check.execute(f"SELECT count(*) FROM {t}").fetchone()[0]) for t in _BACKUP_TABLES}  # noqa: S608 - fixed names
        check.execute("PRAGMA journal_mode=DELETE")
    finally:
        check.close()
    return counts


def backup_database(db: Database, dest: str | Path, *, actor: str = "coordinator", force: bool = False) -> BackupResult:
    """Write a consistent snapshot of the whole database to ``dest`` while readers keep working.

    Refused before anything is written when ``dest`` is the live database (or its WAL/journal),
    a folder, under a file, in a folder that cannot be written, or an existing file; with
    ``force`` an existing file is replaced only if it is itself a TSCT backup. The backup is
    written under a hidden temporary name beside ``dest`` and renamed when it has been checked,
    so a failed or killed backup never leaves a partial file under ``dest`` (a killed run's
    hidden ``.<name>.partial-<pid>-…`` file is removed by the next backup to the same name).

    SQLite: SQLite's online backup API copies the database as of one moment into a new SQLite
    file (open it like any database, or point ``TSCT_DATABASE_URL`` at it); the copy is opened,
    checked with ``PRAGMA integrity_check``, its schema checked and its rows counted.
    PostgreSQL: ``pg_dump --format=custom`` (one snapshot of the database); restore with
    ``pg_restore``. The archive's table of contents is checked with ``pg_restore --list``.
    """
    from tsct_files import OutputPathError, pause_point, remove_stale_partials, temporary_sibling

    dest = Path(dest)
    _check_backup_target(db, dest, force)
    dest.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(dest)  # hidden partial copies left by killed backups to the same name
    partial = temporary_sibling(dest)
    counts: dict[str, int] = {}
    try:
        if db.dialect == "sqlite":
            raw = db.engine.raw_connection()
            try:
                target = sqlite3.connect(str(partial))
                try:
                    raw.driver_connection.backup(target)  # type: ignore[union-attr]
                finally:
                    target.close()
            finally:
                raw.close()
            pause_point("backup-written")
            counts = _verify_sqlite_copy(partial)
            n_marks = counts["mark"]
            method = "sqlite online backup"
        else:
            url = make_url(db.url).set(drivername="postgresql")
            env = dict(os.environ)
            if url.password:
                env["PGPASSWORD"] = str(url.password)
            conninfo = url.set(password=None).render_as_string(hide_password=False)
            proc = subprocess.run(
                [_pg_tool("pg_dump"), "--format=custom", "--no-owner", f"--file={partial}", f"--dbname={conninfo}"],
                capture_output=True,
                text=True,
                env=env,
            )
            if proc.returncode != 0:
                raise ReaderStudyError(f"pg_dump failed: {proc.stderr.strip()}")
            pause_point("backup-written")
            listing = subprocess.run([_pg_tool("pg_restore"), "--list", str(partial)], capture_output=True, text=True)
            missing = [t for t in _BACKUP_TABLES if not re.search(rf"TABLE DATA public {t}( |$)", listing.stdout, re.MULTILINE)]
            if listing.returncode != 0 or missing:
                raise ReaderStudyError(
                    f"The backup archive could not be read back with pg_restore --list ({listing.stderr.strip() or 'no data for ' + ', '.join(missing)})."
                )
            with db.snapshot() as s:
                n_marks = s.scalar(select(func.count()).select_from(Mark))
            method = "pg_dump custom format"
        with partial.open("rb+") as handle:
            os.fsync(handle.fileno())
        if force:
            os.replace(partial, dest)
        else:
            # without --force, a file that appeared at dest while the backup ran (another backup to
            # the same name) is never replaced: link the finished copy in, which fails if dest exists
            appeared = OutputPathError(
                f"--out {dest} appeared while the backup was being written (another backup to the same name?); it was left alone and this backup discarded. Give a new file name."
            )
            try:
                os.link(partial, dest)
                partial.unlink()
            except FileExistsError:
                raise appeared from None
            except OSError:  # a file system without hard links: check, then rename
                if dest.exists():
                    raise appeared from None
                os.replace(partial, dest)
    except sqlite3.Error as exc:
        partial.unlink(missing_ok=True)
        raise ReaderStudyError(f"The backup to {dest} failed ({exc}); nothing was written.") from None
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    digest = file_sha256(dest)
    with db.transaction() as s:
        audit.record(s, actor=actor, action="BACKUP", entity="database", path=str(dest.resolve()), sha256=digest, method=method, n_marks=n_marks)
    return BackupResult(dest, method, dest.stat().st_size, digest, n_marks, counts)
