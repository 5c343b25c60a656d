"""Accounts that resist attack: throttled log-ins (per user name and per client), a lockout the
coordinator can lift, failures that stay visible after a success, server-side browser sessions
(kept as hashes, surviving a new connection, revocable), and nothing computed at import.

Times are passed in (``now=``), so no test waits for a delay to pass.
"""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

from reader_study import (
    LOCAL_CLIENT,
    THROTTLE,
    AuthenticationError,
    create_account,
    create_web_session,
    end_web_session,
    list_accounts,
    list_web_sessions,
    login,
    lookup_web_session,
    open_db,
    recent_login_attempts,
    revoke_web_session,
    set_account_active,
    unlock_account,
)
from reader_study.models import AuditEvent, WebSessionRecord

T0 = dt.datetime(2026, 12, 5, 12, 0, tzinfo=dt.timezone.utc)
GOOD = "correct horse battery"


def _at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def _attempt(db, user, password, t, client="10.0.0.1") -> str:
    """The outcome of one log-in at time ``t``: "ok" or the refusal's message."""
    try:
        login(db, user, password, client=client, now=_at(t))
    except AuthenticationError as exc:
        return str(exc)
    return "ok"


def test_importing_accounts_computes_no_hash():
    code = (
        "import sys, reader_study.accounts as a\n"
        "assert a._hasher.cache_info().currsize == 0 and a._dummy_hash.cache_info().currsize == 0\n"
        "assert 'argon2' not in sys.modules, 'argon2 imported at import time'\n"
    )
    root = Path(__file__).resolve().parents[2]
    subprocess.run([sys.executable, "-c", code], cwd=root, check=True, env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"})


def test_failures_in_a_row_bring_growing_delays_then_a_lockout(db, study):
    with db.transaction() as s:
        create_account(s, "ada", GOOD, role="reader", reader_name="Dr Ada")
    wrong = "Unknown user name or wrong password."
    t = 0.0
    for _ in range(THROTTLE.free_failures - 1):
        assert _attempt(db, "ada", "nope nope nope", t) == wrong
    # from the free_failures-th failure on, each next attempt waits 1, 2, 4 ... s after the last failure
    assert _attempt(db, "ada", "nope nope nope", t) == wrong
    assert "try again in 1 s" in _attempt(db, "ada", GOOD, t)  # refused before the password is checked
    t += 1
    assert _attempt(db, "ada", "nope nope nope", t) == wrong
    assert "try again in 2 s" in _attempt(db, "ada", "nope nope nope", t)
    assert "try again in 1 s" in _attempt(db, "ada", "nope nope nope", t + 1)
    for n in range(THROTTLE.free_failures + 1, THROTTLE.lock_failures):
        t += THROTTLE.delay_s(n, THROTTLE.free_failures)
        assert _attempt(db, "ada", "nope nope nope", t) == wrong
    # the lock_failures-th failure locks the account: even the right password is refused
    assert "locked until" in _attempt(db, "ada", GOOD, t + THROTTLE.max_delay_s)
    assert "locked until" in _attempt(db, "ada", GOOD, t + THROTTLE.lock_s - 1)
    with db.snapshot() as s:
        row = list_accounts(s, now=_at(t + 1)).set_index("username").loc["ada"]
        assert row["failed_logins"] == THROTTLE.lock_failures and row["locked_until"] is not None
    # the coordinator unlocks it; the failures stay on record after the next success
    with db.transaction() as s:
        unlock_account(s, "ada", actor="app:coord")
    assert _attempt(db, "ada", GOOD, t + 2) == "ok"
    with db.snapshot() as s:
        row = list_accounts(s, now=_at(t + 3)).set_index("username").loc["ada"]
        attempts = recent_login_attempts(s, username="ada")
        actions = [e.action for e in s.scalars(select(AuditEvent).order_by(AuditEvent.id))]
    assert row["failed_logins"] == 0 and row["failed_logins_30d"] >= THROTTLE.lock_failures  # failures do not vanish
    assert (attempts["outcome"] == "failed").sum() == THROTTLE.lock_failures and (attempts["outcome"] == "throttled").sum() >= 3
    assert attempts.iloc[0]["outcome"] == "ok" and attempts.iloc[0]["client"] == "10.0.0.1"
    assert {"LOGIN_FAILED", "LOGIN_THROTTLED", "UNLOCK_ACCOUNT", "LOGIN"} <= set(actions)


def test_a_lockout_ends_by_itself(db, study):
    with db.transaction() as s:
        create_account(s, "ben", GOOD, role="reader", reader_name="Dr Ben")
    t = 0.0
    for n in range(THROTTLE.lock_failures):
        t += THROTTLE.delay_s(n, THROTTLE.free_failures)
        _attempt(db, "ben", "nope nope nope", t, client=f"10.0.1.{n}")  # from many computers: the account is still counted
    assert "locked until" in _attempt(db, "ben", GOOD, t + 10, client="10.0.9.9")
    assert _attempt(db, "ben", GOOD, t + THROTTLE.lock_s + 1, client="10.0.9.9") == "ok"


def test_unknown_user_names_are_throttled_like_known_ones(db, study):
    """The answers do not tell which accounts exist."""
    with db.transaction() as s:
        create_account(s, "cem", GOOD, role="reader", reader_name="Dr Cem")
    known = [_attempt(db, "cem", "nope nope nope", 0.0, client="a") for _ in range(THROTTLE.free_failures + 1)]
    unknown = [_attempt(db, "nobody-here", "nope nope nope", 0.0, client="b") for _ in range(THROTTLE.free_failures + 1)]
    assert known == unknown and "try again" in known[-1]


def test_one_client_guessing_many_accounts_is_slowed(db, study):
    t = 0.0
    for n in range(THROTTLE.client_free_failures):
        assert "wrong password" in _attempt(db, f"guess{n}", "nope nope nope", t, client="203.0.113.7")
    # a new user name from the same client waits; another client does not
    assert "from this computer" in _attempt(db, "guess-new", "nope nope nope", t, client="203.0.113.7")
    assert "wrong password" in _attempt(db, "guess-new", "nope nope nope", t, client="198.51.100.1")
    for n in range(THROTTLE.client_free_failures, THROTTLE.client_lock_failures):
        t += THROTTLE.delay_s(n, THROTTLE.client_free_failures)
        _attempt(db, f"guess{n}", "nope nope nope", t, client="203.0.113.7")
    assert "blocked here" in _attempt(db, "guess-late", "nope nope nope", t + THROTTLE.max_delay_s, client="203.0.113.7")
    # the server's own machine (everyone, behind a proxy that does not pass the address on) is not throttled per client
    for n in range(THROTTLE.client_lock_failures + 1):
        assert "wrong password" in _attempt(db, f"local{n}", "nope nope nope", t, client=LOCAL_CLIENT)


def test_browser_sessions_are_hashes_survive_a_new_connection_and_can_be_revoked(db, db_url, study):
    with db.transaction() as s:
        info = create_account(s, "dee", GOOD, role="reader", reader_name="Dr Dee")
    token = create_web_session(db, account_id=info.account_id, client="10.1.1.1", idle_s=3600, now=T0)
    with db.snapshot() as s:
        stored = s.scalars(select(WebSessionRecord.token_sha256)).all()
    assert token not in stored and len(stored) == 1  # only the hash is kept
    # a new Database (as after a restart of the app server) finds the session
    again = open_db(db_url)
    try:
        live = lookup_web_session(again, token, idle_s=3600, now=_at(120))
        assert live is not None and live.username == "dee" and live.role == "reader"
        assert live.expires_at == _at(120 + 3600)  # sliding expiry, written back
        assert lookup_web_session(again, token, idle_s=3600, now=_at(120 + 3601)) is None  # idle too long
        assert lookup_web_session(again, "forged-token", idle_s=3600, now=_at(121)) is None
    finally:
        again.dispose()
    with db.snapshot() as s:
        listed = list_web_sessions(s, now=_at(130))
    assert list(listed["username"]) == ["dee"]
    with db.transaction() as s:
        revoke_web_session(s, int(listed.iloc[0]["session"]), actor="app:coord")
    assert lookup_web_session(db, token, idle_s=3600, now=_at(140)) is None
    # log-out and disabling end sessions too
    t2 = create_web_session(db, account_id=info.account_id, idle_s=3600, now=T0)
    assert end_web_session(db, t2) and lookup_web_session(db, t2, idle_s=3600, now=_at(1)) is None
    t3 = create_web_session(db, account_id=info.account_id, idle_s=3600, now=T0)
    with db.transaction() as s:
        set_account_active(s, "dee", False, actor="app:coord")
    assert lookup_web_session(db, t3, idle_s=3600, now=_at(1)) is None
    with db.snapshot() as s:
        reasons = sorted(s.scalars(select(WebSessionRecord.end_reason)).all())
    assert reasons == ["account disabled by app:coord", "logout", "revoked by app:coord"]


def test_tsct_study_accounts_unlock(db, db_url, study, monkeypatch):
    from typer.testing import CliRunner

    from tsct_cli import app

    with db.transaction() as s:
        create_account(s, "eve", GOOD, role="reader", reader_name="Dr Ada")
    t = 0.0
    for n in range(THROTTLE.lock_failures):
        t += THROTTLE.delay_s(n, THROTTLE.free_failures)
        _attempt(db, "eve", "nope nope nope", t)
    assert "locked until" in _attempt(db, "eve", GOOD, t + 1)
    monkeypatch.setenv("TSCT_DATABASE_URL", db_url)
    result = CliRunner().invoke(app, ["study", "accounts", "unlock", "eve"])
    assert result.exit_code == 0 and "unlocked" in result.output
    assert _attempt(db, "eve", GOOD, t + 2) == "ok"
    missing = CliRunner().invoke(app, ["study", "accounts", "unlock", "nobody"])
    assert missing.exit_code != 0 and "No account 'nobody'" in " ".join(missing.output.split())


def test_migration_0002_goes_down_and_up_and_keeps_the_guards(db, study):
    """Revision 0002 only adds (and on downgrade drops) columns and tables: the triggers of 0001 stay."""
    from alembic import command
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    from reader_study.db import _alembic_config, _head_revision
    from reader_study.models import Base

    with db.engine.begin() as connection:
        command.downgrade(_alembic_config(connection), "0001")
    assert db.schema_revision() == "0001"
    with db.engine.begin() as connection:
        command.upgrade(_alembic_config(connection), "head")
    assert db.schema_revision() == _head_revision()
    with db.engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection, opts={"compare_type": True}), Base.metadata) == []
    with pytest.raises(DBAPIError):
        with db.engine.begin() as connection:
            connection.execute(text("UPDATE audit_event SET actor = 'someone else'"))
