"""A throw-away PostgreSQL server for tests and benchmarks.

:class:`TemporaryPostgres` starts a private PostgreSQL cluster in a temporary folder, listening on
127.0.0.1 only (and a Unix socket in that folder), on a free port, with trust authentication for
local connections, and removes it again. It finds ``initdb``/``pg_ctl`` under
``/usr/lib/postgresql/*/bin`` (Debian's ``postgresql`` package) or on ``PATH``. PostgreSQL refuses
to run as root, so when run as root the cluster runs as the ``postgres`` system user (created by
the Debian package) through ``runuser``.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

from ..db import find_postgres_bin

__all__ = ["TemporaryPostgres", "PostgresUnavailable"]


class PostgresUnavailable(RuntimeError):
    """A throw-away PostgreSQL server cannot be started here; the message says why and what to install."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class TemporaryPostgres:
    """A private PostgreSQL server for tests: ``start()``, ``create_database()``, ``stop()``.

    Use as a context manager. ``url(dbname)`` gives a SQLAlchemy URL (psycopg 3 driver).
    With ``durable=False`` (tests) the server skips flushing to disk (``fsync=off``); benchmarks
    pass ``durable=True`` so commits are as durable as in production.
    """

    def __init__(self, *, user: str = "tsct", durable: bool = False) -> None:
        self.user = user
        self.durable = durable
        self.bin_dir = find_postgres_bin()
        self.port: int | None = None
        self.root: Path | None = None
        self._run_as: list[str] = []

    # -------------------------------------------------------------------------------------
    def _cmd(self, *args: str) -> list[str]:
        return [*self._run_as, *args]

    def start(self) -> "TemporaryPostgres":
        if self.bin_dir is None:
            raise PostgresUnavailable(
                "PostgreSQL server programs (initdb, pg_ctl) were not found under /usr/lib/postgresql/*/bin or on PATH. "
                "Install the Debian package 'postgresql' (scripts/install.sh does so when run as root), "
                "or set TSCT_TEST_POSTGRES_URL to a server you may create databases on."
            )
        if os.geteuid() == 0:
            runuser = shutil.which("runuser")
            try:
                import pwd

                pwd.getpwnam("postgres")
            except KeyError:
                raise PostgresUnavailable(
                    "Running as root, but there is no 'postgres' system user to run the server as (PostgreSQL refuses to run as root); install the Debian package 'postgresql'."
                ) from None
            if runuser is None:
                raise PostgresUnavailable("Running as root, but 'runuser' is missing, so the server cannot be started as the 'postgres' user.")
            self._run_as = [runuser, "-u", "postgres", "--"]
        self.root = Path(tempfile.mkdtemp(prefix="tsct-pg-"))
        os.chmod(self.root, 0o700)
        if self._run_as:
            shutil.chown(self.root, "postgres", "postgres")
        data = self.root / "data"
        try:
            subprocess.run(
                self._cmd(str(self.bin_dir / "initdb"), "-D", str(data), "-U", self.user, "-A", "trust", "-E", "UTF8", "--no-sync", "--locale=C"),
                check=True,
                capture_output=True,
                text=True,
            )
        except subprocess.CalledProcessError as exc:
            self._cleanup()
            raise PostgresUnavailable(f"initdb failed: {exc.stderr.strip() or exc.stdout.strip()}") from None
        for attempt in range(5):
            self.port = _free_port()
            speed = "" if self.durable else " -c fsync=off -c full_page_writes=off -c synchronous_commit=off"
            options = f"-h 127.0.0.1 -p {self.port} -k {self.root} -c max_connections=200{speed}"
            result = subprocess.run(
                self._cmd(
                    str(self.bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(self.root / "server.log"), "-w", "-t", "60", "start"
                ),
                capture_output=True,
                text=True,
            )
            if result.returncode == 0:
                return self
            time.sleep(0.2 * (attempt + 1))
        log = (self.root / "server.log").read_text(errors="replace")[-2000:] if (self.root / "server.log").exists() else ""
        self._cleanup()
        raise PostgresUnavailable(f"pg_ctl start failed: {result.stderr.strip()}\n{log}")

    def url(self, dbname: str = "postgres") -> str:
        if self.port is None:
            raise RuntimeError("The server is not running; call start() first.")
        return f"postgresql+psycopg://{self.user}@127.0.0.1:{self.port}/{dbname}"

    def create_database(self, name: str | None = None, *, template: str | None = None) -> str:
        """Create a database (optionally a copy of ``template``) and return its URL."""
        import psycopg

        name = name or f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(f"host=127.0.0.1 port={self.port} user={self.user} dbname=postgres", autocommit=True) as conn:
            suffix = f' TEMPLATE "{template}"' if template else ""
            conn.execute(f'CREATE DATABASE "{name}"{suffix}')
        return self.url(name)

    def drop_database(self, name: str) -> None:
        import psycopg

        with psycopg.connect(f"host=127.0.0.1 port={self.port} user={self.user} dbname=postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self) -> None:
        if self.root is not None and self.bin_dir is not None and (self.root / "data").exists():
            subprocess.run(
                self._cmd(str(self.bin_dir / "pg_ctl"), "-D", str(self.root / "data"), "-m", "immediate", "-w", "stop"), capture_output=True
            )
        self._cleanup()

    def _cleanup(self) -> None:
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None

    def __enter__(self) -> "TemporaryPostgres":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
