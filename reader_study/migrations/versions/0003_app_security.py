"""Accounts that resist attack, sessions that survive a restart, and the study's detector folder.

* ``web_session``: server-side browser sessions (only the SHA-256 of the cookie's token), so a
  restart of the app server keeps readers logged in and a coordinator can end a session;
* ``login_attempt``: every log-in attempt with its client and outcome (throttling counts these;
  the coordinator reviews them; a success never erases earlier failures);
* ``account.locked_until`` and ``account.last_failed_login_at``: the temporary lockout;
* ``study.detector_dir``: where the detector wrote this study's outputs (``tsct demo`` records it,
  so ``tsct app`` finds them without settings).

Columns are added with ``ALTER TABLE ... ADD COLUMN`` (no table copy on SQLite, so the triggers of
revision 0001 stay in place).

Revision ID: 0003_app_security
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_app_security"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("study", sa.Column("detector_dir", sa.Text(), server_default="", nullable=False))
    op.add_column("account", sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True))
    op.add_column("account", sa.Column("last_failed_login_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "web_session",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("token_sha256", sa.String(length=64), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("method", sa.String(length=16), nullable=False),
        sa.Column("client", sa.String(length=100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("end_reason", sa.String(length=200), nullable=False),
        sa.CheckConstraint("method IN ('password', 'oidc')", name=op.f("ck_web_session_method")),
        sa.ForeignKeyConstraint(["account_id"], ["account.id"], name=op.f("fk_web_session_account_id_account")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_web_session")),
        sa.UniqueConstraint("token_sha256", name=op.f("uq_web_session_token_sha256")),
    )
    op.create_index(op.f("ix_web_session_account_id"), "web_session", ["account_id"], unique=False)
    op.create_table(
        "login_attempt",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("username", sa.String(length=200), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=True),
        sa.Column("client", sa.String(length=100), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=200), nullable=False),
        sa.CheckConstraint("outcome IN ('ok', 'failed', 'throttled')", name=op.f("ck_login_attempt_outcome")),
        sa.ForeignKeyConstraint(["account_id"], ["account.id"], name=op.f("fk_login_attempt_account_id_account")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_login_attempt")),
    )
    op.create_index(op.f("ix_login_attempt_at"), "login_attempt", ["at"], unique=False)
    op.create_index(op.f("ix_login_attempt_client"), "login_attempt", ["client"], unique=False)
    op.create_index(op.f("ix_login_attempt_username"), "login_attempt", ["username"], unique=False)


def downgrade() -> None:
    op.drop_table("login_attempt")
    op.drop_table("web_session")
    # plain ALTER TABLE ... DROP COLUMN (SQLite >= 3.35): no table copy, so 0001's triggers stay
    op.drop_column("account", "last_failed_login_at")
    op.drop_column("account", "locked_until")
    op.drop_column("study", "detector_dir")
