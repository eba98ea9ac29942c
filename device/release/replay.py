"""Durable replay state: every accepted `jti` and the highest accepted `seq`.

The handler records a token here *before* it acts on it (opens a key, re-seals a byte,
pins a clip), in one SQLite transaction with `synchronous=FULL`, so a crash or a power
cut after acting can never let the same token, or an older one, run again. It is read
by the protocol's verifier through the `ReplayView` methods (`seen`, `last_seq`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime

from device.release.db import ReleaseDb
from device.release.errors import ReleaseStateError


class ReplayState:
    """Seen token ids and the sequence high-water mark, in the release database."""

    def __init__(self, db: ReleaseDb) -> None:
        self._db = db

    def seen(self, jti: str) -> bool:
        """True when a token with this id was accepted before. Raises ReleaseStateError."""
        return bool(self._db.query("SELECT 1 FROM accepted WHERE jti = ?", (jti,)))

    def highest_seq(self) -> int | None:
        """The highest accepted seq, or None before the first token. Raises ReleaseStateError."""
        rows = self._db.query("SELECT MAX(seq) FROM accepted")
        value = rows[0][0] if rows else None
        return int(value) if isinstance(value, int) else None

    def last_seq(self) -> int:
        """`ReplayView`: the highest accepted seq, 0 before the first token (seq starts at 1)."""
        return self.highest_seq() or 0

    def record(
        self,
        jti: str,
        seq: int,
        basis: str,
        *,
        also: Callable[[sqlite3.Connection], None] | None = None,
    ) -> None:
        """Persist an accepted token; durable when this returns.

        `also` runs inside the same transaction (the handler creates the token's job
        there, so a crash leaves either both or neither). Raises ReleaseStateError when
        the jti is already recorded or seq does not rise (a second check, inside the
        transaction, against a race with the verifier's view).
        """
        with self._db.transaction() as conn:
            if conn.execute("SELECT 1 FROM accepted WHERE jti = ?", (jti,)).fetchone():
                raise ReleaseStateError(f"token {jti!r} was already accepted")
            row = conn.execute("SELECT MAX(seq) FROM accepted").fetchone()
            if row is not None and row[0] is not None and seq <= int(row[0]):
                raise ReleaseStateError(f"seq {seq} does not rise above {row[0]}")
            conn.execute(
                "INSERT INTO accepted (jti, seq, basis, accepted_at) VALUES (?, ?, ?, ?)",
                (jti, seq, basis, datetime.now(UTC).isoformat()),
            )
            if also is not None:
                also(conn)
