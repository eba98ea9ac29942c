"""Console sessions: server-side, with idle and absolute expiry, a CSRF token each, and a
sign-in rate limit. Pure state over an injected clock (docs/adr/0015-review-console.md).

The browser holds only a random session id (256 bits) in an httpOnly, SameSite=Strict
cookie; the principal, the CSRF token and the times live here. A session that has been
idle longer than ``idle`` or exists longer than ``absolute`` is gone: `get` answers
None and forgets it. Signing in always makes a new id (no session fixation); the
anonymous session of the sign-in form only carries the form's CSRF token.
"""

from __future__ import annotations

import hmac
import secrets
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum

ID_BYTES = 32
CSRF_BYTES = 32
MAX_SESSIONS = 10_000  # a flood of anonymous sign-in forms cannot grow memory forever


@dataclass(frozen=True, slots=True)
class ConsoleSession:
    """One session. ``principal_id`` is None for the sign-in form's anonymous session."""

    id: str
    csrf: str
    created_at: datetime
    last_seen: datetime
    principal_id: str | None = None

    def csrf_matches(self, presented: str | None) -> bool:
        if not presented:
            return False
        return hmac.compare_digest(presented.encode(), self.csrf.encode())


@dataclass
class SessionStore:
    """Sessions by id, in this process's memory (a restart signs everyone out)."""

    clock: Callable[[], datetime]
    idle: timedelta
    absolute: timedelta
    _sessions: dict[str, ConsoleSession] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _live(self, session: ConsoleSession, now: datetime) -> bool:
        return (now - session.last_seen <= self.idle
                and now - session.created_at <= self.absolute)

    def _prune(self, now: datetime) -> None:
        for sid in [s.id for s in self._sessions.values() if not self._live(s, now)]:
            del self._sessions[sid]
        while len(self._sessions) >= MAX_SESSIONS:  # oldest first
            oldest = min(self._sessions.values(), key=lambda s: s.last_seen)
            del self._sessions[oldest.id]

    def open(self, principal_id: str | None = None) -> ConsoleSession:
        now = self.clock()
        session = ConsoleSession(
            id=secrets.token_urlsafe(ID_BYTES),
            csrf=secrets.token_urlsafe(CSRF_BYTES),
            created_at=now,
            last_seen=now,
            principal_id=principal_id,
        )
        with self._lock:
            self._prune(now)
            self._sessions[session.id] = session
        return session

    def get(self, session_id: str | None) -> ConsoleSession | None:
        """The live session, its idle clock restarted; None when unknown or expired."""
        if not session_id:
            return None
        now = self.clock()
        with self._lock:
            session = self._sessions.get(session_id)
            if session is None:
                return None
            if not self._live(session, now):
                del self._sessions[session_id]
                return None
            session = replace(session, last_seen=now)
            self._sessions[session_id] = session
            return session

    def close(self, session_id: str | None) -> None:
        if session_id:
            with self._lock:
                self._sessions.pop(session_id, None)

    def close_principal(self, principal_id: str) -> None:
        """End every session of a principal (a disabled key)."""
        with self._lock:
            for sid in [s.id for s in self._sessions.values() if s.principal_id == principal_id]:
                del self._sessions[sid]


class Admission(StrEnum):
    """A sign-in attempt's fate at the limiter."""

    ALLOWED = "allowed"
    REFUSED = "refused"  # the first refusal of this client in this window (audited)
    REFUSED_AGAIN = "refused_again"  # later ones (not audited: no flood of the chain)


@dataclass
class SignInLimiter:
    """At most ``attempts`` sign-in attempts per ``per`` from one client address, and
    ``attempts * 10`` from all addresses together (a spread-out guessing run)."""

    clock: Callable[[], datetime]
    attempts: int
    per: timedelta
    _seen: dict[str, deque[datetime]] = field(default_factory=dict)
    _all: deque[datetime] = field(default_factory=deque)
    _refused: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def admit(self, client: str) -> Admission:
        """Count one attempt; a refused attempt is not counted."""
        now = self.clock()
        horizon = now - self.per
        with self._lock:
            for key in [k for k, q in self._seen.items() if not q or q[-1] < horizon]:
                del self._seen[key]
                self._refused.discard(key)
            mine = self._seen.setdefault(client, deque())
            for queue in (mine, self._all):
                while queue and queue[0] < horizon:
                    queue.popleft()
            if len(mine) >= self.attempts or len(self._all) >= self.attempts * 10:
                if client in self._refused:
                    return Admission.REFUSED_AGAIN
                self._refused.add(client)
                return Admission.REFUSED
            self._refused.discard(client)
            mine.append(now)
            self._all.append(now)
            return Admission.ALLOWED

    def allow(self, client: str) -> bool:
        return self.admit(client) is Admission.ALLOWED
