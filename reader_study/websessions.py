"""Server-side browser sessions: who is logged in in which browser, kept in the study database.

A log-in creates a session; the browser holds only a random 256-bit token in an ``HttpOnly``
cookie, and the database only the token's SHA-256 (a copy of the database does not log anyone
in). Because sessions live in the database, they survive a restart of the app server, and every
server process sharing the database sees the same sessions. A session ends at log-out, after its
idle time without use, when a coordinator revokes it, or when its account is disabled; ended
sessions are kept (with why and when they ended) for review.

The functions take a :class:`~reader_study.db.Database` or a session as their neighbours in
:mod:`reader_study.accounts` do; the app's :class:`reading_app.workstation.WebSessionStore` calls them.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass

import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session

from . import audit
from .db import Database
from .errors import NotFoundError
from .models import Account, WebSessionRecord, utcnow

__all__ = [
    "LiveSession",
    "token_digest",
    "create_web_session",
    "lookup_web_session",
    "end_web_session",
    "end_account_sessions",
    "revoke_web_session",
    "list_web_sessions",
    "CaseReadAccess",
    "case_read_access",
]

#: last use is written back at most this often (a lookup per image request must not write)
TOUCH_EVERY_S = 60.0


def token_digest(token: str) -> str:
    """The SHA-256 (hex) of a session token: what the database keeps."""
    return hashlib.sha256(str(token).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class LiveSession:
    """A live session: its row id, the account (id, user name, role) and how the user logged in."""

    session_id: int
    account_id: int
    username: str
    role: str
    method: str
    expires_at: dt.datetime


def create_web_session(
    db: Database, *, account_id: int, method: str = "password", client: str = "", idle_s: float, now: dt.datetime | None = None
) -> str:
    """Start a session for an account; returns the token for the cookie (never stored)."""
    now = now or utcnow()
    token = secrets.token_urlsafe(32)
    with db.transaction() as s:
        s.add(
            WebSessionRecord(
                token_sha256=token_digest(token),
                account_id=int(account_id),
                method=method,
                client=str(client)[:100],
                created_at=now,
                last_seen_at=now,
                expires_at=now + dt.timedelta(seconds=idle_s),
                end_reason="",
            )
        )
    return token


def lookup_web_session(db: Database, token: str | None, *, idle_s: float, now: dt.datetime | None = None) -> LiveSession | None:
    """The live session of ``token`` (its expiry pushed back, written at most every minute), else ``None``.

    A session is live when it has not ended, has not expired, and its account is active.
    """
    if not token:
        return None
    now = now or utcnow()
    digest = token_digest(token)
    with db.snapshot() as s:
        row = s.execute(
            select(
                WebSessionRecord.id,
                WebSessionRecord.account_id,
                Account.username,
                Account.role,
                WebSessionRecord.method,
                WebSessionRecord.expires_at,
                WebSessionRecord.ended_at,
                WebSessionRecord.last_seen_at,
                Account.active,
            )
            .join(Account, Account.id == WebSessionRecord.account_id)
            .where(WebSessionRecord.token_sha256 == digest)
        ).one_or_none()
    if row is None or row.ended_at is not None or row.expires_at <= now or not row.active:
        return None
    expires = row.expires_at
    if (now - row.last_seen_at).total_seconds() >= TOUCH_EVERY_S:
        expires = now + dt.timedelta(seconds=idle_s)
        with db.transaction() as s:
            record = s.get(WebSessionRecord, row.id)
            if record is not None and record.ended_at is None:
                record.last_seen_at = now
                record.expires_at = expires
    return LiveSession(row.id, row.account_id, row.username, row.role, row.method, expires)


def end_web_session(db: Database, token: str | None, *, reason: str = "logout", now: dt.datetime | None = None) -> bool:
    """End the session of ``token`` (log-out); returns whether a live session ended."""
    if not token:
        return False
    with db.transaction() as s:
        record = s.scalar(select(WebSessionRecord).where(WebSessionRecord.token_sha256 == token_digest(token)))
        if record is None or record.ended_at is not None:
            return False
        record.ended_at = now or utcnow()
        record.end_reason = reason[:200]
    return True


def end_account_sessions(session: Session, account_id: int, *, reason: str, now: dt.datetime | None = None) -> list[str]:
    """End every live session of an account (in the caller's transaction); returns their token digests."""
    now = now or utcnow()
    records = session.scalars(
        select(WebSessionRecord).where(WebSessionRecord.account_id == int(account_id), WebSessionRecord.ended_at.is_(None))
    ).all()
    for record in records:
        record.ended_at = now
        record.end_reason = reason[:200]
    session.flush()
    return [r.token_sha256 for r in records]


def revoke_web_session(session: Session, session_id: int, *, actor: str) -> tuple[int, str]:
    """A coordinator ends one session (audited); returns ``(account id, token digest)``."""
    record = session.get(WebSessionRecord, int(session_id))
    if record is None:
        raise NotFoundError(f"No browser session {session_id}.")
    if record.ended_at is None:
        record.ended_at = utcnow()
        record.end_reason = f"revoked by {actor}"[:200]
        session.flush()
        audit.record(session, actor=actor, action="REVOKE_SESSION", entity="web_session", entity_id=record.id, account_id=record.account_id)
    return record.account_id, record.token_sha256


def list_web_sessions(session: Session, *, now: dt.datetime | None = None) -> pd.DataFrame:
    """The live sessions: id, user name, role, how they logged in, client, started, last seen, expires."""
    now = now or utcnow()
    rows = session.execute(
        select(
            WebSessionRecord.id,
            Account.username,
            Account.role,
            WebSessionRecord.method,
            WebSessionRecord.client,
            WebSessionRecord.created_at,
            WebSessionRecord.last_seen_at,
            WebSessionRecord.expires_at,
        )
        .join(Account, Account.id == WebSessionRecord.account_id)
        .where(WebSessionRecord.ended_at.is_(None), WebSessionRecord.expires_at > now)
        .order_by(WebSessionRecord.id)
    ).all()
    return pd.DataFrame(rows, columns=["session", "username", "role", "method", "client", "started", "last_seen", "expires"])


# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CaseReadAccess:
    """What decides whether an image ticket of a case read is still good: whose read, its state and treatment's aids."""

    case_read_id: int
    reader_id: int
    status: str
    overlays: tuple[str, ...]
    training: bool


def case_read_access(db: Database, case_read_id: int) -> CaseReadAccess | None:
    """The reader, status, treatment overlays and training flag of a case read (``None`` when it does not exist)."""
    from .models import CaseRead, StudyCase, Treatment

    with db.snapshot() as s:
        row = s.execute(
            select(CaseRead.reader_id, CaseRead.status, Treatment.overlays, StudyCase.is_training)
            .join(Treatment, Treatment.id == CaseRead.treatment_id)
            .join(StudyCase, StudyCase.id == CaseRead.case_id)
            .where(CaseRead.id == int(case_read_id))
        ).one_or_none()
    if row is None:
        return None
    return CaseReadAccess(
        int(case_read_id), int(row.reader_id), str(row.status), tuple(o for o in (row.overlays or "").split(",") if o), bool(row.is_training)
    )
