"""Durable records of the release handler: deferred tokens, per-token jobs, the outbox.

- `deferred`: the bytes of tokens that arrived while the clock was unsynchronized, kept
  until the clock can judge them (bounded: the oldest is dropped past `max_deferred`).
- `jobs` / `job_clips`: one job per accepted release token and one row per clip in its
  window, moving `pending -> sealed -> uploaded`; a clip is re-sealed at most once and
  its bytes are sent at most once per token, also across restarts.
- `outbox`: results and owner notices waiting to be published, each with the time it is
  due (a delayed notice under a non-disclosure order waits for `notify_after`).

A finished job keeps its final `result` payload (`Job.result`): an identical re-delivery
of its token is answered with those same bytes (`ReleaseHandler`, ADR 0011).

Every method is one SQLite transaction; raises ReleaseStateError. This store is the
only writer of its database (one agent per state directory), so it remembers when it
last found the deferred queue or the outbox empty and answers the release service's
idle passes from memory until it writes a row there again.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from device.release.db import ReleaseDb
from protocol.timefmt import format_time, parse_time


class JobState(StrEnum):
    """A job's state in the release database."""

    running = "running"
    done = "done"
    failed = "failed"


class JobClipState(StrEnum):
    """A clip's progress in its job: re-sealed once, then uploaded once."""

    pending = "pending"
    sealed = "sealed"
    uploaded = "uploaded"


@dataclass(frozen=True, slots=True)
class JobClip:
    clip_id: str
    start: datetime
    end: datetime
    state: JobClipState
    bytes: int | None
    sha256: str | None


@dataclass(frozen=True, slots=True)
class Job:
    jti: str
    basis: str
    claims: str  # the verified claims as JSON (ReleaseClaims.to_payload)
    state: JobState
    clips: tuple[JobClip, ...]
    result: bytes | None = None  # the final `result` payload, once the job ended


@dataclass(frozen=True, slots=True)
class OutboxItem:
    id: int
    topic: str
    payload: bytes
    retain: bool
    due_at: datetime


IMMEDIATE = datetime(1970, 1, 1, tzinfo=UTC)  # due time of a message to send at once


def _now() -> str:
    return format_time(datetime.now(UTC))


