"""The clip index: WAL with synchronous=FULL, versioned migrations, refusal of a newer schema."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from device.vault.errors import VaultIndexError
from device.vault.index import (
    SCHEMA_VERSION,
    ClipEvent,
    ClipIndex,
    ClipState,
    EpochRecord,
    from_us,
    to_us,
)

T0 = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)


def test_pragmas_and_schema_version(tmp_path: Path) -> None:
    index = ClipIndex(tmp_path / "index.sqlite")
    db = index._db
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    index.close()
    ClipIndex(tmp_path / "index.sqlite").close()  # reopening migrates nothing twice


def test_a_newer_schema_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "index.sqlite"
    ClipIndex(path).close()
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    with pytest.raises(VaultIndexError, match="newer than this agent"):
        ClipIndex(path)


def test_rows_round_trip(tmp_path: Path) -> None:
    index = ClipIndex(tmp_path / "index.sqlite")
    index.add_epoch(EpochRecord("1772366400-0123abcd", T0, T0 + timedelta(hours=1), "age1x"))
    index.insert_recording("20260301T120000Z-0badf00d", T0, "1772366400-0123abcd")
    events = [ClipEvent("button", T0 + timedelta(seconds=3))]
    index.finish(
        "20260301T120000Z-0badf00d", end=T0 + timedelta(seconds=30), events=events,
        size=1234, sha256="ab" * 32, complete=True,
    )
    [clip] = index.clips()
    assert clip.start == T0
    assert clip.events == tuple(events)
    assert (clip.bytes, clip.sha256, clip.state, clip.complete) == (
        1234, "ab" * 32, ClipState.SEALED, True,
    )
    assert index.epoch("1772366400-0123abcd") is not None
    with pytest.raises(VaultIndexError):  # a clip must name a recorded epoch
        index.insert_recording("20260301T120001Z-0badf00e", T0, "1-00000000")


def test_time_encoding_is_exact() -> None:
    assert from_us(to_us(T0)) == T0
    with pytest.raises(ValueError, match="aware"):
        to_us(datetime(2026, 1, 1))
