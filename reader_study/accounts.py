"""Log-in accounts: argon2 password hashes, roles, and verifying a log-in.

Roles: ``reader`` (reads cases; the account is linked to one reader), ``coordinator`` (manages
studies and truth, never edits marks), ``statistician`` (exports and analyses, read-only) and
``admin`` (manages accounts). The app decides what each role may see; this module stores who is
who and checks passwords.

Passwords are hashed with argon2id (argon2-cffi's defaults, RFC 9106 low-memory profile); a hash
made with older parameters is upgraded on the next successful log-in. A new account gets an
initial password that it must change at first log-in (``must_change_password``). Failed log-ins
are counted and audited; the same message is given for an unknown user and a wrong password.

**Throttling.** Every attempt is stored (``login_attempt``: user name, client, outcome) and
audited. Per user name, after :data:`THROTTLE.free_failures` failures in a row each further
attempt must wait a delay that doubles (1, 2, 4 … at most ``max_delay_s`` seconds) after the
last failure; after ``lock_failures`` failures in a row the account is locked for ``lock_s``
(``account.locked_until``), until it runs out or a coordinator unlocks it. The same rules apply
per client (the browser's address), counting its failures of the last hour (since its last
success) across user names, so guessing many accounts from one machine is slowed too. A refused (throttled)
attempt is recorded but the password is not checked. Unknown user names are throttled exactly
like known ones, so the answers do not tell which accounts exist. A success resets the count in
a row but not the record: the coordinator sees every failure (:func:`list_accounts`,
:func:`recent_login_attempts`).

Nothing is computed at import: the argon2 hasher and the dummy hash (verified for unknown user
names so that both failures cost the same) are made on first use.

:func:`create_account` and :func:`set_account_active` take a session in the caller's transaction;
:func:`login` and :func:`change_password` take the database, because a failed attempt must be
recorded even though the caller gets an exception.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
from dataclasses import dataclass

import pandas as pd
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from . import audit
from .db import Database
from .errors import AuthenticationError, DuplicateReaderError, NotFoundError, ReaderStudyError
from .models import ACCOUNT_ROLES, Account, LoginAttempt, Reader, utcnow

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
    "unlock_account",
    "recent_login_attempts",
    "ThrottlePolicy",
    "THROTTLE",
    "MIN_PASSWORD_LENGTH",
    "LOCAL_CLIENT",
]

MIN_PASSWORD_LENGTH = 10

#: The client name of a browser on the server's own machine (or behind a proxy that does not pass
#: the real address on): recorded, but not throttled per client, since it may be everybody.
LOCAL_CLIENT = "local"


@functools.lru_cache(maxsize=1)
def _hasher():  # noqa: ANN202 - argon2.PasswordHasher, imported on first use
    from argon2 import PasswordHasher

    return PasswordHasher()


@functools.lru_cache(maxsize=1)
def _dummy_hash() -> str:
    """A fixed hash to verify against for unknown user names, so both failures cost the same time (made once, on first use)."""
    return _hasher().hash("tsct-no-such-user-password")


def _verify(hash_: str, password: str) -> bool:
    from argon2.exceptions import InvalidHashError, VerificationError

    try:
        return bool(_hasher().verify(hash_, password))
    except (VerificationError, InvalidHashError):
        return False


@dataclass(frozen=True)
class ThrottlePolicy:
    """How failed log-ins slow down further attempts (see the module docstring).

    Parameters
    ----------
    free_failures : failures in a row (per user name) before delays start.
    max_delay_s : the longest delay between two attempts before the lockout.
    lock_failures : failures in a row that lock the account for ``lock_s``.
    lock_s : how long a lockout lasts (and the window in which a client's failures are counted).
    client_free_failures, client_lock_failures : the same thresholds per client, across user names.
    client_window_s : a client's failures are counted over this long (and since its last success).
    name_window_s : failures of a user name that has no account are counted over this long (an
        account counts its failures in a row until a success, however long ago).
    """

    free_failures: int = 3
    max_delay_s: float = 60.0
    lock_failures: int = 10
    lock_s: float = 15 * 60.0
    client_free_failures: int = 10
    client_lock_failures: int = 30
    client_window_s: float = 3600.0
    name_window_s: float = 24 * 3600.0

    @classmethod
    def from_env(cls) -> "ThrottlePolicy":
        """The defaults, changed by ``$TSCT_LOGIN_FREE_FAILURES``, ``$TSCT_LOGIN_LOCK_FAILURES`` and
        ``$TSCT_LOGIN_LOCK_MINUTES`` where set (a site's own policy)."""
        import os

        def number(name: str, default: float, lo: float, hi: float) -> float:
            raw = os.environ.get(name, "").strip()
            if not raw:
                return default
            try:
                value = float(raw)
            except ValueError:
                raise ReaderStudyError(f"${name} must be a number from {lo:g} to {hi:g}, got {raw!r}.") from None
            if not lo <= value <= hi:
                raise ReaderStudyError(f"${name} must be from {lo:g} to {hi:g}, got {value:g}.")
            return value

        base = cls()
        lock = int(number("TSCT_LOGIN_LOCK_FAILURES", base.lock_failures, 2, 1000))
        free = int(number("TSCT_LOGIN_FREE_FAILURES", min(base.free_failures, lock - 1), 1, lock - 1))
        minutes = number("TSCT_LOGIN_LOCK_MINUTES", base.lock_s / 60.0, 1, 24 * 60)
        return cls(
            free_failures=free,
            lock_failures=lock,
            lock_s=minutes * 60.0,
            max_delay_s=base.max_delay_s,
            client_free_failures=base.client_free_failures,
            client_lock_failures=base.client_lock_failures,
            client_window_s=base.client_window_s,
            name_window_s=base.name_window_s,
        )

    def delay_s(self, failures: int, free: int) -> float:
        """The wait after the last of ``failures`` failures in a row (0 while ``failures <= free``)."""
        if failures < free:
            return 0.0
        return float(min(self.max_delay_s, 2.0 ** (failures - free)))


#: The default policy (:func:`check_login` applies :meth:`ThrottlePolicy.from_env`, which starts from it).
THROTTLE = ThrottlePolicy()


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
        raise ReaderStudyError(
            f"The user name {username[:40]!r}{'…' if len(username) > 40 else ''} must be 1-64 printable characters without spaces, e.g. 'jdoe'."
        )
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
    account = Account(username=username, password_hash=_hasher().hash(password), role=role, reader_id=reader_id, must_change_password=True)
    session.add(account)
    session.flush()
    audit.record(
        session, actor=actor, action="CREATE_ACCOUNT", entity="account", entity_id=account.id, username=username, role=role, reader_id=reader_id
    )
    return _info(account)


@dataclass(frozen=True)
class LoginResult:
    """The outcome of :func:`check_login`: the account when the log-in succeeded, else why not."""

    account: AccountInfo | None
    message: str

    @property
    def ok(self) -> bool:
        return self.account is not None


def _record_attempt(session: Session, username: str, account: Account | None, client: str, outcome: str, reason: str, now: dt.datetime) -> None:
    session.add(
        LoginAttempt(
            at=now,
            username=username.strip().lower()[:200],
            account_id=account.id if account else None,
            client=client[:100],
            outcome=outcome,
            reason=reason[:200],
        )
    )
    session.flush()


def _wait_text(seconds: float) -> str:
    seconds = max(1, math.ceil(seconds))
    return f"{seconds} s" if seconds < 120 else f"{math.ceil(seconds / 60)} min"


def _throttled(session: Session, username: str, account: Account | None, client: str, now: dt.datetime, policy: ThrottlePolicy) -> str | None:
    """Why an attempt is refused before its password is checked, or ``None`` when it may go ahead."""
    lock = dt.timedelta(seconds=policy.lock_s)
    # per user name: the account's failures in a row, or (unknown names) the name's recent failures
    if account is not None:
        failures, last = account.failed_logins, account.last_failed_login_at
        locked_until = account.locked_until
    else:
        rows = session.execute(
            select(func.count(), func.max(LoginAttempt.at)).where(
                LoginAttempt.username == username.strip().lower()[:200],
                LoginAttempt.outcome == "failed",
                LoginAttempt.at > now - dt.timedelta(seconds=policy.name_window_s),
            )
        ).one()
        failures, last = int(rows[0]), rows[1]
        locked_until = last + lock if failures >= policy.lock_failures and last is not None else None
    if locked_until is not None and now < locked_until:
        return (
            f"Too many failed log-ins: this account is locked until {locked_until:%H:%M} UTC "
            f"(in {_wait_text((locked_until - now).total_seconds())}). Wait, or ask the study coordinator to unlock it."
        )
    wait = policy.delay_s(failures, policy.free_failures)
    if last is not None and wait > 0 and now < last + dt.timedelta(seconds=wait):
        return f"Too many failed log-ins in a row; try again in {_wait_text((last - now).total_seconds() + wait)}."
    if client and client != LOCAL_CLIENT:
        since_ok = session.scalar(select(func.max(LoginAttempt.at)).where(LoginAttempt.client == client, LoginAttempt.outcome == "ok"))
        window = now - dt.timedelta(seconds=policy.client_window_s)
        start = max(window, since_ok) if since_ok is not None else window
        rows = session.execute(
            select(func.count(), func.max(LoginAttempt.at)).where(
                LoginAttempt.client == client, LoginAttempt.outcome == "failed", LoginAttempt.at > start
            )
        ).one()
        n, last_c = int(rows[0]), rows[1]
        if n >= policy.client_lock_failures and last_c is not None and now < last_c + lock:
            return (
                f"Too many failed log-ins from this computer; log-in is blocked here for "
                f"{_wait_text((last_c + lock - now).total_seconds())}. Ask the study coordinator if this was not you."
            )
        wait = policy.delay_s(n, policy.client_free_failures)
        if last_c is not None and wait > 0 and now < last_c + dt.timedelta(seconds=wait):
            return f"Too many failed log-ins from this computer; try again in {_wait_text((last_c - now).total_seconds() + wait)}."
    return None


def check_login(
    session: Session,
    username: str,
    password: str,
    *,
    client: str = "",
    now: dt.datetime | None = None,
    policy: ThrottlePolicy | None = None,
) -> LoginResult:
    """Check a user name and password and record the attempt and its outcome; never raises for a bad log-in.

    Parameters
    ----------
    client : who is trying (the browser's address; ``""`` when unknown), for per-client throttling.
    now : the time of the attempt (tests pass one; default: now).
    policy : the throttling rules (default :meth:`ThrottlePolicy.from_env`: :data:`THROTTLE` unless the environment changes it).

    A throttled attempt (see the module docstring) is refused before the password is checked.
    The same message is returned for an unknown user and a wrong password, and both cost an
    argon2 verification. A failure counts up ``failed_logins`` (in a row) and may lock the
    account; a success resets the count in a row, records the time and upgrades an outdated
    hash. Disabled accounts cannot log in. Use :func:`login` to get an exception instead (it
    commits the record of a failure first).
    """
    now = now or utcnow()
    policy = policy or ThrottlePolicy.from_env()
    username = str(username or "")
    client = str(client or "")
    account = session.scalar(select(Account).where(func.lower(Account.username) == username.strip().lower()))
    wrong = "Unknown user name or wrong password."
    why = _throttled(session, username, account, client, now, policy)
    if why is not None:
        _record_attempt(session, username, account, client, "throttled", why, now)
        audit.record(
            session,
            actor=username.strip()[:200] or "?",
            action="LOGIN_THROTTLED",
            entity="account",
            entity_id=account.id if account else None,
            client=client,
            reason=why,
        )
        return LoginResult(None, why)
    if account is None:
        _verify(_dummy_hash(), password)
        _record_attempt(session, username, None, client, "failed", "unknown user", now)
        audit.record(session, actor=username.strip()[:200] or "?", action="LOGIN_FAILED", entity="account", reason="unknown user", client=client)
        return LoginResult(None, wrong)
    if not _verify(account.password_hash, password):
        account.failed_logins += 1
        account.last_failed_login_at = now
        if account.failed_logins >= policy.lock_failures:
            account.locked_until = now + dt.timedelta(seconds=policy.lock_s)
        session.flush()
        _record_attempt(session, username, account, client, "failed", "wrong password", now)
        audit.record(
            session,
            actor=account.username,
            action="LOGIN_FAILED",
            entity="account",
            entity_id=account.id,
            reason="wrong password",
            failed_logins=account.failed_logins,
            client=client,
            locked_until=account.locked_until.isoformat() if account.locked_until else None,
        )
        return LoginResult(None, wrong)
    if not account.active:
        _record_attempt(session, username, account, client, "failed", "account disabled", now)
        audit.record(
            session, actor=account.username, action="LOGIN_FAILED", entity="account", entity_id=account.id, reason="account disabled", client=client
        )
        return LoginResult(None, "This account is disabled; ask an administrator.")
    if _hasher().check_needs_rehash(account.password_hash):
        account.password_hash = _hasher().hash(password)
    account.failed_logins = 0
    account.locked_until = None
    account.last_login_at = now
    session.flush()
    _record_attempt(session, username, account, client, "ok", "", now)
    audit.record(
        session, actor=account.username, actor_reader_id=account.reader_id, action="LOGIN", entity="account", entity_id=account.id, client=client
    )
    return LoginResult(_info(account), "")


def login(db: Database, username: str, password: str, *, client: str = "", now: dt.datetime | None = None) -> AccountInfo:
    """Verify a log-in in its own transaction; raises :class:`AuthenticationError` (after recording the failure).

    ``client`` (the browser's address) is throttled and recorded with the attempt (see :func:`check_login`).
    """
    with db.transaction() as session:
        result = check_login(session, username, password, client=client, now=now)
    if result.account is None:
        raise AuthenticationError(result.message)
    return result.account


def change_password(db: Database, username: str, old_password: str, new_password: str, *, client: str = "") -> AccountInfo:
    """Change a password after checking the old one (throttled like a log-in); clears ``must_change_password``.

    Raises :class:`AuthenticationError` when the old password is wrong (the failure is recorded).
    """
    _check_password(new_password)
    if new_password == old_password:
        raise ReaderStudyError("The new password must differ from the old one.")
    with db.transaction() as session:
        result = check_login(session, username, old_password, client=client)
        if result.account is not None:
            account = session.get(Account, result.account.account_id)
            assert account is not None
            account.password_hash = _hasher().hash(new_password)
            account.must_change_password = False
            account.password_changed_at = utcnow()
            session.flush()
            audit.record(
                session, actor=account.username, actor_reader_id=account.reader_id, action="CHANGE_PASSWORD", entity="account", entity_id=account.id
            )
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
        if not active:
            from .websessions import end_account_sessions

            end_account_sessions(session, account.id, reason=f"account disabled by {actor}")
        audit.record(
            session,
            actor=actor,
            action="ENABLE_ACCOUNT" if active else "DISABLE_ACCOUNT",
            entity="account",
            entity_id=account.id,
            username=account.username,
        )
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


def list_accounts(session: Session, *, now: dt.datetime | None = None) -> pd.DataFrame:
    """One row per account (no hashes): user name, role, linked reader, active, must change password,
    last log-in, failed log-ins in a row, failed log-ins in the last 30 days (kept after a success),
    last failed log-in, locked until (while locked), created."""
    now = now or utcnow()
    month = (
        select(LoginAttempt.account_id, func.count().label("n"))
        .where(LoginAttempt.outcome.in_(("failed", "throttled")), LoginAttempt.at > now - dt.timedelta(days=30))
        .group_by(LoginAttempt.account_id)
        .subquery()
    )
    rows = session.execute(
        select(
            Account.username,
            Account.role,
            Reader.name,
            Account.active,
            Account.must_change_password,
            Account.last_login_at,
            Account.failed_logins,
            func.coalesce(month.c.n, 0),
            Account.last_failed_login_at,
            Account.locked_until,
            Account.created_at,
        )
        .outerjoin(Reader, Reader.id == Account.reader_id)
        .outerjoin(month, month.c.account_id == Account.id)
        .order_by(Account.username)
    ).all()
    columns = [
        "username",
        "role",
        "reader",
        "active",
        "must_change_password",
        "last_login_at",
        "failed_logins",
        "failed_logins_30d",
        "last_failed_login_at",
        "locked_until",
        "created_at",
    ]
    frame = pd.DataFrame(rows, columns=columns)
    if not frame.empty:
        frame["locked_until"] = [u if u is not None and u > now else None for u in frame["locked_until"]]
    return frame


def recent_login_attempts(session: Session, *, limit: int = 200, username: str | None = None) -> pd.DataFrame:
    """The latest log-in attempts, newest first: time, user name (as typed, lower case), client, outcome, reason."""
    query = select(LoginAttempt.at, LoginAttempt.username, LoginAttempt.client, LoginAttempt.outcome, LoginAttempt.reason)
    if username:
        query = query.where(LoginAttempt.username == username.strip().lower())
    rows = session.execute(query.order_by(LoginAttempt.id.desc()).limit(int(limit))).all()
    return pd.DataFrame(rows, columns=["at", "username", "client", "outcome", "reason"])


def unlock_account(session: Session, username: str, *, actor: str = "admin") -> AccountInfo:
    """End an account's lockout and its failures in a row (the record of the failures stays)."""
    account = session.scalar(select(Account).where(func.lower(Account.username) == username.strip().lower()))
    if account is None:
        raise NotFoundError(f"No account {username!r}.")
    before = (account.failed_logins, account.locked_until)
    account.failed_logins = 0
    account.locked_until = None
    account.last_failed_login_at = None
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="UNLOCK_ACCOUNT",
        entity="account",
        entity_id=account.id,
        username=account.username,
        failed_logins_before=before[0],
        locked_until_before=before[1].isoformat() if before[1] else None,
    )
    return _info(account)


def reset_password(session: Session, username: str, new_password: str, *, actor: str = "admin") -> AccountInfo:
    """Give an account a new initial password (for a user who forgot theirs); it must be changed at the next log-in."""
    _check_password(new_password)
    account = session.scalar(select(Account).where(func.lower(Account.username) == username.strip().lower()))
    if account is None:
        raise NotFoundError(f"No account {username!r}.")
    account.password_hash = _hasher().hash(new_password)
    account.must_change_password = True
    account.failed_logins = 0
    account.locked_until = None
    account.last_failed_login_at = None
    session.flush()
    audit.record(session, actor=actor, action="RESET_PASSWORD", entity="account", entity_id=account.id, username=account.username)
    return _info(account)
