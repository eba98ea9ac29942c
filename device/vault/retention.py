"""Retention as a pure decision: which clips to delete, oldest first, and whether that is enough.

No I/O and no clock reading: the clips, the time and the disk figures are passed in (the
store executes the plan). Rules, in order:

1. Never remove a clip that is recording, under a preservation hold (``hold_until`` in
   the future), or waiting for an upload.
2. Remove every other clip older than ``max_age`` (by its start).
3. While the clips use more than ``quota_bytes``, or the disk has less than
   ``min_free_bytes`` free, remove the oldest remaining removable clip.
4. If rule 3 cannot be satisfied even after removing every removable clip, the plan is
   ``blocked``: the store then refuses to open new clips until space returns.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from device.vault.index import ClipRecord, ClipState


@dataclass(frozen=True, slots=True)
class RetentionPlan:
    remove: tuple[str, ...]  # clip ids, oldest first
    freed_bytes: int
    blocked: bool  # True when even after `remove` the quota or free-space floor is broken
    reason: str  # human-readable; empty when nothing is wrong

    @property
    def nothing_to_do(self) -> bool:
        return not self.remove and not self.blocked


def removable(clip: ClipRecord, now: datetime) -> bool:
    """True when retention may delete `clip` (rule 1)."""
    return (
        clip.state is not ClipState.RECORDING
        and not clip.held_at(now)
        and not clip.pending_upload
    )


def plan_retention(
    clips: Iterable[ClipRecord],
    *,
    now: datetime,
    max_age: timedelta,
    quota_bytes: int,
    free_bytes: int,
    min_free_bytes: int,
) -> RetentionPlan:
    """Decide what to delete. Pure; raises nothing for valid input."""
    ordered = sorted(clips, key=lambda c: (c.start, c.id))
    used = sum(c.bytes for c in ordered)
    cutoff = now - max_age
    remove: list[str] = []
    freed = 0
    candidates: list[ClipRecord] = []
    for clip in ordered:
        if not removable(clip, now):
            continue
        if clip.start < cutoff:
            remove.append(clip.id)
            freed += clip.bytes
        else:
            candidates.append(clip)

    def short_by() -> int:
        over_quota = (used - freed) - quota_bytes
        under_free = min_free_bytes - (free_bytes + freed)
        return max(over_quota, under_free, 0)

    for clip in candidates:
        if short_by() <= 0:
            break
        remove.append(clip.id)
        freed += clip.bytes
    missing = short_by()
    reason = ""
    if missing > 0:
        kept = [c for c in ordered if not removable(c, now)]
        reason = (
            f"storage full: {missing} bytes short of the quota/free-space floor and nothing "
            f"more can be removed ({len(kept)} clips are recording, held or awaiting upload)"
        )
    return RetentionPlan(tuple(remove), freed, missing > 0, reason)
