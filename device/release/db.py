"""The release side's SQLite database: WAL, `synchronous=FULL`, one schema.

One connection shared by the release service's threads behind a lock; every write is
its own transaction and is on disk (fsync'd by SQLite) when the call returns, which is
what lets the handler persist the replay state *before* acting on a token. A database
an older agent wrote gets the columns added since (`_ADDED_COLUMNS`) when it is opened.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from device.release.errors import ReleaseStateError

SCHEMA_VERSION = 2

# Columns added after version 1, with their declaration: a database written by an
# older agent gets them (NULL in its old rows) when it is opened.
_ADDED_COLUMNS = (
    ("accepted", "sha256", "TEXT"),  # sha256 of the accepted token's bytes (version 2)
    ("jobs", "result", "BLOB"),  # the job's final `result` payload (version 2)
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS accepted (
    jti TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    basis TEXT NOT NULL,
    accepted_at TEXT NOT NULL,
    sha256 TEXT
);
CREATE TABLE IF NOT EXISTS deferred (
    sha256 TEXT PRIMARY KEY,
    token BLOB NOT NULL,
    received_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS jobs (
    jti TEXT PRIMARY KEY,
    basis TEXT NOT NULL,
    claims TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('running', 'done', 'failed')),
    detail TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL,
    result BLOB
);
CREATE TABLE IF NOT EXISTS job_clips (
    jti TEXT NOT NULL REFERENCES jobs(jti),
    clip_id TEXT NOT NULL,
    start TEXT NOT NULL,
    end TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'sealed', 'uploaded')),
    bytes INTEGER,
    sha256 TEXT,
    PRIMARY KEY (jti, clip_id)
);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    retain INTEGER NOT NULL,
    due_at TEXT NOT NULL
);
"""


class ReleaseDb:
    """Open (and create) the database. Raises ReleaseStateError."""

    def __init__(self, path: Path) -> None:
        self.lock = threading.RLock()
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._conn = sqlite3.connect(
                path, isolation_level=None, check_same_thread=False, timeout=30
            )
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.execute("PRAGMA foreign_keys=ON")
            self._conn.executescript(_SCHEMA)
            self._add_columns()
            self._conn.execute(
                "CREATE INDEX IF NOT EXISTS ix_accepted_sha256 ON accepted (sha256)"
            )
            self._conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except sqlite3.Error as exc:
            raise ReleaseStateError(f"cannot open release state {path}: {exc}") from exc
        path.chmod(0o600)

    def _add_columns(self) -> None:
        """Bring a version 1 database up to this schema (columns are only ever added)."""
        for table, column, declaration in _ADDED_COLUMNS:
            names = {row[1] for row in self._conn.execute(f"PRAGMA table_info({table})")}
            if column not in names:
                self._conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One durable transaction. Raises ReleaseStateError on any SQLite error."""
        with self.lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    yield self._conn
                except BaseException:
                    self._conn.execute("ROLLBACK")
                    raise
                self._conn.execute("COMMIT")
            except sqlite3.Error as exc:
                raise ReleaseStateError(f"release state: {exc}") from exc

    def query(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
        """Run a read-only query. Raises ReleaseStateError."""
        with self.lock:
            try:
                return list(self._conn.execute(sql, params).fetchall())
            except sqlite3.Error as exc:
                raise ReleaseStateError(f"release state: {exc}") from exc

    def close(self) -> None:
        with self.lock:
            self._conn.close()
