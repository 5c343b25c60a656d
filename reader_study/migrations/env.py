"""Alembic environment for the reader-study schema.

Run programmatically by :func:`reader_study.db.init_db`, which passes an open connection in
``config.attributes["connection"]``. For command-line use (``alembic -c <ini> revision
--autogenerate``), the URL comes from ``sqlalchemy.url`` in the ini file or from
``$TSCT_DATABASE_URL``.
"""

from __future__ import annotations

from alembic import context

from reader_study.db import default_database_url, make_engine
from reader_study.models import Base

config = context.config
target_metadata = Base.metadata


def _configure_and_run(connection) -> None:  # noqa: ANN001
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters tables by copying them
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure_and_run(connection)
        return
    engine = make_engine(config.get_main_option("sqlalchemy.url") or default_database_url())
    with engine.begin() as connection:
        _configure_and_run(connection)
    engine.dispose()


if context.is_offline_mode():
    raise SystemExit("Offline (SQL script) migrations are not supported; run them against a database.")
run_migrations_online()
