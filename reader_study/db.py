"""The one place where database engines and sessions are made.

Two back ends, both real:

* **SQLite** (the embedded default; nothing to install): a file under the data directory, in
  WAL mode (readers never block the writer), with foreign keys on, a busy timeout, and
  ``synchronous=FULL`` so a saved mark survives a crash of the machine, not only of the process
  (``$TSCT_SQLITE_SYNCHRONOUS=NORMAL`` trades that for speed; see :func:`make_engine`).
  Write transactions start with ``BEGIN IMMEDIATE`` so two writers never deadlock on a lock
  upgrade; within one process, writes also queue on a lock, so waiting writers take turns in
  order instead of polling SQLite's busy handler.
* **PostgreSQL** for multi-site studies, by URL (``postgresql+psycopg://user:pw@host/db``).

The URL comes from the argument, else ``$TSCT_DATABASE_URL``, else
``sqlite:///$TSCT_DATA_DIR/reader-study.sqlite3`` (``./tsct-data`` when ``TSCT_DATA_DIR`` is unset).

Usage::

    db = init_db()                       # create or upgrade the schema (Alembic), then open
    with db.transaction() as session:    # one short write transaction, committed on success
        ...
    with db.snapshot() as session:       # a consistent read-only view (status, export)
        ...
"""

from __future__ import annotations

import glob
import os
import shutil
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from sqlalchemy import create_engine, event, inspect
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import Session, sessionmaker

from .errors import SchemaVersionError

__all__ = ["Database", "default_database_url", "make_engine", "init_db", "open_db", "find_postgres_bin", "SQLITE_BUSY_TIMEOUT_MS"]

DEFAULT_DB_FILENAME = "reader-study.sqlite3"
SQLITE_BUSY_TIMEOUT_MS = 30_000


def default_database_url() -> str:
    """``$TSCT_DATABASE_URL``, else a SQLite file under ``$TSCT_DATA_DIR`` (default ``./tsct-data``)."""
    url = os.environ.get("TSCT_DATABASE_URL", "").strip()
    if url:
        return url
    data_dir = Path(os.environ.get("TSCT_DATA_DIR", "tsct-data")).resolve()
    return f"sqlite:///{data_dir / DEFAULT_DB_FILENAME}"


def _normalise_url(url: str) -> str:
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def make_engine(url: str | None = None, *, echo: bool = False, sqlite_synchronous: str | None = None) -> Engine:
    """An engine for ``url`` with the settings this package relies on.

    Parameters
    ----------
    url : database URL; default :func:`default_database_url`. ``postgresql://`` URLs use psycopg 3.
    echo : log every SQL statement (debugging).
    sqlite_synchronous : SQLite ``PRAGMA synchronous``; default ``$TSCT_SQLITE_SYNCHRONOUS`` or
        ``FULL``. ``FULL`` makes every commit durable against power loss and operating-system
        crashes (one fsync per commit); ``NORMAL`` only against a crash of the application (in WAL
        mode a power loss may roll back the last commits, never corrupt the database), and is
        several times faster under heavy concurrent saving.
    """
    url = _normalise_url(url or default_database_url())
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database in ("", ":memory:") or database.startswith("file::memory:"):
            raise ValueError("An in-memory SQLite database cannot be shared between sessions; give a file path, e.g. sqlite:///study.sqlite3")
        Path(database).expanduser().resolve().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, echo=echo, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False})
        synchronous = (sqlite_synchronous or os.environ.get("TSCT_SQLITE_SYNCHRONOUS", "") or "FULL").strip().upper()
        if synchronous not in ("NORMAL", "FULL", "EXTRA"):
            raise ValueError(f"SQLite synchronous mode must be NORMAL, FULL or EXTRA (TSCT_SQLITE_SYNCHRONOUS), got {synchronous!r}")

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection, connection_record):  # noqa: ANN001
            # Take transaction control away from the sqlite3 module (it would BEGIN lazily and
            # DEFERRED); we emit BEGIN ourselves in the "begin" event below.
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute(f"PRAGMA synchronous={synchronous}")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn):  # noqa: ANN001
            read_only = conn.get_execution_options().get("tsct_read_only", False)
            conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

        return engine
    if parsed.get_backend_name() == "postgresql":
        return create_engine(url, echo=echo, pool_pre_ping=True, pool_size=10, max_overflow=20)
    raise ValueError(
        f"Unsupported database {parsed.get_backend_name()!r} in {parsed.render_as_string()}; use sqlite:///FILE or postgresql://USER@HOST/DB"
    )


