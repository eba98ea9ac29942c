"""Retention is a pure decision: oldest first, held and pending-upload clips never go."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from device.vault.index import ClipRecord, ClipState
from device.vault.retention import RetentionPlan, plan_retention

NOW = datetime(2026, 3, 31, 12, 0, tzinfo=UTC)
MiB = 1024 * 1024


def clip(
    name: str,
    age_days: float,
    size: int = 10 * MiB,
    *,
    state: ClipState = ClipState.SEALED,
    hold_days: float | None = None,
    pending: bool = False,
) -> ClipRecord:
    start = NOW - timedelta(days=age_days)
    return ClipRecord(
        id=name,
        start=start,
        end=start + timedelta(seconds=30),
        events=(),
        bytes=size,
        sha256="0" * 64,
        epoch_id="1-00000000",
        state=state,
        complete=state is not ClipState.TRUNCATED,
        hold_until=None if hold_days is None else NOW + timedelta(days=hold_days),
        pending_upload=pending,
    )


def plan(
    clips: list[ClipRecord], *, quota: int = 10**12, free: int = 10**12, floor: int = 0
) -> RetentionPlan:
    return plan_retention(
        clips,
        now=NOW,
        max_age=timedelta(days=30),
        quota_bytes=quota,
        free_bytes=free,
        min_free_bytes=floor,
    )


def test_nothing_to_do_when_young_and_within_limits() -> None:
    result = plan([clip("a", 1), clip("b", 2)])
    assert result.nothing_to_do
    assert not result.blocked


def test_max_age_removes_every_old_clip_but_held_and_pending() -> None:
    clips = [
        clip("old", 31),
        clip("older-truncated", 40, state=ClipState.TRUNCATED),
        clip("old-held", 45, state=ClipState.HELD, hold_days=10),
        clip("old-pending", 50, pending=True),
        clip("young", 3),
    ]
    result = plan(clips)
    assert set(result.remove) == {"old", "older-truncated"}
    assert result.remove == ("older-truncated", "old")  # oldest first


def test_expired_hold_no_longer_protects() -> None:
    result = plan([clip("was-held", 35, state=ClipState.HELD, hold_days=-1)])
    assert result.remove == ("was-held",)


def test_quota_removes_oldest_first_until_under() -> None:
    clips = [clip(f"c{i}", 10 - i) for i in range(10)]  # c0 oldest, 10 MiB each
    result = plan(clips, quota=75 * MiB)
    assert result.remove == ("c0", "c1", "c2")
    assert result.freed_bytes == 30 * MiB
    assert not result.blocked


def test_free_space_floor_skips_protected_clips() -> None:
    clips = [
        clip("held", 9, hold_days=5),
        clip("pending", 8, pending=True),
        clip("recording", 7, state=ClipState.RECORDING),
        clip("a", 6),
        clip("b", 5),
        clip("c", 4),
    ]
    result = plan(clips, free=5 * MiB, floor=20 * MiB)
    assert result.remove == ("a", "b")
    assert not result.blocked


def test_blocked_when_only_protected_clips_remain() -> None:
    clips = [clip("held", 2, hold_days=5), clip("pending", 1, pending=True)]
    result = plan(clips, free=1 * MiB, floor=100 * MiB)
    assert result.remove == ()
    assert result.blocked
    assert "storage full" in result.reason


def test_blocked_but_still_frees_what_it_can() -> None:
    result = plan([clip("a", 2), clip("held", 1, hold_days=1)], free=0, floor=100 * MiB)
    assert result.remove == ("a",)
    assert result.blocked
