"""Who may fetch which image, and who is logged in in which browser.

**Image tickets.** The viewer fetches slice images over plain HTTP (so the browser can cache and
prefetch them while the reader scrolls). Each request carries a ticket: a random 256-bit token the
server issued to one logged-in reader for one case read, when it rendered that case. The ticket
holds the *layers that the case read's treatment allows* — computed on the server from the
database (:func:`workstation.layers.allowed_layers`) — and the files of those layers only. A
request for any other layer (the z-map or the subtraction in an unaided reading) is refused with
:class:`LayerNotAllowedError` before any file is touched, so the server never sends an aid the
treatment does not show, whatever the browser asks for. Tickets expire after a period without use
and are revoked at log-out. Only SHA-256 hashes of tokens are kept.

**Browser sessions.** Streamlit's session state lives as long as a browser tab's connection; a
reload starts a new one. So that a reload (or a dropped connection) does not log the reader out,
a successful log-in creates a server-side session and a one-time *claim code*; the page's script
posts the code to ``/api/tsct/v1/session/claim``, which sets an ``HttpOnly``, ``SameSite=Strict``
cookie holding the session token. On the next page load the app finds the cookie, looks the token
up here, and re-checks the account in the database. Sessions end at log-out, after
``session_idle_s`` without use, or when the server restarts (the reader logs in again; nothing is
lost, every mark is in the database).
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

__all__ = ["ImageTicket", "TicketRegistry", "WebSession", "WebSessionStore"]


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


class TicketRegistry:
    """Issues, checks and revokes image tickets (process-wide, thread-safe).

    Parameters
    ----------
    ttl_s : a ticket expires this long after it was last used or issued.
    clock : monotonic seconds (tests pass a fake).
    """

    def __init__(self, ttl_s: float = 8 * 3600.0, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = float(ttl_s)
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
    ) -> str:
        """A new ticket for ``layers`` of one case read; ``files`` outside ``layers`` are dropped, never stored."""
        unknown = set(layers) - set(LAYERS)
        if unknown:
            raise LayerNotAllowedError(f"Unknown image layer(s) {', '.join(sorted(unknown))}; known: {', '.join(LAYERS)}.")
        token = secrets.token_urlsafe(32)
        kept = {name: Path(path) for name, path in files.items() if name in layers}
        ticket = ImageTicket(account_id, reader_id, study_code, case_read_id, case_code, frozenset(layers), kept, session_key, self._clock() + self.ttl_s)
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

    def authorize(self, token: str, layer: str) -> tuple[ImageTicket, Path]:
        """The ticket and the file of ``layer``, if the ticket's treatment shows that layer.

        Raises
        ------
        TicketError
            Unknown or expired ticket.
        LayerNotAllowedError
            The layer is not shown in this case read's treatment (e.g. the z-map in an unaided reading).
        ImageLayerMissingError
            The layer is allowed but its file does not exist (the detector was not run on the case).
        """
        ticket = self.resolve(token)
        if layer not in ticket.layers:
            raise LayerNotAllowedError(f"The {layer!r} layer is not shown in this reading of case {ticket.case_code}.")
        path = ticket.files.get(layer)
        if path is None or not path.exists():
            label = LAYERS[layer].label if layer in LAYERS else layer
            raise ImageLayerMissingError(f"{label} of case {ticket.case_code} is not available ({path or 'no file'}); tell the study coordinator.")
        return ticket, path

    def revoke(self, *, account_id: int | None = None, session_key: str | None = None) -> int:
        """Revoke every ticket of an account or of one browser session; returns how many."""
        with self._lock:
            doomed = [
                k for k, t in self._tickets.items()
                if (account_id is not None and t.account_id == account_id) or (session_key and t.session_key == session_key)
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


class WebSessionStore:
    """Server-side browser sessions behind the ``tsct_session`` cookie (process-wide, thread-safe).

    Parameters
    ----------
    idle_s : a session ends this long after it was last used.
    claim_s : how long a claim code stays valid (the page claims it within a second or two).
    """

    def __init__(self, idle_s: float = 12 * 3600.0, *, claim_s: float = 120.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.idle_s = float(idle_s)
        self.claim_s = float(claim_s)
        self._clock = clock
        self._sessions: dict[str, WebSession] = {}
        self._claims: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def create(self, *, account_id: int, username: str, method: str = "password") -> tuple[str, str]:
        """Start a session; returns ``(session_token, claim_code)``. The claim code is exchanged once for the cookie."""
        token = secrets.token_urlsafe(32)
        code = secrets.token_urlsafe(24)
        now = self._clock()
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

    def claim(self, code: str) -> str | None:
        """The session token for a claim code, once; ``None`` for an unknown, used or expired code."""
        now = self._clock()
        with self._lock:
            entry = self._claims.pop(_digest(str(code)), None)
            if entry is None or entry[1] <= now:
                return None
            token = entry[0]
            return token if _digest(token) in self._sessions else None

    def lookup(self, token: str | None) -> WebSession | None:
        """The live session of ``token`` (its expiry pushed back), else ``None``."""
        if not token:
            return None
        key = _digest(str(token))
        now = self._clock()
        with self._lock:
            session = self._sessions.get(key)
            if session is None or session.expires_at <= now:
                self._sessions.pop(key, None)
                return None
            session = replace(session, expires_at=now + self.idle_s)
            self._sessions[key] = session
            return session

    def end(self, token: str | None) -> None:
        """End a session (log-out)."""
        if token:
            with self._lock:
                self._sessions.pop(_digest(str(token)), None)

    def end_account(self, account_id: int) -> int:
        """End every session of an account (e.g. after it was disabled); returns how many."""
        with self._lock:
            doomed = [k for k, s in self._sessions.items() if s.account_id == account_id]
            for k in doomed:
                del self._sessions[k]
        return len(doomed)

    @staticmethod
    def key_of(token: str) -> str:
        """A stable, non-secret key for a session token (to tie image tickets to it)."""
        return _digest(token)[:32]
