"""Per-device ``seq`` allocation: strictly increasing, one number per token, never reused.

The counter row is incremented with ``UPDATE ... RETURNING`` inside the caller's
transaction: PostgreSQL holds the row lock until commit and SQLite holds the database
lock (``BEGIN IMMEDIATE``), so two signers never see the same value, and a rolled-back
transaction gives its number back without leaving a gap in issued tokens' order.
"""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from cloud_stub.store.models import SeqCounter


def ensure_counter(session: Session, device_id: str) -> None:
    """Create the device's counter at 0 when it has none."""
    if session.get(SeqCounter, device_id) is None:
        session.add(SeqCounter(device_id=device_id, last_seq=0))
        session.flush()


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
