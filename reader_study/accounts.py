"""Log-in accounts: argon2 password hashes, roles, and verifying a log-in.

Roles: ``reader`` (reads cases; the account is linked to one reader), ``coordinator`` (manages
studies and truth, never edits marks), ``statistician`` (exports and analyses, read-only) and
``admin`` (manages accounts). The app decides what each role may see; this module stores who is
who and checks passwords.

Passwords are hashed with argon2id (argon2-cffi's defaults, RFC 9106 low-memory profile); a hash
made with older parameters is upgraded on the next successful log-in. A new account gets an
initial password that it must change at first log-in (``must_change_password``). Failed log-ins
are counted and audited; the same message is given for an unknown user and a wrong password.

:func:`create_account` and :func:`set_account_active` take a session in the caller's transaction;
:func:`login` and :func:`change_password` take the database, because a failed attempt must be
recorded even though the caller gets an exception.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
import pandas as pd
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from . import audit
from .db import Database
from .errors import AuthenticationError, DuplicateReaderError, NotFoundError, ReaderStudyError
from .models import ACCOUNT_ROLES, Account, Reader, utcnow

__all__ = [
    "AccountInfo",
    "LoginResult",
    "create_account",
    "check_login",
    "login",
    "change_password",
    "set_account_active",
    "find_account",
    "list_accounts",
    "reset_password",
    "MIN_PASSWORD_LENGTH",
]

MIN_PASSWORD_LENGTH = 10
_HASHER = PasswordHasher()
# A fixed hash to verify against for unknown user names, so both failures cost the same time.
_DUMMY_HASH = _HASHER.hash("tsct-no-such-user-password")


@dataclass(frozen=True)
class AccountInfo:
    """A verified account: who logged in, with which role, and the reader they are (for readers)."""

    account_id: int
    username: str
    role: str
    reader_id: int | None
    must_change_password: bool


def _info(a: Account) -> AccountInfo:
    return AccountInfo(a.id, a.username, a.role, a.reader_id, a.must_change_password)


def _check_password(password: str) -> None:
    if not isinstance(password, str) or len(password) < MIN_PASSWORD_LENGTH:
        raise ReaderStudyError(f"A password needs at least {MIN_PASSWORD_LENGTH} characters.")


def create_account(
    session: Session,
    username: str,
    password: str,
    *,
    role: str,
    reader_name: str | None = None,
    actor: str = "admin",
) -> AccountInfo:
    """Create an account with an initial password (to be changed at first log-in).

    Parameters
    ----------
    username : unique log-in name (compared case-insensitively).
    password : the initial password (at least :data:`MIN_PASSWORD_LENGTH` characters).
    role : ``reader``, ``coordinator``, ``statistician`` or ``admin``.
    reader_name : for a reader account, the reader it belongs to (required for ``reader``).

    Raises
    ------
    DuplicateReaderError
        When the user name is taken or the reader already has an account.
    NotFoundError
        When ``reader_name`` is not a known reader.
    """
    username = username.strip()
    if not username:
        raise ReaderStudyError("A user name is needed.")
    if len(username) > 64 or any(not ch.isprintable() or ch.isspace() for ch in username):
        raise ReaderStudyError(f"The user name {username[:40]!r}{'…' if len(username) > 40 else ''} must be 1-64 printable characters without spaces, e.g. 'jdoe'.")
    if role not in ACCOUNT_ROLES:
        raise ReaderStudyError(f"Role {role!r} is not one of {', '.join(ACCOUNT_ROLES)}.")
    if reader_name is not None and role != "reader":
        raise ReaderStudyError(f"Only a reader account belongs to a reader; drop --reader for a {role} account (or use --role reader).")
    _check_password(password)
    if session.scalar(select(Account.id).where(func.lower(Account.username) == username.lower())) is not None:
        raise DuplicateReaderError(f"The user name {username!r} is already taken.")
    reader_id = None
    if reader_name is not None:
        reader = session.scalar(select(Reader).where(func.lower(Reader.name) == reader_name.strip().lower()))
        if reader is None:
            raise NotFoundError(f"No reader named {reader_name!r}; add the reader to a study first (tsct study readers add).")
        if session.scalar(select(Account.id).where(Account.reader_id == reader.id)) is not None:
            raise DuplicateReaderError(f"Reader {reader.name!r} already has an account.")
        reader_id = reader.id
    elif role == "reader":
        raise ReaderStudyError("A reader account must belong to a reader; give the reader's name (--reader NAME, as in the study's readers list).")
    account = Account(username=username, password_hash=_HASHER.hash(password), role=role, reader_id=reader_id, must_change_password=True)
    session.add(account)
    session.flush()
    audit.record(session, actor=actor, action="CREATE_ACCOUNT", entity="account", entity_id=account.id, username=username, role=role, reader_id=reader_id)
    return _info(account)


@dataclass(frozen=True)
class LoginResult:
    """The outcome of :func:`check_login`: the account when the log-in succeeded, else why not."""

    account: AccountInfo | None
    message: str

    @property
    def ok(self) -> bool:
        return self.account is not None


def check_login(session: Session, username: str, password: str, *, now: dt.datetime | None = None) -> LoginResult:
    """Check a user name and password and record the outcome in the audit log; never raises for a bad log-in.

    The same message is returned for an unknown user and a wrong password, and both cost an
    argon2 verification. A failure counts up ``failed_logins``; a success resets it, records the
    time and upgrades an outdated hash. Disabled accounts cannot log in. Use :func:`login` to get
    an exception instead (it commits the record of a failure first).
    """
    account = session.scalar(select(Account).where(func.lower(Account.username) == username.strip().lower()))
    wrong = "Unknown user name or wrong password."
    if account is None:
        try:
            _HASHER.verify(_DUMMY_HASH, password)
        except VerificationError:
            pass
        audit.record(session, actor=username.strip()[:200] or "?", action="LOGIN_FAILED", entity="account", reason="unknown user")
        return LoginResult(None, wrong)
    try:
        _HASHER.verify(account.password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        account.failed_logins += 1
        session.flush()
        audit.record(session, actor=account.username, action="LOGIN_FAILED", entity="account", entity_id=account.id, reason="wrong password", failed_logins=account.failed_logins)
        return LoginResult(None, wrong)
    if not account.active:
        audit.record(session, actor=account.username, action="LOGIN_FAILED", entity="account", entity_id=account.id, reason="account disabled")
        return LoginResult(None, "This account is disabled; ask an administrator.")
    if _HASHER.check_needs_rehash(account.password_hash):
        account.password_hash = _HASHER.hash(password)
    account.failed_logins = 0
    account.last_login_at = now or utcnow()
    session.flush()
    audit.record(session, actor=account.username, actor_reader_id=account.reader_id, action="LOGIN", entity="account", entity_id=account.id)
    return LoginResult(_info(account), "")


def login(db: Database, username: str, password: str) -> AccountInfo:
    """Verify a log-in in its own transaction; raises :class:`AuthenticationError` (after recording the failure)."""
    with db.transaction() as session:
        result = check_login(session, username, password)
    if result.account is None:
        raise AuthenticationError(result.message)
    return result.account


def change_password(db: Database, username: str, old_password: str, new_password: str) -> AccountInfo:
    """Change a password after checking the old one; clears ``must_change_password``.

    Raises :class:`AuthenticationError` when the old password is wrong (the failure is recorded).
    """
    _check_password(new_password)
    if new_password == old_password:
        raise ReaderStudyError("The new password must differ from the old one.")
    with db.transaction() as session:
        result = check_login(session, username, old_password)
        if result.account is not None:
            account = session.get(Account, result.account.account_id)
            assert account is not None
            account.password_hash = _HASHER.hash(new_password)
            account.must_change_password = False
            account.password_changed_at = utcnow()
            session.flush()
            audit.record(session, actor=account.username, actor_reader_id=account.reader_id, action="CHANGE_PASSWORD", entity="account", entity_id=account.id)
            info = _info(account)
    if result.account is None:
        raise AuthenticationError(result.message)
    return info


def set_account_active(session: Session, username: str, active: bool, *, actor: str = "admin") -> AccountInfo:
    """Enable or disable an account (disabled accounts cannot log in; nothing is deleted)."""
    account = session.scalar(select(Account).where(func.lower(Account.username) == username.strip().lower()))
    if account is None:
        raise NotFoundError(f"No account {username!r}.")
    if account.active != active:
        account.active = active
        session.flush()
        audit.record(session, actor=actor, action="ENABLE_ACCOUNT" if active else "DISABLE_ACCOUNT", entity="account", entity_id=account.id, username=account.username)
    return _info(account)


def find_account(session: Session, username: str) -> AccountInfo | None:
    """The *active* account with this user name (case-insensitive), else ``None``; no password check.

    For identities already verified elsewhere: a browser session the app issued at a password
    log-in, or a single-sign-on (OpenID Connect) identity whose e-mail is the user name.
    """
    account = session.scalar(select(Account).where(func.lower(Account.username) == str(username).strip().lower()))
    if account is None or not account.active:
        return None
    return _info(account)


def list_accounts(session: Session) -> pd.DataFrame:
    """One row per account: user name, role, linked reader's name, active, must change password, last log-in, failed log-ins (no hashes)."""
    rows = session.execute(
        select(Account.username, Account.role, Reader.name, Account.active, Account.must_change_password, Account.last_login_at, Account.failed_logins, Account.created_at)
        .outerjoin(Reader, Reader.id == Account.reader_id)
        .order_by(Account.username)
    ).all()
    return pd.DataFrame(rows, columns=["username", "role", "reader", "active", "must_change_password", "last_login_at", "failed_logins", "created_at"])


def reset_password(session: Session, username: str, new_password: str, *, actor: str = "admin") -> AccountInfo:
    """Give an account a new initial password (for a user who forgot theirs); it must be changed at the next log-in."""
    _check_password(new_password)
    account = session.scalar(select(Account).where(func.lower(Account.username) == username.strip().lower()))
    if account is None:
        raise NotFoundError(f"No account {username!r}.")
    account.password_hash = _HASHER.hash(new_password)
    account.must_change_password = True
    account.failed_logins = 0
    session.flush()
    audit.record(session, actor=actor, action="RESET_PASSWORD", entity="account", entity_id=account.id, username=account.username)
    return _info(account)
