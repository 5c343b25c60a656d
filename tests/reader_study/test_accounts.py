"""Log-in accounts on SQLite and PostgreSQL: argon2 hashes, roles, failed log-ins recorded."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from reader_study import (
    AuthenticationError,
    DuplicateReaderError,
    NotFoundError,
    ReaderStudyError,
    ReadingService,
    change_password,
    check_login,
    create_account,
    login,
    set_account_active,
)
from reader_study.models import Account, AuditEvent


def test_accounts_store_argon2_hashes_and_log_in(db, study):
    with db.transaction() as s:
        info = create_account(s, "ada", "correct horse battery", role="reader", reader_name="Dr Ada")
        create_account(s, "coord", "another long password", role="coordinator")
    assert info.role == "reader" and info.reader_id == study.reader_ids["Dr Ada"] and info.must_change_password
    with db.snapshot() as s:
        stored = s.scalar(select(Account.password_hash).where(Account.username == "ada"))
    assert stored.startswith("$argon2id$") and "correct horse" not in stored
    account = login(db, "ADA", "correct horse battery")  # user names are case-insensitive
    assert account.reader_id == study.reader_ids["Dr Ada"]
    # The log-in gives the reader-facing service for exactly that reader.
    svc = ReadingService(db, reader_id=account.reader_id, study_code=study.code, actor=account.username)
    assert svc.reader_name == "Dr Ada"


def test_failed_log_ins_are_recorded_and_give_one_message(db, study):
    with db.transaction() as s:
        create_account(s, "ben", "correct horse battery", role="reader", reader_name="Dr Ben")
    for user, password in (("ben", "wrong password!"), ("nobody", "whatever password")):
        with pytest.raises(AuthenticationError, match="Unknown user name or wrong password"):
            login(db, user, password)
    with db.snapshot() as s:
        failures = [
            json.loads(e.detail_json)["reason"]
            for e in s.scalars(select(AuditEvent).where(AuditEvent.action == "LOGIN_FAILED").order_by(AuditEvent.id))
        ]
        assert failures == ["wrong password", "unknown user"]
        assert s.scalar(select(Account.failed_logins).where(Account.username == "ben")) == 1
    login(db, "ben", "correct horse battery")
    with db.snapshot() as s:
        assert s.scalar(select(Account.failed_logins).where(Account.username == "ben")) == 0
    with db.transaction() as s:
        set_account_active(s, "ben", False)
    with pytest.raises(AuthenticationError, match="disabled"):
        login(db, "ben", "correct horse battery")
    with db.transaction() as s:
        assert not check_login(s, "ben", "correct horse battery").ok


def test_change_password(db, study):
    with db.transaction() as s:
        create_account(s, "cem", "initial password 1", role="reader", reader_name="Dr Cem")
    with pytest.raises(AuthenticationError):
        change_password(db, "cem", "not the password", "new password 12")
    with pytest.raises(ReaderStudyError, match="at least 10"):
        change_password(db, "cem", "initial password 1", "short")
    info = change_password(db, "cem", "initial password 1", "new password 12")
    assert not info.must_change_password
    with pytest.raises(AuthenticationError):
        login(db, "cem", "initial password 1")
    assert login(db, "cem", "new password 12").username == "cem"


def test_bad_accounts_are_refused(db, study):
    with db.transaction() as s:
        create_account(s, "dee", "a long enough pw", role="reader", reader_name="Dr Dee")
    bad = [
        (DuplicateReaderError, "already taken", dict(username="DEE", password="a long enough pw", role="admin")),
        (DuplicateReaderError, "already has an account", dict(username="dee2", password="a long enough pw", role="reader", reader_name="Dr Dee")),
        (NotFoundError, "No reader named", dict(username="x", password="a long enough pw", role="reader", reader_name="Dr Who")),
        (ReaderStudyError, "must belong to a reader", dict(username="x", password="a long enough pw", role="reader")),
        (ReaderStudyError, "not one of", dict(username="x", password="a long enough pw", role="superuser")),
        (ReaderStudyError, "at least 10", dict(username="x", password="short", role="admin")),
    ]
    for error, message, kwargs in bad:
        with pytest.raises(error, match=message):
            with db.transaction() as s:
                create_account(s, kwargs.pop("username"), kwargs.pop("password"), **kwargs)
    with db.snapshot() as s:
        assert s.scalars(select(Account.username)).all() == ["dee"]
