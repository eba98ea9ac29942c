"""Console sessions: in the service's store, with idle and absolute expiry, a CSRF token
each; and a sign-in rate limit, counted in the same store. Both over an injected clock
(docs/adr/0015-review-console.md, sections 3 and 4).

The browser holds only a random session id (256 bits) in an httpOnly, SameSite=Strict
cookie; the store keeps the sha256 of that id (table ``console_sessions``), the
principal, the CSRF token and the times, so sessions outlive a restart of `serve` and
every process serving the same store shares them, while a copy of the store signs nobody
in. A session that has been idle longer than ``idle``, exists longer than ``absolute``
or was signed out (its row revoked) is gone: `get` answers None. Signing in always makes
a new id (no session fixation); the anonymous session of the sign-in form only carries
the form's CSRF token.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.orm import Session

from cloud_stub.store.engine import Store
from cloud_stub.store.models import ConsoleSessionRow, ConsoleSignInRow

ID_BYTES = 32
CSRF_BYTES = 32
MAX_SESSIONS = 10_000  # a flood of anonymous sign-in forms cannot grow the table forever


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


def id_sha256(session_id: str) -> str:
    """What the store keeps of a session's id."""
    return hashlib.sha256(session_id.encode()).hexdigest()


@dataclass
class SessionStore:
    """Sessions in the service's store, by the sha256 of their id. Raises `StoreError`
    when the database fails."""

    store: Store
    clock: Callable[[], datetime]
    idle: timedelta
    absolute: timedelta
    max_sessions: int = MAX_SESSIONS

    def _live(self, row: ConsoleSessionRow, now: datetime) -> bool:
        return (row.revoked_at is None and now - row.last_seen <= self.idle
                and now - row.created_at <= self.absolute)

    def _prune(self, session: Session, now: datetime) -> None:
        """Delete the rows that can never be used again, then the least recently used
        ones over ``max_sessions``."""
        session.execute(delete(ConsoleSessionRow).where(or_(
            ConsoleSessionRow.revoked_at.is_not(None),
            ConsoleSessionRow.last_seen < now - self.idle,
            ConsoleSessionRow.created_at < now - self.absolute)))
        count = session.execute(select(func.count()).select_from(ConsoleSessionRow)
                                ).scalar_one()
        if count >= self.max_sessions:
            oldest = select(ConsoleSessionRow.id_sha256).order_by(
                ConsoleSessionRow.last_seen).limit(count - self.max_sessions + 1)
            session.execute(delete(ConsoleSessionRow).where(
                ConsoleSessionRow.id_sha256.in_(oldest.scalar_subquery())))

    def open(self, principal_id: str | None = None) -> ConsoleSession:
        now = self.clock()
        opened = ConsoleSession(
            id=secrets.token_urlsafe(ID_BYTES),
            csrf=secrets.token_urlsafe(CSRF_BYTES),
            created_at=now,
            last_seen=now,
            principal_id=principal_id,
        )
        with self.store.transaction() as session:
            self._prune(session, now)
            session.add(ConsoleSessionRow(
                id_sha256=id_sha256(opened.id), csrf=opened.csrf, principal_id=principal_id,
                created_at=now, last_seen=now))
        return opened

    def get(self, session_id: str | None) -> ConsoleSession | None:
        """The live session, its idle clock restarted; None when unknown, expired or
        signed out."""
        if not session_id:
            return None
        now = self.clock()
        with self.store.transaction() as session:
            row = session.get(ConsoleSessionRow, id_sha256(session_id))
            if row is None or not self._live(row, now):
                return None
            row.last_seen = now
            return ConsoleSession(id=session_id, csrf=row.csrf, created_at=row.created_at,
                                  last_seen=now, principal_id=row.principal_id)

    def close(self, session_id: str | None) -> None:
        """Sign out: the session's row is revoked, in every process at once."""
        if session_id:
            with self.store.transaction() as session:
                session.execute(update(ConsoleSessionRow)
                                .where(ConsoleSessionRow.id_sha256 == id_sha256(session_id))
                                .values(revoked_at=self.clock()))

    def close_principal(self, principal_id: str) -> None:
        """End every session of a principal (a disabled key)."""
        with self.store.transaction() as session:
            session.execute(update(ConsoleSessionRow)
                            .where(ConsoleSessionRow.principal_id == principal_id,
                                   ConsoleSessionRow.revoked_at.is_(None))
                            .values(revoked_at=self.clock()))


class Admission(StrEnum):
    """A sign-in attempt's fate at the limiter."""

    ALLOWED = "allowed"
    REFUSED = "refused"  # the first refusal of this client in this window (audited)
    REFUSED_AGAIN = "refused_again"  # later ones (not audited: no flood of the chain)


SIGN_IN_GATE = 0x5D0_0B_E11  # the advisory lock that serializes sign-in counting (PostgreSQL)
MAX_CLIENT_CHARS = 64  # a client address longer than this is counted by its first 64
MAX_REFUSAL_MARKS = 10_000  # clients reported in one window; past it, refusals go unreported


@dataclass
class SignInLimiter:
    """At most ``attempts`` sign-in attempts per ``per`` from one client address, and
    ``attempts * 10`` from all addresses together (a spread-out guessing run), counted
    in the service's store (table ``console_sign_ins``), so every process serving the
    same store shares one count and a restart of `serve` does not reset it. Each
    attempt is one transaction, serialized across processes (SQLite's write lock; a
    transaction-scoped advisory lock on PostgreSQL). Raises `StoreError` when the
    database fails."""

    store: Store
    clock: Callable[[], datetime]
    attempts: int
    per: timedelta

    def admit(self, client: str) -> Admission:
        """Count one attempt; a refused attempt is not counted. The first refusal of a
        client in a window is `REFUSED` (the caller audits it), later ones
        `REFUSED_AGAIN`."""
        now = self.clock()
        client = client[:MAX_CLIENT_CHARS]
        row = ConsoleSignInRow
        with self.store.transaction() as session:
            if self.store.locks_rows:
                session.execute(select(func.pg_advisory_xact_lock(SIGN_IN_GATE)))
            session.execute(delete(row).where(row.at < now - self.per))
            counted = select(func.count()).select_from(row).where(row.refused.is_(False))
            mine = session.execute(counted.where(row.client == client)).scalar_one()
            everyone = session.execute(counted).scalar_one()
            if mine >= self.attempts or everyone >= self.attempts * 10:
                marks = select(func.count()).select_from(row).where(row.refused.is_(True))
                if (session.execute(marks.where(row.client == client)).scalar_one()
                        or session.execute(marks).scalar_one() >= MAX_REFUSAL_MARKS):
                    return Admission.REFUSED_AGAIN
                session.add(row(client=client, at=now, refused=True))
                return Admission.REFUSED
            session.execute(delete(row).where(row.client == client, row.refused.is_(True)))
            session.add(row(client=client, at=now, refused=False))
            return Admission.ALLOWED

    def allow(self, client: str) -> bool:
        return self.admit(client) is Admission.ALLOWED