class JobStore:
    """Deferred tokens, jobs and the outbox in the release database."""

    def __init__(self, db: ReleaseDb, *, max_deferred: int = 64) -> None:
        self._db = db
        self._max_deferred = max_deferred
        # Known empty since the last read found no row (both under the database's lock;
        # a write that adds a row clears its flag inside its transaction).
        self._no_deferred = False
        self._no_outbox = False

    # deferred tokens ---------------------------------------------------------------
    def defer(self, sha256: str, token: bytes) -> bool:
        """Keep a token for later; False when the same bytes are already waiting."""
        with self._db.transaction() as conn:
            if conn.execute("SELECT 1 FROM deferred WHERE sha256 = ?", (sha256,)).fetchone():
                return False
            self._no_deferred = False
            conn.execute(
                "INSERT INTO deferred (sha256, token, received_at) VALUES (?, ?, ?)",
                (sha256, token, _now()),
            )
            conn.execute(
                "DELETE FROM deferred WHERE sha256 NOT IN "
                "(SELECT sha256 FROM deferred ORDER BY received_at DESC, rowid DESC LIMIT ?)",
                (self._max_deferred,),
            )
            return True

    def quiet(self) -> bool:
        """True when the last look found the deferred queue and the outbox empty and no
        row has been written there since: the intake's chores have nothing to do here."""
        with self._db.lock:
            return self._no_deferred and self._no_outbox

    def deferred(self) -> list[tuple[str, bytes]]:
        with self._db.lock:
            if self._no_deferred:
                return []
            rows = self._db.query("SELECT sha256, token FROM deferred ORDER BY rowid")
            self._no_deferred = not rows
        return [(str(sha), bytes(tok)) for sha, tok in rows]

    def is_deferred(self, sha256: str) -> bool:
        """True when the token with these bytes waits in the deferred queue."""
        return bool(self._db.query("SELECT 1 FROM deferred WHERE sha256 = ?", (sha256,)))

    def drop_deferred(self, sha256: str) -> None:
        with self._db.transaction() as conn:
            conn.execute("DELETE FROM deferred WHERE sha256 = ?", (sha256,))

    # jobs --------------------------------------------------------------------------
    def create_job(
        self,
        jti: str,
        basis: str,
        claims: str,
        clips: list[tuple[str, datetime, datetime]],
        *,
        conn: sqlite3.Connection | None = None,
    ) -> None:
        """Create a running job; inside `conn`'s transaction when given."""
        if conn is None:
            with self._db.transaction() as own:
                self._insert_job(own, jti, basis, claims, clips)
        else:
            self._insert_job(conn, jti, basis, claims, clips)

    @staticmethod
    def _insert_job(
        conn: sqlite3.Connection,
        jti: str,
        basis: str,
        claims: str,
        clips: list[tuple[str, datetime, datetime]],
    ) -> None:
        conn.execute(
            "INSERT INTO jobs (jti, basis, claims, state, created_at) VALUES (?, ?, ?, ?, ?)",
            (jti, basis, claims, JobState.running, _now()),
        )
        conn.executemany(
            "INSERT INTO job_clips (jti, clip_id, start, end, state) VALUES (?, ?, ?, ?, ?)",
            [
                (jti, cid, format_time(s), format_time(e), JobClipState.pending)
                for cid, s, e in clips
            ],
        )

    def running_jobs(self) -> list[Job]:
        rows = self._db.query(
            "SELECT jti FROM jobs WHERE state = ? ORDER BY rowid", (JobState.running,)
        )
        return [job for (jti,) in rows if (job := self.job(str(jti))) is not None]

    def job(self, jti: str) -> Job | None:
        rows = self._db.query(
            "SELECT basis, claims, state, result FROM jobs WHERE jti = ?", (jti,)
        )
        if not rows:
            return None
        basis, claims, state, result = rows[0]
        clips = self._db.query(
            "SELECT clip_id, start, end, state, bytes, sha256 FROM job_clips "
            "WHERE jti = ? ORDER BY start, clip_id",
            (jti,),
        )
        return Job(
            jti=jti,
            basis=str(basis),
            claims=str(claims),
            state=JobState(str(state)),
            result=bytes(result) if result is not None else None,
            clips=tuple(
                JobClip(
                    clip_id=str(cid),
                    start=parse_time(start),
                    end=parse_time(end),
                    state=JobClipState(str(cstate)),
                    bytes=int(size) if isinstance(size, int) else None,
                    sha256=str(sha) if sha is not None else None,
                )
                for cid, start, end, cstate, size, sha in clips
            ),
        )

    def clip_sealed(self, jti: str, clip_id: str, size: int, sha256: str) -> None:
        with self._db.transaction() as conn:
            conn.execute(
                "UPDATE job_clips SET state = ?, bytes = ?, sha256 = ? "
                "WHERE jti = ? AND clip_id = ? AND state = ?",
                (JobClipState.sealed, size, sha256, jti, clip_id, JobClipState.pending),
            )

    def clip_uploaded(self, jti: str, clip_id: str) -> None:
        with self._db.transaction() as conn:
            conn.execute(
                "UPDATE job_clips SET state = ? WHERE jti = ? AND clip_id = ? AND state = ?",
                (JobClipState.uploaded, jti, clip_id, JobClipState.sealed),
            )

    def drop_clip(self, jti: str, clip_id: str) -> None:
        """Forget a clip that can no longer be released (gone from the store)."""
        with self._db.transaction() as conn:
            conn.execute(
                "DELETE FROM job_clips WHERE jti = ? AND clip_id = ? AND state = ?",
                (jti, clip_id, JobClipState.pending),
            )

    def finish_job(
        self,
        jti: str,
        state: JobState,
        detail: str,
        outbox: list[tuple[str, bytes, bool, datetime]],
        *,
        result: bytes | None = None,
    ) -> None:
        """Mark a job done or failed and queue its messages in the same transaction. The
        job keeps `result`, its final `result` payload (one of the queued messages)."""
        with self._db.transaction() as conn:
            conn.execute(
                "UPDATE jobs SET state = ?, detail = ?, result = ? WHERE jti = ?",
                (state, detail, result, jti),
            )
            self._queue(conn, outbox)

    # outbox ------------------------------------------------------------------------
    def enqueue(self, topic: str, payload: bytes, *, retain: bool, due_at: datetime) -> None:
        with self._db.transaction() as conn:
            self._queue(conn, [(topic, payload, retain, due_at)])

    def enqueue_once(
        self, topic: str, payload: bytes, *, retain: bool, due_at: datetime
    ) -> bool:
        """Queue a message unless the same bytes already wait for the same topic; True
        when queued. (Repeated re-deliveries of a token cannot grow the outbox.)"""
        with self._db.transaction() as conn:
            if conn.execute(
                "SELECT 1 FROM outbox WHERE topic = ? AND payload = ?", (topic, payload)
            ).fetchone():
                return False
            self._queue(conn, [(topic, payload, retain, due_at)])
            return True

    def _queue(self, conn: sqlite3.Connection,
               items: list[tuple[str, bytes, bool, datetime]]) -> None:
        self._no_outbox = False
        conn.executemany(
            "INSERT INTO outbox (topic, payload, retain, due_at) VALUES (?, ?, ?, ?)",
            [(t, p, int(r), format_time(d.replace(microsecond=0))) for t, p, r, d in items],
        )

    def due(self, now: datetime) -> list[OutboxItem]:
        with self._db.lock:
            if self._no_outbox:
                return []
            rows = self._db.query(
                "SELECT id, topic, payload, retain, due_at FROM outbox ORDER BY id")
            self._no_outbox = not rows
        items = [
            OutboxItem(int(i), str(t), bytes(p), bool(r), parse_time(d)) for i, t, p, r, d in rows
        ]
        return [item for item in items if item.due_at <= now]

    def pending_outbox(self) -> int:
        rows = self._db.query("SELECT COUNT(*) FROM outbox")
        return int(rows[0][0])

    def sent(self, item_id: int) -> None:
        with self._db.transaction() as conn:
            conn.execute("DELETE FROM outbox WHERE id = ?", (item_id,))
