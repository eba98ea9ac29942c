"""Durable replay state: every accepted `jti` (with the sha256 of its bytes) and the
highest accepted `seq`.

The handler records a token here *before* it acts on it (opens a key, re-seals a byte,
pins a clip), in one SQLite transaction with `synchronous=FULL`, so a crash or a power
cut after acting can never let the same token, or an older one, run again. It is read
by the protocol's verifier through the `ReplayView` methods (`seen`, `last_seq`). The
sha256 lets the handler recognise an identical re-delivery of a token it accepted
(`accepted_jti`), which it answers without judging or acting again.
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

    def accepted_jti(self, sha256: str) -> str | None:
        """The jti of the accepted token whose bytes have this sha256, or None (also for
        tokens accepted before the sha256 was recorded). Raises ReleaseStateError."""
        rows = self._db.query("SELECT jti FROM accepted WHERE sha256 = ?", (sha256,))
        return str(rows[0][0]) if rows else None

    def token_sha256(self, jti: str) -> str | None:
        """The sha256 of the bytes of the accepted token `jti`, or None (not accepted, or
        accepted before the sha256 was recorded). Raises ReleaseStateError."""
        rows = self._db.query("SELECT sha256 FROM accepted WHERE jti = ?", (jti,))
        return str(rows[0][0]) if rows and rows[0][0] else None

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
        sha256: str | None = None,
        also: Callable[[sqlite3.Connection], None] | None = None,
    ) -> None:
        """Persist an accepted token; durable when this returns.

        `sha256` is the hash of the token's bytes (kept to recognise an identical
        re-delivery). `also` runs inside the same transaction (the handler creates the token's job
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
                "INSERT INTO accepted (jti, seq, basis, accepted_at, sha256) "
                "VALUES (?, ?, ?, ?, ?)",
                (jti, seq, basis, datetime.now(UTC).isoformat(), sha256),
            )
            if also is not None:
                also(conn)
