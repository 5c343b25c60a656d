"""The lock's file manifest: ``study_file``, one row per file the lock protects.

Every exam file (prior and current; each file of a DICOM folder), every label map and every
detector output readers see, with its SHA-256, size and (for detector outputs) the model's name
and version. Rows are written in the transaction that locks the study; afterwards triggers refuse
any change (the same rule as the other truth and design tables).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-05 23:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_LOCKED_MESSAGE = "study is locked: truth and design are frozen"


def upgrade() -> None:
    op.create_table(
        "study_file",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=True),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("model_name", sa.String(length=200), nullable=False),
        sa.Column("model_version", sa.String(length=64), nullable=False),
        sa.CheckConstraint("role IN ('prior', 'current', 'label_map', 'detector')", name=op.f("ck_study_file_role")),
        sa.CheckConstraint("size_bytes >= 0", name=op.f("ck_study_file_size_bytes")),
        sa.ForeignKeyConstraint(["case_id"], ["study_case.id"], name=op.f("fk_study_file_case_id_study_case")),
        sa.ForeignKeyConstraint(["study_id"], ["study.id"], name=op.f("fk_study_file_study_id_study")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_study_file")),
    )
    op.create_index(op.f("ix_study_file_case_id"), "study_file", ["case_id"], unique=False)
    op.create_index(op.f("ix_study_file_study_id"), "study_file", ["study_id"], unique=False)
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        abort = "BEGIN SELECT RAISE(ABORT, '{msg}'); END"
        locked = "EXISTS (SELECT 1 FROM study WHERE id IN ({ids}) AND locked_at IS NOT NULL)"
        for verb, ids in (("INSERT", "NEW.study_id"), ("UPDATE", "OLD.study_id, NEW.study_id"), ("DELETE", "OLD.study_id")):
            op.execute(
                f"CREATE TRIGGER study_file_locked_{verb.lower()} BEFORE {verb} ON study_file WHEN {locked.format(ids=ids)} "
                + abort.format(msg=f"{_LOCKED_MESSAGE}: {verb} on study_file refused")
            )
    elif dialect == "postgresql":
        # tsct_refuse_if_study_locked() is installed by revision 0001.
        op.execute(
            "CREATE TRIGGER study_file_locked BEFORE INSERT OR UPDATE OR DELETE ON study_file "
            "FOR EACH ROW EXECUTE FUNCTION tsct_refuse_if_study_locked()"
        )


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for verb in ("insert", "update", "delete"):
            op.execute(f"DROP TRIGGER IF EXISTS study_file_locked_{verb}")
    elif dialect == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS study_file_locked ON study_file")
    op.drop_index(op.f("ix_study_file_study_id"), table_name="study_file")
    op.drop_index(op.f("ix_study_file_case_id"), table_name="study_file")
    op.drop_table("study_file")
