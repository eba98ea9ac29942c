"""The clip index: SQLite in WAL mode with ``synchronous=FULL``, versioned migrations.

It holds metadata only (times, sizes, hashes of ciphertext, event kinds, epoch
recipients): never plaintext, never a secret key. Times are stored as integer
microseconds since the Unix epoch (UTC), so ordering is numeric. One connection is
shared under a lock, because the recorder's encoder thread and the agent's housekeeping
both use the store.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

from device.vault.errors import IndexFull, VaultIndexError


class ClipState(StrEnum):
    RECORDING = "recording"
    SEALED = "sealed"
    TRUNCATED = "truncated"
    HELD = "held"
    RELEASED = "released"


@dataclass(frozen=True, slots=True)
class ClipEvent:
    kind: str
    at: datetime


@dataclass(frozen=True, slots=True)
class ClipRecord:
    """One clip as the index knows it. `bytes` and `sha256` describe the ciphertext."""

    id: str
    start: datetime
    end: datetime | None
    events: tuple[ClipEvent, ...]
    bytes: int
    sha256: str | None
    epoch_id: str
    state: ClipState
    complete: bool  # False when the clip ended truncated (kept through held/released)
    hold_until: datetime | None
    pending_upload: bool

    def held_at(self, now: datetime) -> bool:
        """True while a preservation hold pins the clip."""
        return self.hold_until is not None and self.hold_until > now


@dataclass(frozen=True, slots=True)
class EpochRecord:
    id: str
    start: datetime
    end: datetime
    recipient: str


def to_us(value: datetime) -> int:
    """Aware datetime -> integer microseconds since the Unix epoch. Raises ValueError."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("the clip index needs aware (UTC) datetimes")
    delta = value.astimezone(UTC) - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_us(value: int) -> datetime:
    return datetime.fromtimestamp(value // 1_000_000, UTC).replace(microsecond=value % 1_000_000)


_MIGRATIONS: tuple[str, ...] = (
    # 1: the first schema
    """
    CREATE TABLE epochs (
        id TEXT PRIMARY KEY,
        start_us INTEGER NOT NULL,
        end_us INTEGER NOT NULL,
        recipient TEXT NOT NULL
    );
    CREATE TABLE clips (
        id TEXT PRIMARY KEY,
        start_us INTEGER NOT NULL,
        end_us INTEGER,
        events TEXT NOT NULL DEFAULT '[]',
        bytes INTEGER NOT NULL DEFAULT 0,
        sha256 TEXT,
        epoch_id TEXT NOT NULL REFERENCES epochs(id),
        state TEXT NOT NULL CHECK (state IN
            ('recording', 'sealed', 'truncated', 'held', 'released')),
        complete INTEGER NOT NULL DEFAULT 0,
        hold_until_us INTEGER,
        pending_upload INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX clips_by_start ON clips (start_us);
    CREATE INDEX clips_by_state ON clips (state);
    """,
)
SCHEMA_VERSION = len(_MIGRATIONS)

_CLIP_COLUMNS = (
    "id, start_us, end_us, events, bytes, sha256, epoch_id, state, complete, "
    "hold_until_us, pending_upload"
)


def _row_to_clip(row: sqlite3.Row | tuple[object, ...]) -> ClipRecord:
    (cid, start, end, events, size, sha, epoch, state, complete, hold, pending) = tuple(row)
    parsed = tuple(
        ClipEvent(str(e["kind"]), datetime.fromisoformat(str(e["at"])))
        for e in json.loads(str(events))
    )
    return ClipRecord(
        id=str(cid),
        start=from_us(int(str(start))),
        end=None if end is None else from_us(int(str(end))),
        events=parsed,
        bytes=int(str(size)),
        sha256=None if sha is None else str(sha),
        epoch_id=str(epoch),
        state=ClipState(str(state)),
        complete=bool(complete),
        hold_until=None if hold is None else from_us(int(str(hold))),
        pending_upload=bool(pending),
    )


def events_json(events: Iterable[ClipEvent]) -> str:
    return json.dumps(
        [{"kind": e.kind, "at": e.at.astimezone(UTC).isoformat()} for e in events],
        separators=(",", ":"),
    )


class ClipIndex:
    """The SQLite index file. Every method raises VaultIndexError on a database error
    (IndexFull, which is also a StorageFull, when the disk is full)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.RLock()
        try:
            self._db = sqlite3.connect(
                path, isolation_level=None, check_same_thread=False, timeout=30
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._migrate()
        except sqlite3.Error as exc:
            raise VaultIndexError(f"cannot open the clip index {path}: {exc}") from exc

    def _migrate(self) -> None:
        version = int(self._db.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise VaultIndexError(
                f"clip index {self.path} has schema {version}, newer than this agent "
                f"({SCHEMA_VERSION}); refusing to touch it"
            )
        for number in range(version, SCHEMA_VERSION):
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for statement in _MIGRATIONS[number].split(";"):
                    if statement.strip():
                        self._db.execute(statement)
                self._db.execute(f"PRAGMA user_version={number + 1}")
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    yield self._db
                    self._db.execute("COMMIT")
                except BaseException:
                    if self._db.in_transaction:
                        self._db.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                if getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL:
                    raise IndexFull(f"clip index {self.path}: disk full: {exc}") from exc
                raise VaultIndexError(f"clip index {self.path}: {exc}") from exc

    def _query(self, sql: str, params: Sequence[object] = ()) -> list[tuple[object, ...]]:
        with self._lock:
            try:
                return list(self._db.execute(sql, params).fetchall())
            except sqlite3.Error as exc:
                raise VaultIndexError(f"clip index {self.path}: {exc}") from exc

    # epochs

    def add_epoch(self, epoch: EpochRecord) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO epochs (id, start_us, end_us, recipient) VALUES (?, ?, ?, ?)",
                (epoch.id, to_us(epoch.start), to_us(epoch.end), epoch.recipient),
            )

    def epochs(self) -> list[EpochRecord]:
        rows = self._query("SELECT id, start_us, end_us, recipient FROM epochs ORDER BY start_us")
        return [
            EpochRecord(str(r[0]), from_us(int(str(r[1]))), from_us(int(str(r[2]))), str(r[3]))
            for r in rows
        ]

    def epoch(self, epoch_id: str) -> EpochRecord | None:
        return next((e for e in self.epochs() if e.id == epoch_id), None)

    # clips

    def insert_recording(self, clip_id: str, start: datetime, epoch_id: str) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO clips (id, start_us, epoch_id, state) VALUES (?, ?, ?, 'recording')",
                (clip_id, to_us(start), epoch_id),
            )

    def finish(
        self,
        clip_id: str,
        *,
        end: datetime | None,
        events: Sequence[ClipEvent],
        size: int,
        sha256: str,
        complete: bool,
    ) -> None:
        """End a clip: sealed or truncated (held instead, when a hold already covers it)."""
        state = ClipState.SEALED if complete else ClipState.TRUNCATED
        with self._tx() as db:
            db.execute(
                "UPDATE clips SET end_us = ?, events = ?, bytes = ?, sha256 = ?, "
                "state = CASE WHEN COALESCE(hold_until_us, 0) > ? THEN 'held' ELSE ? END, "
                "complete = ? WHERE id = ?",
                (
                    None if end is None else to_us(end),
                    events_json(events),
                    size,
                    sha256,
                    to_us(end) if end is not None else 0,
                    state.value,
                    int(complete),
                    clip_id,
                ),
            )

    def set_events(self, clip_id: str, events: Sequence[ClipEvent]) -> None:
        with self._tx() as db:
            db.execute("UPDATE clips SET events = ? WHERE id = ?", (events_json(events), clip_id))

    def delete(self, clip_ids: Iterable[str]) -> None:
        with self._tx() as db:
            db.executemany("DELETE FROM clips WHERE id = ?", [(c,) for c in clip_ids])

    def get(self, clip_id: str) -> ClipRecord | None:
        sql = f"SELECT {_CLIP_COLUMNS} FROM clips WHERE id = ?"  # noqa: S608 (constant columns)
        rows = self._query(sql, (clip_id,))
        return _row_to_clip(rows[0]) if rows else None

    def clips(
        self,
        since: datetime | None = None,
        until: datetime | None = None,
        states: Iterable[ClipState] | None = None,
    ) -> list[ClipRecord]:
        """Clips overlapping [since, until), oldest first, optionally filtered by state."""
        sql = f"SELECT {_CLIP_COLUMNS} FROM clips WHERE 1=1"  # noqa: S608 (values are bound)
        params: list[object] = []
        if until is not None:
            sql += " AND start_us < ?"
            params.append(to_us(until))
        if since is not None:
            sql += " AND COALESCE(end_us, start_us) >= ?"
            params.append(to_us(since))
        if states is not None:
            wanted = [ClipState(s).value for s in states]
            sql += f" AND state IN ({','.join('?' * len(wanted))})" if wanted else " AND 0"
            params.extend(wanted)
        sql += " ORDER BY start_us, id"
        return [_row_to_clip(r) for r in self._query(sql, params)]

    def set_state(self, clip_ids: Iterable[str], state: ClipState) -> None:
        with self._tx() as db:
            db.executemany(
                "UPDATE clips SET state = ? WHERE id = ?", [(state.value, c) for c in clip_ids]
            )

    def set_hold(self, clip_ids: Iterable[str], until: datetime) -> None:
        with self._tx() as db:
            db.executemany(
                "UPDATE clips SET hold_until_us = MAX(COALESCE(hold_until_us, 0), ?), "
                "state = CASE WHEN state IN ('sealed', 'truncated') THEN 'held' ELSE state END "
                "WHERE id = ?",
                [(to_us(until), c) for c in clip_ids],
            )

    def release_expired_holds(self, now: datetime) -> int:
        """Held clips whose hold ended go back to sealed/truncated. Returns how many."""
        with self._tx() as db:
            cursor = db.execute(
                "UPDATE clips SET state = CASE WHEN complete THEN 'sealed' ELSE 'truncated' END "
                "WHERE state = 'held' AND COALESCE(hold_until_us, 0) <= ?",
                (to_us(now),),
            )
            return int(cursor.rowcount)

    def set_pending_upload(self, clip_ids: Iterable[str], pending: bool) -> None:
        with self._tx() as db:
            db.executemany(
                "UPDATE clips SET pending_upload = ? WHERE id = ?",
                [(int(pending), c) for c in clip_ids],
            )
