"""Who may fetch which image, and who is logged in in which browser.

**Image tickets.** The viewer fetches slice images over plain HTTP (so the browser can cache and
prefetch them while the reader scrolls). Each request carries a ticket: a random 256-bit token the
server issued to one logged-in reader for one case read, when it rendered that case. The ticket
holds the *layers that the case read's treatment allows* — computed on the server from the
database (:func:`reading_app.workstation.layers.allowed_layers`) — and the files of those layers only. A
request for any other layer (the z-map or the subtraction in an unaided reading) is refused with
:class:`LayerNotAllowedError` before any file is touched, so the server never sends an aid the
treatment does not show, whatever the browser asks for.

A ticket is not a bearer token: it is bound to the browser session (the ``tsct_session`` cookie)
that it was issued to, and to its case read. Each request must carry that session's cookie, the
session must be live, and — checked against the database (:attr:`TicketRegistry.check`, at most
a second old) — the case read must still belong to the ticket's reader, still be open (a review
ticket: a finished *training* case), and its treatment must still allow exactly the ticket's
layers. So a link copied from an aided reading is refused in another browser, with no cookie,
after the case was finished, and in a later (unaided) reading of the same case. Tickets also
expire after a period without use and are revoked at log-out, when the case is finished and when
the session is revoked. Only SHA-256 hashes of tokens are kept.

**Browser sessions.** Streamlit's session state lives as long as a browser tab's connection; a
reload starts a new one. So that a reload (or a dropped connection) does not log the reader out,
a successful log-in creates a server-side session and a one-time *claim code*; the page's script
posts the code to ``/api/tsct/v1/session/claim``, which sets an ``HttpOnly``, ``SameSite=Strict``
cookie holding the session token. On the next page load the app finds the cookie, looks the token
up here, and re-checks the account in the database. With a database (the app), sessions are
stored there (:mod:`reader_study.websessions`): they survive a restart of the server, and a
coordinator can revoke them; lookups are cached for a few seconds so that image requests do not
each query the database. Sessions end at log-out, after ``session_idle_s`` without use, at
revocation, or when the account is disabled.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Mapping

from .errors import ImageLayerMissingError, LayerNotAllowedError, TicketError
from .layers import LAYERS

#: A check run on every image request after the ticket was found: raises :class:`TicketError` to refuse.
TicketCheck = Callable[["ImageTicket", "str | None"], None]

__all__ = ["ImageTicket", "TicketRegistry", "WebSession", "WebSessionStore", "Download", "DownloadRegistry"]


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class ImageTicket:
    """What one ticket lets its holder fetch: the layers of one case read (and their files)."""

    account_id: int
    reader_id: int | None
    study_code: str
    case_read_id: int
    case_code: str
    layers: frozenset[str]
    files: Mapping[str, Path] = field(repr=False)
    session_key: str = ""
    expires_at: float = 0.0
    #: ``"read"``: the case read while it is open; ``"review"``: a finished training case with its truth
    kind: str = "read"
    #: the detector's registration (current → prior points) for the HU readout's linked prior point;
    #: geometry, not an aid (it shows no finding), so unaided readings carry it too
    registration: Path | None = field(default=None, repr=False)


class TicketRegistry:
    """Issues, checks and revokes image tickets (process-wide, thread-safe).

    Parameters
    ----------
    ttl_s : a ticket expires this long after it was last used or issued.
    clock : monotonic seconds (tests pass a fake).
    check : run on every request after the ticket was found and bound to its session (the app
        checks the session and the case read in the database); raises :class:`TicketError`.
    """

    def __init__(self, ttl_s: float = 8 * 3600.0, *, clock: Callable[[], float] = time.monotonic, check: TicketCheck | None = None) -> None:
        self.ttl_s = float(ttl_s)
        self.check = check
        self._clock = clock
        self._tickets: dict[str, ImageTicket] = {}
        self._lock = threading.Lock()

    def issue(
        self,
        *,
        account_id: int,
        reader_id: int | None,
        study_code: str,
        case_read_id: int,
        case_code: str,
        layers: frozenset[str],
        files: Mapping[str, Path],
        session_key: str = "",
        kind: str = "read",
        registration: str | Path | None = None,
    ) -> str:
        """A new ticket for ``layers`` of one case read; ``files`` outside ``layers`` are dropped, never stored.

        ``session_key`` (:meth:`WebSessionStore.key_of` of the log-in's token) binds the ticket to
        that browser session: requests must then carry its cookie.
        """
        if kind not in ("read", "review"):
            raise ValueError(f"Unknown ticket kind {kind!r}; use 'read' or 'review'.")
        unknown = set(layers) - set(LAYERS)
        if unknown:
            raise LayerNotAllowedError(f"Unknown image layer(s) {', '.join(sorted(unknown))}; known: {', '.join(LAYERS)}.")
        token = secrets.token_urlsafe(32)
        kept = {name: Path(path) for name, path in files.items() if name in layers}
        ticket = ImageTicket(
            account_id,
            reader_id,
            study_code,
            case_read_id,
            case_code,
            frozenset(layers),
            kept,
            session_key,
            self._clock() + self.ttl_s,
            kind,
            Path(registration) if registration else None,
        )
        with self._lock:
            self._purge()
            self._tickets[_digest(token)] = ticket
        return token

    def _purge(self) -> None:
        now = self._clock()
        for key in [k for k, t in self._tickets.items() if t.expires_at <= now]:
            del self._tickets[key]

    def resolve(self, token: str) -> ImageTicket:
        """The ticket for ``token`` (its expiry is pushed back); :class:`TicketError` when unknown, expired or revoked."""
        key = _digest(str(token))
        now = self._clock()
        with self._lock:
            ticket = self._tickets.get(key)
            if ticket is None or ticket.expires_at <= now:
                self._tickets.pop(key, None)
                raise TicketError("This image link is unknown or has expired; reload the page to continue reading.")
            ticket = replace(ticket, expires_at=now + self.ttl_s)
            self._tickets[key] = ticket
        return ticket

    def valid(self, token: str) -> bool:
        """Whether ``token`` is a live ticket (without extending it)."""
        with self._lock:
            ticket = self._tickets.get(_digest(str(token)))
            return ticket is not None and ticket.expires_at > self._clock()

    def authorize(self, token: str, layer: str, *, session_token: str | None = None) -> tuple[ImageTicket, Path]:
        """The ticket and the file of ``layer``, if the request's session holds the ticket and its treatment shows that layer.

        ``session_token`` is the request's ``tsct_session`` cookie; a ticket issued to a browser
        session is refused without it or with another session's.

        Raises
        ------
        TicketError
            Unknown, expired or revoked ticket; another (or no) browser session; the case read
            finished, of another reader, or its treatment no longer showing the ticket's layers.
        LayerNotAllowedError
            The layer is not shown in this case read's treatment (e.g. the z-map in an unaided reading).
        ImageLayerMissingError
            The layer is allowed but its file does not exist (the detector was not run on the case).
        """
        ticket = self.resolve(token)
        if ticket.session_key:
            if not session_token:
                raise TicketError("This image link needs the log-in it was made for (no session cookie was sent); log in and reload the page.")
            if WebSessionStore.key_of(session_token) != ticket.session_key:
                raise TicketError("This image link belongs to another log-in; reload the page to continue reading.")
        if self.check is not None:
            self.check(ticket, session_token)
        if layer not in ticket.layers:
            raise LayerNotAllowedError(f"The {layer!r} layer is not shown in this reading of case {ticket.case_code}.")
        path = ticket.files.get(layer)
        if path is None or not path.exists():
            label = LAYERS[layer].label if layer in LAYERS else layer
            raise ImageLayerMissingError(f"{label} of case {ticket.case_code} is not available ({path or 'no file'}); tell the study coordinator.")
        return ticket, path

    def revoke(self, *, account_id: int | None = None, session_key: str | None = None, case_read_id: int | None = None) -> int:
        """Revoke every ticket of an account, of one browser session or of one case read; returns how many."""
        with self._lock:
            doomed = [
                k
                for k, t in self._tickets.items()
                if (account_id is not None and t.account_id == account_id)
                or (session_key and t.session_key == session_key)
                or (case_read_id is not None and t.case_read_id == case_read_id)
            ]
            for k in doomed:
                del self._tickets[k]
        return len(doomed)

    def __len__(self) -> int:
        with self._lock:
            self._purge()
            return len(self._tickets)


@dataclass(frozen=True)
class WebSession:
    """A logged-in browser: the account it belongs to (user name and id) and when it expires."""

    account_id: int
    username: str
    method: str
    expires_at: float
    role: str = ""


class WebSessionStore:
    """Browser sessions behind the ``tsct_session`` cookie (process-wide, thread-safe).

    Parameters
    ----------
    idle_s : a session ends this long after it was last used.
    claim_s : how long a claim code stays valid (the page claims it within a second or two).
    database : a function giving the study database; sessions are then kept there (they survive
        a restart and can be revoked; :mod:`reader_study.websessions`). Without it (unit tests),
        they live in this process only.
    cache_s : with a database, how long a looked-up session is trusted before it is read again
        (revocations from this process take effect at once; from another process within this time).
    """

    def __init__(
        self,
        idle_s: float = 12 * 3600.0,
        *,
        claim_s: float = 120.0,
        clock: Callable[[], float] = time.monotonic,
        database: Callable[[], object] | None = None,
        cache_s: float = 5.0,
    ) -> None:
        self.idle_s = float(idle_s)
        self.claim_s = float(claim_s)
        self.cache_s = float(cache_s)
        self._clock = clock
        self._database = database
        self._sessions: dict[str, WebSession] = {}
        self._cache: dict[str, tuple[WebSession, float]] = {}
        self._claims: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()

    @property
    def persistent(self) -> bool:
        """Whether sessions are kept in the database (and survive a restart)."""
        return self._database is not None

    def create(self, *, account_id: int, username: str, method: str = "password", client: str = "") -> tuple[str, str]:
        """Start a session; returns ``(session_token, claim_code)``. The claim code is exchanged once for the cookie."""
        code = secrets.token_urlsafe(24)
        now = self._clock()
        if self._database is not None:
            from reader_study.websessions import create_web_session

            token = create_web_session(self._database(), account_id=account_id, method=method, client=client, idle_s=self.idle_s)  # type: ignore[arg-type]
            with self._lock:
                self._purge(now)
                self._claims[_digest(code)] = (token, now + self.claim_s)
            return token, code
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._purge(now)
            self._sessions[_digest(token)] = WebSession(account_id, username, method, now + self.idle_s)
            self._claims[_digest(code)] = (token, now + self.claim_s)
        return token, code

    def _purge(self, now: float) -> None:
        for k in [k for k, s in self._sessions.items() if s.expires_at <= now]:
            del self._sessions[k]
        for k in [k for k, (_, t) in self._claims.items() if t <= now]:
            del self._claims[k]
        for k in [k for k, (_, t) in self._cache.items() if t + self.cache_s <= now]:
            del self._cache[k]

    def claim(self, code: str) -> str | None:
        """The session token for a claim code, once; ``None`` for an unknown, used or expired code."""
        now = self._clock()
        with self._lock:
            entry = self._claims.pop(_digest(str(code)), None)
        if entry is None or entry[1] <= now:
            return None
        token = entry[0]
        return token if self.lookup(token) is not None else None

    def lookup(self, token: str | None) -> WebSession | None:
        """The live session of ``token`` (its expiry pushed back), else ``None``."""
        if not token:
            return None
        key = _digest(str(token))
        now = self._clock()
        if self._database is not None:
            with self._lock:
                hit = self._cache.get(key)
                if hit is not None and now < hit[1] + self.cache_s:
                    return hit[0]
            from reader_study.websessions import lookup_web_session

            live = lookup_web_session(self._database(), token, idle_s=self.idle_s)  # type: ignore[arg-type]
            with self._lock:
                if live is None:
                    self._cache.pop(key, None)
                    return None
                session = WebSession(live.account_id, live.username, live.method, now + (live.expires_at.timestamp() - time.time()), live.role)
                self._cache[key] = (session, now)
            return session
        with self._lock:
            session = self._sessions.get(key)
            if session is None or session.expires_at <= now:
                self._sessions.pop(key, None)
                return None
            session = replace(session, expires_at=now + self.idle_s)
            self._sessions[key] = session
            return session

    def end(self, token: str | None, *, reason: str = "logout") -> None:
        """End a session (log-out)."""
        if not token:
            return
        key = _digest(str(token))
        with self._lock:
            self._sessions.pop(key, None)
            self._cache.pop(key, None)
        if self._database is not None:
            from reader_study.websessions import end_web_session

            end_web_session(self._database(), token, reason=reason)  # type: ignore[arg-type]

    def forget(self, *, account_id: int | None = None, token_digest: str | None = None) -> None:
        """Drop cached lookups (after a session was revoked or an account disabled in the database)."""
        with self._lock:
            for k in [k for k, (s, _) in self._cache.items() if (account_id is not None and s.account_id == account_id) or k == token_digest]:
                del self._cache[k]

    def end_account(self, account_id: int) -> int:
        """End every session of an account (e.g. after it was disabled); returns how many this process knew of."""
        n = 0
        if self._database is not None:
            from reader_study.websessions import end_account_sessions

            with self._database().transaction() as s:  # type: ignore[attr-defined]
                n = len(end_account_sessions(s, account_id, reason="account disabled"))
        with self._lock:
            doomed = [k for k, s in self._sessions.items() if s.account_id == account_id]
            for k in doomed:
                del self._sessions[k]
            for k in [k for k, (s, _) in self._cache.items() if s.account_id == account_id]:
                del self._cache[k]
        return n + len(doomed)

    @staticmethod
    def key_of(token: str) -> str:
        """A stable, non-secret key for a session token (to tie image tickets to it)."""
        return _digest(token)[:32]


# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Download:
    """A file a page offered for download: to whom (browser session, roles) and what (a folder zipped, or a file)."""

    session_key: str
    account_id: int
    roles: frozenset[str]
    path: Path
    filename: str
    media_type: str
    expires_at: float


class DownloadRegistry:
    """Downloads offered by the pages, served by ``GET <base>/api/tsct/v1/download/<token>``.

    Streamlit's own download button serves its bytes from a media URL that anyone holding the URL
    can fetch; these downloads instead need the same log-in as the page that offered them: the
    browser session's cookie, and an account that still has one of the page's roles.
    """

    def __init__(self, ttl_s: float = 3600.0, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = float(ttl_s)
        self._clock = clock
        self._items: dict[str, Download] = {}
        self._lock = threading.Lock()

    def offer(
        self,
        *,
        session_key: str,
        account_id: int,
        roles: frozenset[str] | set[str] | tuple[str, ...],
        path: Path,
        filename: str,
        media_type: str = "application/zip",
    ) -> str:
        """Offer ``path`` (a folder is zipped when fetched) to one browser session; returns the token for the URL."""
        token = secrets.token_urlsafe(24)
        now = self._clock()
        with self._lock:
            for k in [k for k, d in self._items.items() if d.expires_at <= now]:
                del self._items[k]
            self._items[_digest(token)] = Download(session_key, int(account_id), frozenset(roles), Path(path), filename, media_type, now + self.ttl_s)
        return token

    def get(self, token: str) -> Download | None:
        """The offered download of ``token``, or ``None`` when unknown or expired."""
        with self._lock:
            item = self._items.get(_digest(str(token)))
        return item if item is not None and item.expires_at > self._clock() else None

    def revoke(self, *, session_key: str | None = None, account_id: int | None = None) -> None:
        """Withdraw the downloads offered to a session or an account."""
        with self._lock:
            for k in [k for k, d in self._items.items() if d.session_key == session_key or d.account_id == account_id]:
                del self._items[k]
