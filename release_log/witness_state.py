"""A witness's durable state: per origin, the latest checkpoint it cosigned, in SQLite.

`advance` checks the old size and stores the new checkpoint in one IMMEDIATE
transaction with `synchronous=FULL`, so a crash never rolls a witness back and two
concurrent requests cannot both advance from the same size (c2sp.org/tlog-witness,
"checking the old size ... and persisting the new checkpoint must be performed
atomically"). The witness answers only after `advance` returned.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from release_log.witness_rules import Stored

SCHEMA = """
CREATE TABLE IF NOT EXISTS checkpoints (
    origin TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    root BLOB NOT NULL,
    note BLOB NOT NULL
)
"""


class WitnessState:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(SCHEMA)

    def stored(self, origin: str) -> Stored | None:
        row = self._db.execute(
            "SELECT size, root FROM checkpoints WHERE origin = ?", (origin,)
        ).fetchone()
        return None if row is None else Stored(int(row[0]), bytes(row[1]))

    def note(self, origin: str) -> bytes | None:
        row = self._db.execute(
            "SELECT note FROM checkpoints WHERE origin = ?", (origin,)
        ).fetchone()
        return None if row is None else bytes(row[0])

    def origins(self) -> list[str]:
        return [str(r[0]) for r in self._db.execute("SELECT origin FROM checkpoints")]

    def advance(self, origin: str, old_size: int, size: int, root: bytes, note: bytes) -> bool:
        """Store (size, root, note) if the stored size is still `old_size` (0: none).
        False, and nothing written, if another request moved it meanwhile."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            row = self._db.execute(
                "SELECT size FROM checkpoints WHERE origin = ?", (origin,)
            ).fetchone()
            current = 0 if row is None else int(row[0])
            if current != old_size:
                self._db.execute("ROLLBACK")
                return False
            self._db.execute(
                "INSERT INTO checkpoints (origin, size, root, note) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(origin) DO UPDATE SET size = excluded.size, "
                "root = excluded.root, note = excluded.note",
                (origin, size, root, note),
            )
            self._db.execute("COMMIT")
            return True
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def close(self) -> None:
        self._db.close()
