"""Durable release state: replay records survive reopening, refuse a repeat or a lower
seq inside the transaction; deferred tokens are bounded; the outbox respects due times."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from device.clock import KernelClock, ManualClock
from device.release.db import ReleaseDb
from device.release.errors import ReleaseStateError
from device.release.jobs import JobState, JobStore
from device.release.replay import ReplayState


def test_replay_state_is_durable_and_monotonic(tmp_path: Path) -> None:
    path = tmp_path / "release.sqlite3"
    db = ReleaseDb(path)
    replay = ReplayState(db)
    assert replay.highest_seq() is None
    replay.record("a", 5, "warrant")
    db.close()
    # an agent restart: a new connection sees the same state
    db = ReleaseDb(path)
    replay = ReplayState(db)
    assert replay.seen("a")
    assert not replay.seen("b")
    assert replay.highest_seq() == 5
    with pytest.raises(ReleaseStateError, match="already accepted"):
        replay.record("a", 9, "warrant")
    with pytest.raises(ReleaseStateError, match="does not rise"):
        replay.record("b", 5, "warrant")
    replay.record("b", 6, "emergency")
    assert replay.highest_seq() == 6
    assert (path.stat().st_mode & 0o777) == 0o600
    db.close()


def test_deferred_queue_is_bounded_and_deduplicated(tmp_path: Path) -> None:
    db = ReleaseDb(tmp_path / "r.sqlite3")
    jobs = JobStore(db, max_deferred=3)
    assert jobs.defer("s1", b"one")
    assert not jobs.defer("s1", b"one")
    for i in range(2, 6):
        jobs.defer(f"s{i}", b"x")
    assert [sha for sha, _ in jobs.deferred()] == ["s3", "s4", "s5"]
    jobs.drop_deferred("s4")
    assert [sha for sha, _ in jobs.deferred()] == ["s3", "s5"]
    db.close()


def test_outbox_waits_for_its_due_time(tmp_path: Path) -> None:
    db = ReleaseDb(tmp_path / "r.sqlite3")
    jobs = JobStore(db)
    now = datetime(2026, 1, 1, tzinfo=UTC)
    jobs.enqueue("t/result", b"r", retain=False, due_at=now)
    jobs.enqueue("t/notice", b"n", retain=True, due_at=now + timedelta(days=30))
    assert [i.topic for i in jobs.due(now)] == ["t/result"]
    item = jobs.due(now)[0]
    jobs.sent(item.id)
    assert jobs.due(now) == []
    later = jobs.due(now + timedelta(days=31))
    assert [(i.topic, i.retain) for i in later] == [("t/notice", True)]
    db.close()


def test_job_clips_move_forward_only(tmp_path: Path) -> None:
    db = ReleaseDb(tmp_path / "r.sqlite3")
    jobs = JobStore(db)
    t = datetime(2026, 1, 1, tzinfo=UTC)
    jobs.create_job("j", "warrant", "{}", [("c1", t, t + timedelta(seconds=5))])
    jobs.clip_uploaded("j", "c1")  # not sealed yet: no effect
    assert jobs.job("j") is not None
    assert jobs.job("j").clips[0].state == "pending"  # type: ignore[union-attr]
    jobs.clip_sealed("j", "c1", 10, "ab" * 32)
    jobs.clip_sealed("j", "c1", 99, "cd" * 32)  # a second seal does not overwrite
    jobs.clip_uploaded("j", "c1")
    clip = jobs.job("j").clips[0]  # type: ignore[union-attr]
    assert (clip.state, clip.bytes, clip.sha256) == ("uploaded", 10, "ab" * 32)
    assert [j.jti for j in jobs.running_jobs()] == ["j"]
    jobs.finish_job("j", JobState.done, "", [])
    assert jobs.running_jobs() == []
    db.close()


def test_manual_clock_and_kernel_clock() -> None:
    clock = ManualClock(datetime(2026, 1, 1, tzinfo=UTC), synchronized=False)
    assert not clock.synchronized()
    clock.advance(timedelta(seconds=5))
    clock.set_synchronized(True)
    assert clock.now() == datetime(2026, 1, 1, 0, 0, 5, tzinfo=UTC)
    assert clock.synchronized()
    with pytest.raises(ValueError, match="timezone-aware"):
        ManualClock(datetime(2026, 1, 1))
    kernel = KernelClock()
    assert kernel.now().tzinfo is UTC
    assert isinstance(kernel.synchronized(), bool)
