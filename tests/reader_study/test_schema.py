"""Schema: the migration builds exactly the models' schema; database-level guards hold for any SQL."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import insert, select, text, update
from sqlalchemy.exc import IntegrityError

from reader_study import AuditLogError, Database, SchemaVersionError, StudyLockedError, default_database_url, open_db
from reader_study.models import AuditEvent, Base, CaseRead, Lesion, Mark, Study, utcnow

from .conftest import make_study


def test_migration_creates_the_models_schema(db):
    with db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(context, Base.metadata)
    assert diff == [], f"migration and models differ: {diff}"
    from reader_study.db import _head_revision

    assert db.schema_revision() == _head_revision()


def test_sqlite_connections_use_wal_foreign_keys_and_busy_timeout(tmp_path, monkeypatch):
    monkeypatch.delenv("TSCT_SQLITE_SYNCHRONOUS", raising=False)
    db = Database(f"sqlite:///{tmp_path / 'x.sqlite3'}")
    with db.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
    db.dispose()
    monkeypatch.setenv("TSCT_SQLITE_SYNCHRONOUS", "normal")
    fast = Database(f"sqlite:///{tmp_path / 'x.sqlite3'}")
    with fast.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
    fast.dispose()
    monkeypatch.setenv("TSCT_SQLITE_SYNCHRONOUS", "OFF")
    with pytest.raises(ValueError, match="NORMAL, FULL or EXTRA"):
        Database(f"sqlite:///{tmp_path / 'x.sqlite3'}")


def test_default_url_comes_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("TSCT_DATABASE_URL", raising=False)
    monkeypatch.setenv("TSCT_DATA_DIR", str(tmp_path))
    assert default_database_url() == f"sqlite:///{tmp_path / 'reader-study.sqlite3'}"
    monkeypatch.setenv("TSCT_DATABASE_URL", "postgresql://u@h/db")
    assert default_database_url() == "postgresql://u@h/db"


def test_an_empty_database_is_refused_with_what_to_do(tmp_path):
    with pytest.raises(SchemaVersionError, match="init-db"):
        open_db(f"sqlite:///{tmp_path / 'empty.sqlite3'}")


def test_audit_log_is_append_only(db, study):
    with db.snapshot() as s:
        n_before = s.scalar(select(AuditEvent.id).order_by(AuditEvent.id.desc()).limit(1))
    # Through the ORM: refused before it reaches the database.
    with pytest.raises(AuditLogError, match="append-only"):
        with db.transaction() as s:
            event = s.scalar(select(AuditEvent).limit(1))
            event.action = "TAMPERED"
    with pytest.raises(AuditLogError):
        with db.transaction() as s:
            s.delete(s.scalar(select(AuditEvent).limit(1)))
    # Plain SQL: refused by the database's triggers.
    with pytest.raises(IntegrityError, match="append-only"):
        with db.transaction() as s:
            s.execute(update(AuditEvent).values(actor="someone else"))
    with pytest.raises(IntegrityError, match="append-only"):
        with db.transaction() as s:
            s.execute(text("DELETE FROM audit_event"))
    with db.snapshot() as s:
        assert s.scalar(select(AuditEvent.id).order_by(AuditEvent.id.desc()).limit(1)) == n_before
        assert s.scalar(select(AuditEvent.actor).where(AuditEvent.action == "TAMPERED")) is None


def test_locked_truth_and_design_refuse_plain_sql(db, study):
    # ORM: a clear error.
    with pytest.raises(StudyLockedError, match="locked"):
        with db.transaction() as s:
            lesion = s.scalar(select(Lesion).limit(1))
            lesion.radius_mm = 20.0
    with pytest.raises(StudyLockedError):
        with db.transaction() as s:
            st = s.scalar(select(Study))
            st.acceptance_radius_mm = 50.0
    # Any SQL: the triggers.
    for statement in (
        "UPDATE lesion SET center_x_mm = center_x_mm + 1",
        "DELETE FROM lesion",
        "UPDATE study SET acceptance_radius_mm = 50",
        "UPDATE study SET content_hash = 'x'",
        "UPDATE case_read SET order_index = order_index + 1000",
        "UPDATE study_case SET abnormal = NOT abnormal",
        "DELETE FROM study_reader",
        "UPDATE treatment SET overlays = ''",
    ):
        with pytest.raises(IntegrityError, match="locked"):
            with db.transaction() as s:
                s.execute(text(statement))
    # Status changes stay possible (open -> closed).
    with db.transaction() as s:
        s.execute(text("UPDATE study SET status = 'closed', closed_at = CURRENT_TIMESTAMP"))


def test_rating_outside_the_scale_is_refused_by_the_database(db, study):
    from reader_study import ReadingService

    svc = ReadingService(db, reader_id=study.reader_ids["Dr Ada"], study_code="S1")
    svc.open_session()
    item = svc.next_case()
    svc.open_case(item.case_read_id)
    mark = svc.save_mark(item.case_read_id, client_key="k", point_mm=(0, 0, 12), rating=3)
    for bad in (0, 6, 2.5):
        with pytest.raises(IntegrityError):
            with db.transaction() as s:
                s.execute(update(Mark).where(Mark.id == mark.mark_id).values(rating=bad))
    # A mark cannot move to another read or be physically deleted.
    with pytest.raises(IntegrityError):
        with db.transaction() as s:
            s.execute(update(Mark).where(Mark.id == mark.mark_id).values(x_mm=5.0))
    with pytest.raises(IntegrityError, match="never deleted"):
        with db.transaction() as s:
            s.execute(text("DELETE FROM mark"))


def test_marks_cannot_be_added_to_a_read_that_is_not_open(db, study):
    with db.snapshot() as s:
        read = s.scalar(select(CaseRead).where(CaseRead.status == "pending").limit(1))
        study_id = s.scalar(select(Study.id))
    with pytest.raises(IntegrityError, match="open case read"):
        with db.transaction() as s:
            s.execute(
                insert(Mark).values(
                    study_id=study_id,
                    rating_scale="1-5",
                    reader_id=read.reader_id,
                    case_read_id=read.id,
                    client_key="sneaky",
                    x_mm=0,
                    y_mm=0,
                    z_mm=0,
                    index_x=0,
                    index_y=0,
                    index_z=0,
                    rating=3,
                    source="app",
                    created_at=utcnow(),
                )
            )


def test_draft_study_can_be_changed(db, case_files):
    make_study(db, case_files, code="DRAFT", design="crossover", lock=False)
    with db.transaction() as s:
        lesion = s.scalar(select(Lesion).limit(1))
        lesion.radius_mm = 5.5
    with db.snapshot() as s:
        assert s.scalar(select(Lesion.radius_mm).where(Lesion.id == lesion.id)) == 5.5