class Database:
    """An engine plus the session factory for short transactions; create with :func:`init_db` or :func:`open_db`.

    Parameters
    ----------
    url : database URL (see :func:`make_engine`).
    engine : an existing engine made by :func:`make_engine` (then ``url`` is ignored).
    """

    def __init__(self, url: str | None = None, *, engine: Engine | None = None, sqlite_synchronous: str | None = None):
        self.engine = engine if engine is not None else make_engine(url, sqlite_synchronous=sqlite_synchronous)
        self.url = self.engine.url.render_as_string(hide_password=False)
        self.dialect = self.engine.dialect.name
        self.sessionmaker: sessionmaker[Session] = sessionmaker(self.engine, expire_on_commit=False)
        if self.dialect == "sqlite":
            snapshot_engine = self.engine.execution_options(tsct_read_only=True)
        else:
            snapshot_engine = self.engine.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
        self._snapshot_maker: sessionmaker[Session] = sessionmaker(snapshot_engine, expire_on_commit=False)
        # SQLite allows one writer at a time; threads of this process queue here in order rather
        # than sleeping in SQLite's busy handler (which backs off up to 100 ms per retry).
        self._write_lock = threading.Lock() if self.dialect == "sqlite" else None

    @property
    def safe_url(self) -> str:
        """The URL with any password hidden (for messages and logs)."""
        return self.engine.url.render_as_string(hide_password=True)

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session in one write transaction: committed when the block ends, rolled back on error."""
        if self._write_lock is not None:
            with self._write_lock:
                with self.sessionmaker.begin() as session:
                    yield session
        else:
            with self.sessionmaker.begin() as session:
                yield session

    @contextmanager
    def snapshot(self) -> Iterator[Session]:
        """A read-only session seeing one consistent state of the database (never commits)."""
        session = self._snapshot_maker()
        session.begin()
        try:
            yield session
        finally:
            session.close()  # rolls the read transaction back; loaded objects stay readable (detached)

    def schema_revision(self) -> str | None:
        """The Alembic revision the database is at (``None`` for an empty database)."""
        from alembic.runtime.migration import MigrationContext

        with self.engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    def check_schema(self) -> None:
        """Raise :class:`SchemaVersionError` unless the schema is at this version's head revision."""
        head = _head_revision()
        current = self.schema_revision()
        if current != head:
            if current is None and not inspect(self.engine).get_table_names():
                raise SchemaVersionError(
                    f"The database {self.safe_url} is empty. Create the schema with `tsct study init-db` (or reader_study.init_db())."
                )
            _refuse_unknown_revision(self.safe_url, current, head)
            raise SchemaVersionError(
                f"The database {self.safe_url} is at schema revision {current!r} but this version of TSCT needs {head!r}. "
                "Back it up (`tsct study backup`), then upgrade with `tsct study init-db`."
            )

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()

    def __repr__(self) -> str:
        return f"Database({self.safe_url})"


def _alembic_config(connection=None):  # noqa: ANN001, ANN202
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).with_name("migrations")))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def _refuse_unknown_revision(safe_url: str, current: str | None, head: str) -> None:
    """Refuse a database at a schema revision this version of TSCT does not know: it was written by
    a later version (or damaged). Upgrading cannot help and downgrading would lose data."""
    from alembic.script import ScriptDirectory

    if current is None:
        return
    known = {rev.revision for rev in ScriptDirectory.from_config(_alembic_config()).walk_revisions()}
    if current not in known:
        raise SchemaVersionError(
            f"The database {safe_url} is at schema revision {current!r}, which this version of TSCT does not know (its newest is {head!r}): "
            "it was made by a newer TSCT. Use that newer version, or restore a backup made with this one; nothing was changed."
        )


def _head_revision() -> str:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_alembic_config()).get_current_head()  # type: ignore[return-value]


def init_db(url: str | None = None, *, sqlite_synchronous: str | None = None) -> Database:
    """Create the schema, or upgrade it to this version (``alembic upgrade head``), and open the database."""
    from alembic import command

    db = Database(url, sqlite_synchronous=sqlite_synchronous)
    try:
        _refuse_unknown_revision(db.safe_url, db.schema_revision(), _head_revision())
        with db.engine.begin() as connection:
            command.upgrade(_alembic_config(connection), "head")
    except BaseException:
        db.dispose()  # close the connections, so no -wal/-shm file is left beside a refused database
        raise
    return db


def open_db(url: str | None = None, *, sqlite_synchronous: str | None = None) -> Database:
    """Open an existing database, refusing one whose schema is missing or out of date."""
    db = Database(url, sqlite_synchronous=sqlite_synchronous)
    try:
        db.check_schema()
    except BaseException:
        db.dispose()  # close the connections, so no -wal/-shm file is left beside a refused database
        raise
    return db


def find_postgres_bin() -> Path | None:
    """The folder of the PostgreSQL programs (``initdb``, ``pg_ctl``, ``pg_dump``; newest Debian version first), or ``None``.

    Backups of a PostgreSQL study (``pg_dump``) look there when the client is not on ``PATH``; the
    test harness's throw-away server (:mod:`reader_study.harness.postgres`) starts from there.
    """
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit() else 0, reverse=True
    )
    for folder in candidates:
        if Path(folder, "initdb").exists() and Path(folder, "pg_ctl").exists():
            return Path(folder)
    initdb = shutil.which("initdb")
    if initdb and shutil.which("pg_ctl"):
        return Path(os.path.realpath(initdb)).parent
    return None
