"""Initial reader-study schema: studies, readers, cases and truth, design, marks, audit log, accounts.

Besides the tables, this revision installs triggers (SQLite and PostgreSQL) that enforce, for any
SQL and not only through the ORM:

* the audit log is append-only (UPDATE, DELETE and TRUNCATE refused);
* once a study is locked, its truth and design rows (treatments, cases, lesions, study readers,
  reading sessions' and case reads' design columns) and its frozen settings cannot change;
* marks are only added or changed while their case read is open; identity and position never
  change; a deleted mark stays deleted; marks are never deleted physically;
* a finished case read cannot change.

The trigger SQL is written out here (not imported) so that this revision stays what it was.

Revision ID: 0001
Revises: (none)
Create Date: 2026-11-24 21:47:52.015381
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "reader",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("group", sa.String(length=100), nullable=False),
        sa.Column("role", sa.String(length=100), nullable=False),
        sa.Column("experience_years", sa.Float(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reader")),
        sa.UniqueConstraint("name", name=op.f("uq_reader_name")),
    )
    op.create_table(
        "study",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("title", sa.String(length=300), nullable=False),
        sa.Column("paradigm", sa.String(length=8), nullable=False),
        sa.Column("rating_scale", sa.String(length=8), nullable=False),
        sa.Column("acceptance_rule", sa.String(length=16), nullable=False),
        sa.Column("acceptance_radius_mm", sa.Float(), nullable=True),
        sa.Column("design", sa.String(length=16), nullable=True),
        sa.Column("case_blocks", sa.Integer(), nullable=True),
        sa.Column("carry_marks_forward", sa.Boolean(), nullable=False),
        sa.Column("washout_days", sa.Float(), nullable=False),
        sa.Column("seed", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=8), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("locked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("content_hash", sa.String(length=64), nullable=True),
        sa.Column("case_list_path", sa.Text(), nullable=False),
        sa.Column("case_list_sha256", sa.String(length=64), nullable=False),
        sa.Column("tsct_version", sa.String(length=32), nullable=False),
        sa.CheckConstraint(
            "acceptance_rule <> 'radius' OR (acceptance_radius_mm IS NOT NULL AND acceptance_radius_mm > 0)", name=op.f("ck_study_acceptance_radius")
        ),
        sa.CheckConstraint("acceptance_rule IN ('radius', 'extent')", name=op.f("ck_study_acceptance_rule")),
        sa.CheckConstraint("design IS NULL OR design IN ('crossover', 'sequential')", name=op.f("ck_study_design")),
        sa.CheckConstraint("paradigm IN ('FROC', 'ROC')", name=op.f("ck_study_paradigm")),
        sa.CheckConstraint("rating_scale IN ('1-5', '0-100')", name=op.f("ck_study_rating_scale")),
        sa.CheckConstraint("status = 'draft' OR locked_at IS NOT NULL", name=op.f("ck_study_open_needs_lock")),
        sa.CheckConstraint("status IN ('draft', 'open', 'closed')", name=op.f("ck_study_status")),
        sa.CheckConstraint("(locked_at IS NULL) = (content_hash IS NULL)", name=op.f("ck_study_lock_hash")),
        sa.CheckConstraint("case_blocks IS NULL OR case_blocks >= 1", name=op.f("ck_study_case_blocks")),
        sa.CheckConstraint("washout_days >= 0", name=op.f("ck_study_washout_days")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_study")),
        sa.UniqueConstraint("code", name=op.f("uq_study_code")),
        sa.UniqueConstraint("id", "rating_scale", name=op.f("uq_study_id_rating_scale")),
    )
    op.create_table(
        "account",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("username", sa.String(length=100), nullable=False),
        sa.Column("password_hash", sa.String(length=200), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("reader_id", sa.Integer(), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("must_change_password", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("password_changed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_login_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("failed_logins", sa.Integer(), nullable=False),
        sa.CheckConstraint("role <> 'reader' OR reader_id IS NOT NULL", name=op.f("ck_account_reader_link")),
        sa.CheckConstraint("role IN ('reader', 'coordinator', 'statistician', 'admin')", name=op.f("ck_account_role")),
        sa.CheckConstraint("failed_logins >= 0", name=op.f("ck_account_failed_logins")),
        sa.ForeignKeyConstraint(["reader_id"], ["reader.id"], name=op.f("fk_account_reader_id_reader")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_account")),
        sa.UniqueConstraint("reader_id", name=op.f("uq_account_reader_id")),
        sa.UniqueConstraint("username", name=op.f("uq_account_username")),
    )
    op.create_table(
        "audit_event",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=True),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("actor_reader_id", sa.Integer(), nullable=True),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("entity", sa.String(length=64), nullable=False),
        sa.Column("entity_id", sa.Integer(), nullable=True),
        sa.Column("detail_json", sa.Text(), nullable=False),
        sa.Column("tsct_version", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(["actor_reader_id"], ["reader.id"], name=op.f("fk_audit_event_actor_reader_id_reader")),
        sa.ForeignKeyConstraint(["study_id"], ["study.id"], name=op.f("fk_audit_event_study_id_study")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_event")),
    )
    op.create_index(op.f("ix_audit_event_at"), "audit_event", ["at"], unique=False)
    op.create_index(op.f("ix_audit_event_study_id"), "audit_event", ["study_id"], unique=False)
    op.create_table(
        "reading_session",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("reader_id", sa.Integer(), nullable=False),
        sa.Column("session_index", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("washout_waived_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("washout_waiver", sa.Text(), nullable=False),
        sa.CheckConstraint("status <> 'closed' OR closed_at IS NOT NULL", name=op.f("ck_reading_session_closed")),
        sa.CheckConstraint("status <> 'open' OR opened_at IS NOT NULL", name=op.f("ck_reading_session_opened")),
        sa.CheckConstraint("status IN ('scheduled', 'open', 'closed')", name=op.f("ck_reading_session_status")),
        sa.CheckConstraint("session_index >= 1", name=op.f("ck_reading_session_session_index")),
        sa.ForeignKeyConstraint(["reader_id"], ["reader.id"], name=op.f("fk_reading_session_reader_id_reader")),
        sa.ForeignKeyConstraint(["study_id"], ["study.id"], name=op.f("fk_reading_session_study_id_study")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reading_session")),
        sa.UniqueConstraint("study_id", "reader_id", "session_index", name=op.f("uq_reading_session_study_id_reader_id_session_index")),
    )
    op.create_index(op.f("ix_reading_session_reader_id"), "reading_session", ["reader_id"], unique=False)
    op.create_index(op.f("ix_reading_session_study_id"), "reading_session", ["study_id"], unique=False)
    op.create_table(
        "study_case",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=128), nullable=False),
        sa.Column("jafroc_id", sa.Integer(), nullable=False),
        sa.Column("is_training", sa.Boolean(), nullable=False),
        sa.Column("abnormal", sa.Boolean(), nullable=False),
        sa.Column("block", sa.Integer(), nullable=True),
        sa.Column("prior_path", sa.Text(), nullable=False),
        sa.Column("current_path", sa.Text(), nullable=False),
        sa.Column("prior_sha256", sa.String(length=64), nullable=False),
        sa.Column("current_sha256", sa.String(length=64), nullable=False),
        sa.Column("size_x", sa.Integer(), nullable=False),
        sa.Column("size_y", sa.Integer(), nullable=False),
        sa.Column("size_z", sa.Integer(), nullable=False),
        sa.Column("spacing_x_mm", sa.Float(), nullable=False),
        sa.Column("spacing_y_mm", sa.Float(), nullable=False),
        sa.Column("spacing_z_mm", sa.Float(), nullable=False),
        sa.Column("origin_x_mm", sa.Float(), nullable=False),
        sa.Column("origin_y_mm", sa.Float(), nullable=False),
        sa.Column("origin_z_mm", sa.Float(), nullable=False),
        sa.Column("direction_json", sa.Text(), nullable=False),
        sa.CheckConstraint("NOT (is_training AND block IS NOT NULL)", name=op.f("ck_study_case_training_no_block")),
        sa.CheckConstraint("block IS NULL OR block >= 0", name=op.f("ck_study_case_block")),
        sa.CheckConstraint("size_x > 0 AND size_y > 0 AND size_z > 0", name=op.f("ck_study_case_size")),
        sa.CheckConstraint("spacing_x_mm > 0 AND spacing_y_mm > 0 AND spacing_z_mm > 0", name=op.f("ck_study_case_spacing")),
        sa.ForeignKeyConstraint(["study_id"], ["study.id"], name=op.f("fk_study_case_study_id_study")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_study_case")),
        sa.UniqueConstraint("study_id", "code", name=op.f("uq_study_case_study_id_code")),
        sa.UniqueConstraint("study_id", "jafroc_id", name=op.f("uq_study_case_study_id_jafroc_id")),
    )
    op.create_index(op.f("ix_study_case_study_id"), "study_case", ["study_id"], unique=False)
    op.create_table(
        "study_reader",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("reader_id", sa.Integer(), nullable=False),
        sa.Column("reader_code", sa.String(length=64), nullable=False),
        sa.Column("sequence_group", sa.Integer(), nullable=True),
        sa.CheckConstraint("sequence_group IS NULL OR sequence_group >= 0", name=op.f("ck_study_reader_sequence_group")),
        sa.ForeignKeyConstraint(["reader_id"], ["reader.id"], name=op.f("fk_study_reader_reader_id_reader")),
        sa.ForeignKeyConstraint(["study_id"], ["study.id"], name=op.f("fk_study_reader_study_id_study")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_study_reader")),
        sa.UniqueConstraint("study_id", "reader_code", name=op.f("uq_study_reader_study_id_reader_code")),
        sa.UniqueConstraint("study_id", "reader_id", name=op.f("uq_study_reader_study_id_reader_id")),
    )
    op.create_index(op.f("ix_study_reader_reader_id"), "study_reader", ["reader_id"], unique=False)
    op.create_index(op.f("ix_study_reader_study_id"), "study_reader", ["study_id"], unique=False)
    op.create_table(
        "treatment",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("label", sa.String(length=200), nullable=False),
        sa.Column("overlays", sa.String(length=200), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.CheckConstraint("position >= 0", name=op.f("ck_treatment_position")),
        sa.ForeignKeyConstraint(["study_id"], ["study.id"], name=op.f("fk_treatment_study_id_study")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_treatment")),
        sa.UniqueConstraint("study_id", "code", name=op.f("uq_treatment_study_id_code")),
        sa.UniqueConstraint("study_id", "position", name=op.f("uq_treatment_study_id_position")),
    )
    op.create_index(op.f("ix_treatment_study_id"), "treatment", ["study_id"], unique=False)
    op.create_table(
        "case_read",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("rating_scale", sa.String(length=8), nullable=False),
        sa.Column("session_id", sa.Integer(), nullable=False),
        sa.Column("reader_id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("treatment_id", sa.Integer(), nullable=False),
        sa.Column("order_index", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reading_time_s", sa.Float(), nullable=True),
        sa.Column("no_lesion", sa.Boolean(), nullable=False),
        sa.Column("case_rating", sa.Float(), nullable=True),
        sa.CheckConstraint(
            "case_rating IS NULL OR (rating_scale = '1-5' AND case_rating IN (1, 2, 3, 4, 5)) OR (rating_scale = '0-100' AND case_rating >= 0 AND case_rating <= 100)",
            name=op.f("ck_case_read_case_rating_scale"),
        ),
        sa.CheckConstraint("status <> 'finished' OR finished_at IS NOT NULL", name=op.f("ck_case_read_finished")),
        sa.CheckConstraint("status = 'pending' OR opened_at IS NOT NULL", name=op.f("ck_case_read_opened")),
        sa.CheckConstraint("status IN ('pending', 'open', 'finished')", name=op.f("ck_case_read_status")),
        sa.CheckConstraint("order_index >= 0", name=op.f("ck_case_read_order_index")),
        sa.CheckConstraint("reading_time_s IS NULL OR reading_time_s >= 0", name=op.f("ck_case_read_reading_time")),
        sa.ForeignKeyConstraint(["case_id"], ["study_case.id"], name=op.f("fk_case_read_case_id_study_case")),
        sa.ForeignKeyConstraint(["reader_id"], ["reader.id"], name=op.f("fk_case_read_reader_id_reader")),
        sa.ForeignKeyConstraint(["session_id"], ["reading_session.id"], name=op.f("fk_case_read_session_id_reading_session")),
        sa.ForeignKeyConstraint(
            ["study_id", "rating_scale"], ["study.id", "study.rating_scale"], name=op.f("fk_case_read_study_id_rating_scale_study")
        ),
        sa.ForeignKeyConstraint(["study_id"], ["study.id"], name=op.f("fk_case_read_study_id_study")),
        sa.ForeignKeyConstraint(["treatment_id"], ["treatment.id"], name=op.f("fk_case_read_treatment_id_treatment")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_case_read")),
        sa.UniqueConstraint("session_id", "order_index", name=op.f("uq_case_read_session_id_order_index")),
        sa.UniqueConstraint("study_id", "reader_id", "case_id", "treatment_id", name=op.f("uq_case_read_study_id_reader_id_case_id_treatment_id")),
    )
    op.create_index(op.f("ix_case_read_case_id"), "case_read", ["case_id"], unique=False)
    op.create_index(op.f("ix_case_read_reader_id"), "case_read", ["reader_id"], unique=False)
    op.create_index(op.f("ix_case_read_session_id"), "case_read", ["session_id"], unique=False)
    op.create_index(op.f("ix_case_read_study_id"), "case_read", ["study_id"], unique=False)
    op.create_index(op.f("ix_case_read_treatment_id"), "case_read", ["treatment_id"], unique=False)
    op.create_table(
        "lesion",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=128), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("center_x_mm", sa.Float(), nullable=False),
        sa.Column("center_y_mm", sa.Float(), nullable=False),
        sa.Column("center_z_mm", sa.Float(), nullable=False),
        sa.Column("radius_mm", sa.Float(), nullable=True),
        sa.Column("label_map_path", sa.Text(), nullable=True),
        sa.Column("label_map_sha256", sa.String(length=64), nullable=False),
        sa.Column("label_value", sa.Integer(), nullable=True),
        sa.Column("weight", sa.Float(), nullable=False),
        sa.Column("lesion_type", sa.String(length=32), nullable=False),
        sa.Column("location", sa.String(length=32), nullable=False),
        sa.CheckConstraint("number >= 1", name=op.f("ck_lesion_number")),
        sa.CheckConstraint("radius_mm IS NOT NULL OR label_map_path IS NOT NULL", name=op.f("ck_lesion_extent")),
        sa.CheckConstraint("radius_mm IS NULL OR radius_mm > 0", name=op.f("ck_lesion_radius")),
        sa.CheckConstraint("weight > 0 AND weight <= 1", name=op.f("ck_lesion_weight")),
        sa.ForeignKeyConstraint(["case_id"], ["study_case.id"], name=op.f("fk_lesion_case_id_study_case")),
        sa.ForeignKeyConstraint(["study_id"], ["study.id"], name=op.f("fk_lesion_study_id_study")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lesion")),
        sa.UniqueConstraint("case_id", "code", name=op.f("uq_lesion_case_id_code")),
        sa.UniqueConstraint("case_id", "number", name=op.f("uq_lesion_case_id_number")),
    )
    op.create_index(op.f("ix_lesion_case_id"), "lesion", ["case_id"], unique=False)
    op.create_index(op.f("ix_lesion_study_id"), "lesion", ["study_id"], unique=False)
    op.create_table(
        "mark",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("rating_scale", sa.String(length=8), nullable=False),
        sa.Column("reader_id", sa.Integer(), nullable=False),
        sa.Column("case_read_id", sa.Integer(), nullable=False),
        sa.Column("client_key", sa.String(length=200), nullable=False),
        sa.Column("x_mm", sa.Float(), nullable=False),
        sa.Column("y_mm", sa.Float(), nullable=False),
        sa.Column("z_mm", sa.Float(), nullable=False),
        sa.Column("index_x", sa.Integer(), nullable=False),
        sa.Column("index_y", sa.Integer(), nullable=False),
        sa.Column("index_z", sa.Integer(), nullable=False),
        sa.Column("rating", sa.Float(), nullable=False),
        sa.Column("source", sa.String(length=12), nullable=False),
        sa.Column("carried_from_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "(rating_scale = '1-5' AND rating IN (1, 2, 3, 4, 5)) OR (rating_scale = '0-100' AND rating >= 0 AND rating <= 100)",
            name=op.f("ck_mark_rating_scale"),
        ),
        sa.CheckConstraint("source IN ('app', 'import', 'carried')", name=op.f("ck_mark_source")),
        sa.CheckConstraint("index_x >= 0 AND index_y >= 0 AND index_z >= 0", name=op.f("ck_mark_index")),
        sa.CheckConstraint("length(client_key) > 0", name=op.f("ck_mark_client_key")),
        sa.ForeignKeyConstraint(["carried_from_id"], ["mark.id"], name=op.f("fk_mark_carried_from_id_mark")),
        sa.ForeignKeyConstraint(["case_read_id"], ["case_read.id"], name=op.f("fk_mark_case_read_id_case_read")),
        sa.ForeignKeyConstraint(["reader_id"], ["reader.id"], name=op.f("fk_mark_reader_id_reader")),
        sa.ForeignKeyConstraint(["study_id", "rating_scale"], ["study.id", "study.rating_scale"], name=op.f("fk_mark_study_id_rating_scale_study")),
        sa.ForeignKeyConstraint(["study_id"], ["study.id"], name=op.f("fk_mark_study_id_study")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mark")),
        sa.UniqueConstraint("reader_id", "client_key", name=op.f("uq_mark_reader_id_client_key")),
    )
    op.create_index(op.f("ix_mark_case_read_id"), "mark", ["case_read_id"], unique=False)
    op.create_index(op.f("ix_mark_reader_id"), "mark", ["reader_id"], unique=False)
    op.create_index(op.f("ix_mark_study_id"), "mark", ["study_id"], unique=False)
    _create_triggers()


def downgrade() -> None:
    _drop_triggers()
    op.drop_index(op.f("ix_mark_study_id"), table_name="mark")
    op.drop_index(op.f("ix_mark_reader_id"), table_name="mark")
    op.drop_index(op.f("ix_mark_case_read_id"), table_name="mark")
    op.drop_table("mark")
    op.drop_index(op.f("ix_lesion_study_id"), table_name="lesion")
    op.drop_index(op.f("ix_lesion_case_id"), table_name="lesion")
    op.drop_table("lesion")
    op.drop_index(op.f("ix_case_read_treatment_id"), table_name="case_read")
    op.drop_index(op.f("ix_case_read_study_id"), table_name="case_read")
    op.drop_index(op.f("ix_case_read_session_id"), table_name="case_read")
    op.drop_index(op.f("ix_case_read_reader_id"), table_name="case_read")
    op.drop_index(op.f("ix_case_read_case_id"), table_name="case_read")
    op.drop_table("case_read")
    op.drop_index(op.f("ix_treatment_study_id"), table_name="treatment")
    op.drop_table("treatment")
    op.drop_index(op.f("ix_study_reader_study_id"), table_name="study_reader")
    op.drop_index(op.f("ix_study_reader_reader_id"), table_name="study_reader")
    op.drop_table("study_reader")
    op.drop_index(op.f("ix_study_case_study_id"), table_name="study_case")
    op.drop_table("study_case")
    op.drop_index(op.f("ix_reading_session_study_id"), table_name="reading_session")
    op.drop_index(op.f("ix_reading_session_reader_id"), table_name="reading_session")
    op.drop_table("reading_session")
    op.drop_index(op.f("ix_audit_event_study_id"), table_name="audit_event")
    op.drop_index(op.f("ix_audit_event_at"), table_name="audit_event")
    op.drop_table("audit_event")
    op.drop_table("account")
    op.drop_table("study")
    op.drop_table("reader")


# ------------------------------------------------------------------------------------------------
# Triggers
_LOCKED_MESSAGE = "study is locked: truth and design are frozen"

#: Tables whose rows are part of a study's truth or design, and the columns frozen by the lock
#: (None: the whole row).
_FROZEN = {
    "treatment": None,
    "study_case": None,
    "lesion": None,
    "study_reader": None,
    "reading_session": ("study_id", "reader_id", "session_index"),
    "case_read": ("study_id", "session_id", "reader_id", "case_id", "treatment_id", "order_index", "rating_scale"),
}
_STUDY_FROZEN = (
    "code",
    "paradigm",
    "rating_scale",
    "acceptance_rule",
    "acceptance_radius_mm",
    "design",
    "case_blocks",
    "carry_marks_forward",
    "washout_days",
    "seed",
    "locked_at",
    "content_hash",
    "case_list_sha256",
)
_MARK_FIXED = (
    "study_id",
    "rating_scale",
    "reader_id",
    "case_read_id",
    "client_key",
    "x_mm",
    "y_mm",
    "z_mm",
    "index_x",
    "index_y",
    "index_z",
    "source",
    "carried_from_id",
    "created_at",
)
_READ_FINAL = ("status", "opened_at", "finished_at", "reading_time_s", "no_lesion", "case_rating")


def _changed(columns, dialect: str) -> str:
    op_ = "IS NOT" if dialect == "sqlite" else "IS DISTINCT FROM"
    return " OR ".join(f"NEW.{c} {op_} OLD.{c}" for c in columns)


def _sqlite_triggers() -> list[str]:
    abort = "BEGIN SELECT RAISE(ABORT, '{msg}'); END"
    sql = [
        f"CREATE TRIGGER audit_event_no_update BEFORE UPDATE ON audit_event {abort.format(msg='audit_event is append-only: UPDATE refused')}",
        f"CREATE TRIGGER audit_event_no_delete BEFORE DELETE ON audit_event {abort.format(msg='audit_event is append-only: DELETE refused')}",
    ]
    locked = "EXISTS (SELECT 1 FROM study WHERE id IN ({ids}) AND locked_at IS NOT NULL)"
    for table, columns in _FROZEN.items():
        of = f" OF {', '.join(columns)}" if columns else ""
        sql += [
            f"CREATE TRIGGER {table}_locked_insert BEFORE INSERT ON {table} WHEN {locked.format(ids='NEW.study_id')} "
            + abort.format(msg=f"{_LOCKED_MESSAGE}: INSERT on {table} refused"),
            f"CREATE TRIGGER {table}_locked_update BEFORE UPDATE{of} ON {table} WHEN {locked.format(ids='OLD.study_id, NEW.study_id')} "
            + abort.format(msg=f"{_LOCKED_MESSAGE}: UPDATE on {table} refused"),
            f"CREATE TRIGGER {table}_locked_delete BEFORE DELETE ON {table} WHEN {locked.format(ids='OLD.study_id')} "
            + abort.format(msg=f"{_LOCKED_MESSAGE}: DELETE on {table} refused"),
        ]
    sql += [
        f"CREATE TRIGGER study_locked_update BEFORE UPDATE ON study WHEN OLD.locked_at IS NOT NULL AND ({_changed(_STUDY_FROZEN, 'sqlite')}) "
        + abort.format(msg=f"{_LOCKED_MESSAGE}: the settings of a locked study cannot change"),
        "CREATE TRIGGER study_locked_delete BEFORE DELETE ON study WHEN OLD.locked_at IS NOT NULL "
        + abort.format(msg=f"{_LOCKED_MESSAGE}: a locked study cannot be deleted"),
        "CREATE TRIGGER mark_insert_open_read BEFORE INSERT ON mark "
        "WHEN (SELECT status FROM case_read WHERE id = NEW.case_read_id) IS NOT 'open' "
        + abort.format(msg="marks can only be added to an open case read"),
        "CREATE TRIGGER mark_update_open_read BEFORE UPDATE ON mark "
        f"WHEN (SELECT status FROM case_read WHERE id = OLD.case_read_id) IS NOT 'open' OR OLD.deleted_at IS NOT NULL OR {_changed(_MARK_FIXED, 'sqlite')} "
        + abort.format(msg="a mark can change only its rating or be soft-deleted, only while its case read is open, and never after deletion"),
        "CREATE TRIGGER mark_no_delete BEFORE DELETE ON mark " + abort.format(msg="marks are never deleted; set deleted_at instead"),
        f"CREATE TRIGGER case_read_finished_update BEFORE UPDATE ON case_read WHEN OLD.status = 'finished' AND ({_changed(_READ_FINAL, 'sqlite')}) "
        + abort.format(msg="a finished case read cannot change"),
    ]
    return sql


def _postgresql_triggers() -> list[str]:
    def func(name: str, body: str) -> str:
        return f"CREATE OR REPLACE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $fn$\nBEGIN\n{body}\nEND\n$fn$"

    sql = [
        func("tsct_audit_append_only", "  RAISE EXCEPTION 'audit_event is append-only: % refused', TG_OP USING ERRCODE = 'restrict_violation';"),
        "CREATE TRIGGER audit_event_append_only BEFORE UPDATE OR DELETE ON audit_event FOR EACH ROW EXECUTE FUNCTION tsct_audit_append_only()",
        "CREATE TRIGGER audit_event_no_truncate BEFORE TRUNCATE ON audit_event FOR EACH STATEMENT EXECUTE FUNCTION tsct_audit_append_only()",
        func(
            "tsct_refuse_if_study_locked",
            "  IF EXISTS (SELECT 1 FROM study WHERE locked_at IS NOT NULL AND id IN (\n"
            "      CASE WHEN TG_OP <> 'INSERT' THEN OLD.study_id END, CASE WHEN TG_OP <> 'DELETE' THEN NEW.study_id END)) THEN\n"
            f"    RAISE EXCEPTION '{_LOCKED_MESSAGE}: % on % refused', TG_OP, TG_TABLE_NAME USING ERRCODE = 'restrict_violation';\n"
            "  END IF;\n"
            "  IF TG_OP = 'DELETE' THEN RETURN OLD; END IF;\n"
            "  RETURN NEW;",
        ),
    ]
    for table, columns in _FROZEN.items():
        of = f"UPDATE OF {', '.join(columns)}" if columns else "UPDATE"
        sql.append(
            f"CREATE TRIGGER {table}_locked BEFORE INSERT OR {of} OR DELETE ON {table} FOR EACH ROW EXECUTE FUNCTION tsct_refuse_if_study_locked()"
        )
    sql += [
        func(
            "tsct_study_frozen",
            "  IF TG_OP = 'DELETE' THEN\n"
            "    IF OLD.locked_at IS NOT NULL THEN\n"
            f"      RAISE EXCEPTION '{_LOCKED_MESSAGE}: a locked study cannot be deleted' USING ERRCODE = 'restrict_violation';\n"
            "    END IF;\n"
            "    RETURN OLD;\n"
            "  END IF;\n"
            f"  IF OLD.locked_at IS NOT NULL AND ({_changed(_STUDY_FROZEN, 'postgresql')}) THEN\n"
            f"    RAISE EXCEPTION '{_LOCKED_MESSAGE}: the settings of a locked study cannot change' USING ERRCODE = 'restrict_violation';\n"
            "  END IF;\n"
            "  RETURN NEW;",
        ),
        "CREATE TRIGGER study_frozen BEFORE UPDATE OR DELETE ON study FOR EACH ROW EXECUTE FUNCTION tsct_study_frozen()",
        func(
            "tsct_mark_guard",
            "  IF TG_OP = 'DELETE' THEN\n"
            "    RAISE EXCEPTION 'marks are never deleted; set deleted_at instead' USING ERRCODE = 'restrict_violation';\n"
            "  END IF;\n"
            "  IF TG_OP = 'INSERT' THEN\n"
            "    IF (SELECT status FROM case_read WHERE id = NEW.case_read_id) IS DISTINCT FROM 'open' THEN\n"
            "      RAISE EXCEPTION 'marks can only be added to an open case read' USING ERRCODE = 'restrict_violation';\n"
            "    END IF;\n"
            "    RETURN NEW;\n"
            "  END IF;\n"
            "  IF (SELECT status FROM case_read WHERE id = OLD.case_read_id) IS DISTINCT FROM 'open' OR OLD.deleted_at IS NOT NULL\n"
            f"     OR {_changed(_MARK_FIXED, 'postgresql')} THEN\n"
            "    RAISE EXCEPTION 'a mark can change only its rating or be soft-deleted, only while its case read is open, and never after deletion' USING ERRCODE = 'restrict_violation';\n"
            "  END IF;\n"
            "  RETURN NEW;",
        ),
        "CREATE TRIGGER mark_guard BEFORE INSERT OR UPDATE OR DELETE ON mark FOR EACH ROW EXECUTE FUNCTION tsct_mark_guard()",
        func(
            "tsct_case_read_finished",
            f"  IF OLD.status = 'finished' AND ({_changed(_READ_FINAL, 'postgresql')}) THEN\n"
            "    RAISE EXCEPTION 'a finished case read cannot change' USING ERRCODE = 'restrict_violation';\n"
            "  END IF;\n"
            "  RETURN NEW;",
        ),
        "CREATE TRIGGER case_read_finished BEFORE UPDATE ON case_read FOR EACH ROW EXECUTE FUNCTION tsct_case_read_finished()",
    ]
    return sql


def _create_triggers() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        statements = _sqlite_triggers()
    elif dialect == "postgresql":
        statements = _postgresql_triggers()
    else:
        raise RuntimeError(f"TSCT supports SQLite and PostgreSQL, not {dialect}")
    for statement in statements:
        op.execute(statement)


def _drop_triggers() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        names = [row[0] for row in bind.exec_driver_sql("SELECT name FROM sqlite_master WHERE type = 'trigger'")]
        for name in names:
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
    else:
        for table in ("audit_event", "study", "mark", "case_read", *_FROZEN):
            rows = bind.exec_driver_sql("SELECT tgname FROM pg_trigger WHERE NOT tgisinternal AND tgrelid = %(t)s::regclass", {"t": table})
            for (name,) in rows:
                op.execute(f'DROP TRIGGER IF EXISTS "{name}" ON {table}')
        for function in ("tsct_audit_append_only", "tsct_refuse_if_study_locked", "tsct_study_frozen", "tsct_mark_guard", "tsct_case_read_finished"):
            op.execute(f"DROP FUNCTION IF EXISTS {function}()")
