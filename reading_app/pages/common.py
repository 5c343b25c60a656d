"""What every page shares: the database, the logged-in user, roles, and small display helpers.

Identity comes only from a log-in: a password checked by :func:`reader_study.login`, the
server-side browser session behind the ``tsct_session`` cookie that log-in created, or a
single-sign-on identity (``st.login``, OpenID Connect) whose e-mail is an account's user name.
Nothing in a URL or a widget can choose who the user is; readers are bound to their own reader
record by their account.

Every string a user typed (user names, reader names, study titles, messages that quote them) is
shown as text, never as Markdown: :func:`text` escapes it, :func:`show_error` uses it.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import secrets
import string as _string
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

import reader_study
from reading_app.workstation import SESSION_COOKIE, WorkstationRuntime, api_base, get_runtime

ROLE_LABELS = {"reader": "Reader", "coordinator": "Coordinator", "statistician": "Statistician", "admin": "Administrator"}


_MARKDOWN_SPECIAL = re.compile("([" + re.escape(_string.punctuation) + "])")


def text(value: Any) -> str:
    """``value`` as literal text inside Markdown (``st.markdown``, ``st.caption``, ``st.error`` …).

    Every ASCII punctuation character is backslash-escaped (CommonMark shows an escaped character
    as itself), so nothing a user typed can start Markdown: no emphasis, code, links or images,
    headings, lists, tables, HTML, autolinked addresses, colour directives ``:red[…]`` or LaTeX. A
    user name like ``![x](https://…)`` shows as those characters and fetches nothing. Line breaks
    become spaces.
    """
    return _MARKDOWN_SPECIAL.sub(r"\\\1", str(value).replace("\r", " ").replace("\n", " "))


# ------------------------------------------------------------------------------------------------
def database() -> reader_study.Database:
    """The study database, one per server process (``$TSCT_DATABASE_URL`` or the SQLite default); the runtime's."""
    return runtime().database()


def detector_dir(study_code: str) -> Path:
    """Where the detector outputs of a study are (``<dir>/<case id>/``): the folder recorded with the
    study (``tsct demo`` records it; :func:`reader_study.set_detector_dir`) when it exists, else
    ``$TSCT_DETECTOR_DIR`` (default ``$TSCT_DATA_DIR/detector``). The one place the app decides this."""
    with database().snapshot() as s:
        recorded = reader_study.detector_dir_of(s, study_code)
    if recorded is not None and recorded.is_dir():
        return recorded
    return runtime().settings.detector_dir


def client_address() -> str:
    """The browser's address, for log-in throttling and the session list.

    Streamlit's view of the connection (``st.context.ip_address``; ``"local"`` for this machine,
    which is not throttled per client). Behind a reverse proxy every request comes from the proxy: set ``$TSCT_CLIENT_IP_HEADER`` (e.g. ``X-Real-IP``) to the header
    the proxy sets with the real address (only there: a client could send it itself otherwise).
    """
    header = os.environ.get("TSCT_CLIENT_IP_HEADER", "").strip()
    try:
        if header:
            value = st.context.headers.get(header) or ""
            if value:
                return value.split(",")[0].strip()[:100]
        address = st.context.ip_address  # None for a browser on this machine (Streamlit hides loopback)
        return str(address)[:100] if address else reader_study.LOCAL_CLIENT
    except Exception:  # noqa: BLE001 - no request context (tests)
        return ""


def runtime() -> WorkstationRuntime:
    return get_runtime()


def require_database() -> reader_study.Database:
    """The database, or a clear message and a stop when it cannot be opened."""
    try:
        return database()
    except (reader_study.SchemaVersionError, ValueError, OSError) as exc:
        st.error(f"The study database cannot be opened: {text(exc)}")
        st.info("Create it with `tsct study init-db` (the same `TSCT_DATABASE_URL` / `TSCT_DATA_DIR` as the app), then reload this page.")
        st.stop()
        raise  # unreachable; for type checkers


# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class User:
    """The logged-in user of this browser tab."""

    account: reader_study.AccountInfo
    session_token: str | None
    method: str

    @property
    def role(self) -> str:
        return self.account.role

    @property
    def username(self) -> str:
        return self.account.username

    @property
    def actor(self) -> str:
        """Name written to the audit log for this user's actions."""
        return f"app:{self.account.username}"

    @property
    def session_key(self) -> str:
        return runtime().sessions.key_of(self.session_token) if self.session_token else f"tab:{id(self)}"


def current_user() -> User | None:
    return st.session_state.get("tsct_user")


def sign_in(account: reader_study.AccountInfo, method: str = "password") -> None:
    """Start this tab's log-in and a browser session (the cookie is set by :func:`session_bridge`)."""
    token, code = runtime().sessions.create(account_id=account.account_id, username=account.username, method=method, client=client_address())
    st.session_state["tsct_user"] = User(account, token, method)
    st.session_state["tsct_claim"] = code
    st.session_state.pop("tsct_logout", None)
    st.session_state.pop("tsct_logout_cleared", None)


def sign_out(*, ended_elsewhere: bool = False) -> None:
    """End the log-in: server-side session and image tickets at once, the cookie via the browser.

    ``ended_elsewhere``: the session already ended (revoked by a coordinator, the account disabled,
    log-out in another tab, expired); only this tab forgets it."""
    user = current_user()
    rt = runtime()
    if user is not None and user.session_token:
        rt.tickets.revoke(session_key=user.session_key)
        rt.downloads.revoke(session_key=user.session_key)
        if not ended_elsewhere:
            rt.sessions.end(user.session_token)
    for key in list(st.session_state.keys()):
        if str(key).startswith("tsct") or str(key).startswith("svc:") or str(key).startswith("ticket:"):
            del st.session_state[key]
    st.session_state["tsct_logout"] = secrets.token_hex(8)  # a new id, so the browser clears the cookie this time too
    if user is not None and user.method == "oidc" and _oidc_configured():
        st.logout()


def _oidc_configured() -> bool:
    try:
        return "auth" in st.secrets
    except Exception:  # noqa: BLE001 - no secrets file
        return False


def oidc_available() -> bool:
    """Whether single sign-on (OpenID Connect, ``[auth]`` in ``.streamlit/secrets.toml``) is configured."""
    return _oidc_configured()


def restore_user() -> User | None:
    """This tab's user: kept in session state, else from the ``tsct_session`` cookie, else from single sign-on."""
    user = current_user()
    rt = runtime()
    if user is not None:
        # the session may have ended elsewhere (revoked, account disabled, logged out in another tab)
        if user.session_token and rt.sessions.lookup(user.session_token) is None:
            sign_out(ended_elsewhere=True)
            st.session_state["tsct_ended"] = True
            return None
        return user
    if st.session_state.get("tsct_logout"):
        return None
    db = require_database()
    token = None
    try:
        token = st.context.cookies.get(SESSION_COOKIE)
    except Exception:  # noqa: BLE001 - no request context (tests)
        token = None
    web = rt.sessions.lookup(token) if token else None
    if web is not None:
        with db.snapshot() as s:
            account = reader_study.find_account(s, web.username)
        if account is not None and account.account_id == web.account_id:
            user = User(account, token, web.method)
            st.session_state["tsct_user"] = user
            return user
        rt.sessions.end(token)
    if _oidc_configured():
        try:
            logged_in = bool(st.user.is_logged_in)
        except Exception:  # noqa: BLE001
            logged_in = False
        if logged_in:
            email = str(st.user.get("email") or "")
            with db.snapshot() as s:
                account = reader_study.find_account(s, email) if email else None
            if account is not None:
                sign_in(account, "oidc")
                return current_user()
            st.session_state["tsct_oidc_unknown"] = email
    return None


# ------------------------------------------------------------------------------------------------
_BRIDGE_JS = """
export default function(component) {
  const { data, setTriggerValue, parentElement } = component;
  const root = parentElement.querySelector('.tsct-bridge');
  if (!root || !data || root.dataset.done === data.id) return;
  root.dataset.done = data.id;
  fetch(data.url, {method: 'POST', credentials: 'same-origin', headers: {'Content-Type': 'application/json'}, body: JSON.stringify(data.body || {})})
    .then(r => setTriggerValue('done', {id: data.id, ok: r.ok}))
    .catch(() => setTriggerValue('done', {id: data.id, ok: false}));
}
"""
_bridge = st.components.v2.component("tsct.session_bridge", html='<div class="tsct-bridge"></div>', js=_BRIDGE_JS)


def _bridge_done() -> None:
    value = st.session_state.get("tsct-bridge", {}).get("done") if "tsct-bridge" in st.session_state else None
    if not value:
        return
    if str(value.get("id", "")).startswith("claim:"):
        st.session_state.pop("tsct_claim", None)
    elif str(value.get("id", "")).startswith("logout:"):
        st.session_state["tsct_logout_cleared"] = True


def session_bridge() -> None:
    """Post the log-in claim code (sets the cookie) or the log-out (clears it) from the browser, when due."""
    base = api_base(st.get_option("server.baseUrlPath") or "")
    code = st.session_state.get("tsct_claim")
    if code:
        payload = {"id": f"claim:{code[:8]}", "url": f"{base}/session/claim", "body": {"code": code}}
    elif st.session_state.get("tsct_logout") and not st.session_state.get("tsct_logout_cleared"):
        payload = {"id": f"logout:{st.session_state['tsct_logout']}", "url": f"{base}/session/logout", "body": {}}
    else:
        return
    with st.sidebar:
        _bridge(data=payload, key="tsct-bridge", on_done_change=_bridge_done, height=0)


# ------------------------------------------------------------------------------------------------
def require_role(*roles: str) -> User:
    """The user, if logged in with one of ``roles`` (admins pass every check); otherwise stop the page."""
    user = current_user()
    if user is None:
        st.warning("Please log in.")
        st.stop()
    if user.role not in roles and user.role != "admin":
        st.error(f"This page is for {', '.join(ROLE_LABELS.get(r, r) for r in roles)} accounts.")
        st.stop()
    return user  # type: ignore[return-value]


def show_error(exc: Exception | str) -> None:
    """A refusal from the packages, shown as one clear message (they say what to fix), as text."""
    st.error(text(exc))


def offer_download(user: User, label: str, path: Path, filename: str, *, roles: tuple[str, ...], media_type: str = "application/zip") -> None:
    """A download link for ``path`` (a folder is zipped when fetched) that works only in this browser
    session, for accounts that still have one of ``roles`` (``/api/tsct/v1/download/…``)."""
    if not user.session_token:
        st.warning("Downloads need a browser log-in; reload the page and log in again.")
        return
    key = f"tsct_download:{path}:{filename}"
    rt = runtime()
    token = st.session_state.get(key)
    if not token or rt.downloads.get(token) is None:
        token = rt.downloads.offer(
            session_key=user.session_key,
            account_id=user.account.account_id,
            roles=frozenset(roles),
            path=path,
            filename=filename,
            media_type=media_type,
        )
        st.session_state[key] = token
    url = f"{api_base(st.get_option('server.baseUrlPath') or '')}/download/{token}"
    st.link_button(label, url, type="primary")


def data_roots() -> list[Path]:
    """Folders on the server that paths typed in the app may point into: ``$TSCT_STUDY_DIRS``
    (separated by ``os.pathsep``), else the data folder (``$TSCT_DATA_DIR``)."""
    raw = os.environ.get("TSCT_STUDY_DIRS", "").strip()
    roots = [Path(p).expanduser() for p in raw.split(os.pathsep) if p.strip()] if raw else [runtime().settings.data_dir]
    return [r.resolve() for r in roots]


def confined_path(typed: str, *, what: str) -> Path:
    """A path typed in the app, resolved (links followed) and inside :func:`data_roots`; else
    :class:`ValueError` naming the allowed folders. Nothing is read from a path outside them."""
    raw = str(typed or "").strip()
    if not raw:
        raise ValueError(f"Give the {what}.")
    if "\x00" in raw:
        raise ValueError(f"The {what} path contains a NUL character.")
    roots = data_roots()
    candidate = Path(raw).expanduser()
    if not candidate.is_absolute():
        candidate = roots[0] / candidate
    resolved = candidate.resolve()
    if not any(resolved == r or r in resolved.parents for r in roots):
        raise ValueError(
            f"The {what} must be inside the study data folder(s) {', '.join(str(r) for r in roots)} "
            "($TSCT_STUDY_DIRS or $TSCT_DATA_DIR); copy it there, or upload it."
        )
    return resolved


def fmt_time(value: Any) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return ""
    if isinstance(value, (dt.datetime, pd.Timestamp)):
        try:
            return value.strftime("%Y-%m-%d %H:%M UTC")
        except ValueError:
            return ""
    return str(value)


def fmt_seconds(value: Any) -> str:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return ""
    if v != v:
        return ""
    minutes, seconds = divmod(int(round(v)), 60)
    return f"{minutes} min {seconds:02d} s" if minutes else f"{seconds} s"


def study_codes(db: reader_study.Database) -> list[str]:
    with db.snapshot() as s:
        frame = reader_study.list_studies(s)
    return list(frame["code"])


def choose_study(db: reader_study.Database, *, label: str = "Study", key: str = "coord_study", statuses: tuple[str, ...] | None = None) -> str | None:
    """A study picker shared by the coordinator and statistician pages (remembers the choice)."""
    with db.snapshot() as s:
        frame = reader_study.list_studies(s)
    if statuses:
        frame = frame[frame["status"].isin(statuses)]
    if frame.empty:
        st.info("There is no study yet." if not statuses else f"There is no study that is {' or '.join(statuses)}.")
        return None
    codes = list(frame["code"])
    labels = {row.code: f"{row.code} — {row.title or 'untitled'} ({row.status})" for row in frame.itertuples()}
    current = st.session_state.get(key)
    index = codes.index(current) if current in codes else 0
    return st.selectbox(label, codes, index=index, format_func=lambda c: labels[c], key=key)
