"""Alembic migrations of the reader-study schema (applied by :func:`reader_study.db.init_db`)."""
