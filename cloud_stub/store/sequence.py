"""Per-device ``seq`` allocation: strictly increasing, one number per token, never reused.

The counter row is incremented with ``UPDATE ... RETURNING`` inside the caller's
transaction: PostgreSQL holds the row lock until commit and SQLite holds the database
lock (``BEGIN IMMEDIATE``), so two signers never see the same value, and a rolled-back
transaction gives its number back without leaving a gap in issued tokens' order. A
transaction that allocates for several devices locks their counters first, all at once
and in the order of their ids (`lock_counters`), so two of them never wait on each other.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from cloud_stub.store.models import SeqCounter


def ensure_counter(session: Session, device_id: str) -> None:
    """Create the device's counter at 0 when it has none."""
    if session.get(SeqCounter, device_id) is None:
        session.add(SeqCounter(device_id=device_id, last_seq=0))
        session.flush()


def lock_counters(session: Session, device_ids: Iterable[str]) -> None:
    """Lock the counters of these devices until the transaction ends, in the order of their
    ids (``SELECT ... ORDER BY device_id FOR UPDATE``; SQLite's writer lock already
    serializes). Two transactions that each allocate for several devices then take those
    locks in the same order and cannot deadlock; a device without a counter is skipped
    (`allocate_seq` creates it)."""
    wanted = sorted(set(device_ids))
    if wanted:
        session.execute(
            select(SeqCounter.device_id)
            .where(SeqCounter.device_id.in_(wanted))
            .order_by(SeqCounter.device_id)
            .with_for_update()
        ).all()


def allocate_seq(session: Session, device_id: str) -> int:
    """The next ``seq`` for the device. The counter must exist (`ensure_counter`)."""
    stmt = (
        update(SeqCounter)
        .where(SeqCounter.device_id == device_id)
        .values(last_seq=SeqCounter.last_seq + 1)
        .returning(SeqCounter.last_seq)
    )
    value = session.execute(stmt).scalar_one_or_none()
    if value is None:
        ensure_counter(session, device_id)
        value = session.execute(stmt).scalar_one()
    return int(value)


def last_seq(session: Session, device_id: str) -> int:
    value = session.execute(
        select(SeqCounter.last_seq).where(SeqCounter.device_id == device_id)
    ).scalar_one_or_none()
    return int(value or 0)
