"""The audit chain in the store: appends serialized, verification over the stored rows.

The hash of each entry and the verification of a chain are `cloud_stub.domain.audit_chain`'s; this
module only persists entries and serializes appends. An append locks the single
``audit_lock`` row (``SELECT ... FOR UPDATE`` on PostgreSQL; SQLite's ``BEGIN
IMMEDIATE`` already serializes writers), reads the head, links the new entry to it and
moves the head, all in the caller's transaction: a rolled-back state change leaves no
audit entry, and a committed one always has its entry.

A transaction that does slow work after its first entry (an approval signs its tokens)
queues its entries with `AuditTrail.append_at_commit` instead: they are linked to the
head, in the order queued, when it commits, so it holds the lock only for those last
writes and the commit, and every other append (a device's result) waits that long, not
for the signing (docs/architecture.md, "The audit lock at commit").
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import event, select
from sqlalchemy.orm import Session

from cloud_stub.domain import audit_chain
from cloud_stub.store.engine import AUDIT_LOCK_ID, Store
from cloud_stub.store.models import AuditLock, AuditRow

LOCK_ID = AUDIT_LOCK_ID
_QUEUED = "audit.at_commit"  # the session's queued entries (Session.info)


def _row_to_entry(row: AuditRow) -> audit_chain.AuditEntry:
    return audit_chain.AuditEntry(
        seq=row.seq,
        at=row.at,
        actor=row.actor,
        action=row.action,
        subject=row.subject,
        detail=dict(row.detail),
        prev_hash=row.prev_hash,
        hash=row.hash,
    )


class AuditTrail:
    """Appends to and reads the audit chain kept in the store."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def _head(self, session: Session) -> AuditLock:
        stmt = select(AuditLock).where(AuditLock.id == LOCK_ID)
        if self.store.locks_rows:
            stmt = stmt.with_for_update()
        head = session.execute(stmt).scalar_one_or_none()
        if head is None:
            head = AuditLock(id=LOCK_ID, head_seq=0, head_hash=audit_chain.GENESIS_HASH)
            session.add(head)
            session.flush()
            if self.store.locks_rows:
                head = session.execute(stmt).scalar_one()
        return head

    def append(
        self,
        session: Session,
        *,
        at: datetime,
        actor: str,
        action: str,
        subject: str,
        detail: dict[str, Any],
    ) -> audit_chain.AuditEntry:
        """Link a new entry to the head inside the caller's transaction. `at` is kept to
        the whole second, as the store keeps it (`UnixTime`): an entry hashed with the
        microseconds would not verify once read back."""
        head = self._head(session)
        entry = self._link(session, head, at=at, actor=actor, action=action,
                           subject=subject, detail=detail)
        session.flush()
        return entry

    @staticmethod
    def _link(session: Session, head: AuditLock, *, at: datetime, actor: str, action: str,
              subject: str, detail: dict[str, Any]) -> audit_chain.AuditEntry:
        """Add the entry that follows `head` and move the head to it (not flushed)."""
        entry = audit_chain.make_entry(
            seq=head.head_seq + 1,
            at=at.replace(microsecond=0),
            actor=actor,
            action=action,
            subject=subject,
            detail=detail,
            prev_hash=head.head_hash,
        )
        session.add(
            AuditRow(
                seq=entry.seq,
                at=entry.at,
                actor=entry.actor,
                action=entry.action,
                subject=entry.subject,
                detail=dict(entry.detail),
                prev_hash=entry.prev_hash,
                hash=entry.hash,
            )
        )
        head.head_seq = entry.seq
        head.head_hash = entry.hash
        return entry

    def append_at_commit(
        self,
        session: Session,
        *,
        at: datetime,
        actor: str,
        action: str,
        subject: str,
        detail: dict[str, Any],
    ) -> None:
        """Queue an entry that `append` links to the head just before the caller's
        transaction commits, after the entries queued before it; a rolled-back
        transaction drops it with everything else. Checked now as `append` checks it
        (raises ValueError where the entry is made, not at the commit). A transaction that
        queues entries appends none directly (they would come first in the chain)."""
        audit_chain.make_entry(seq=1, at=at.replace(microsecond=0), actor=actor,
                               action=action, subject=subject, detail=detail,
                               prev_hash=audit_chain.GENESIS_HASH)
        queued: list[dict[str, Any]] | None = session.info.get(_QUEUED)
        if queued is None:
            queued = session.info[_QUEUED] = []
            event.listen(session, "before_commit", self._append_queued)
        queued.append({"at": at, "actor": actor, "action": action, "subject": subject,
                       "detail": dict(detail)})

    def _append_queued(self, session: Session) -> None:
        """The queued entries, linked under one read of the head and written in one
        flush: the lock is held for as few round trips as the entries allow."""
        queued = session.info.pop(_QUEUED, [])
        if not queued:
            return
        head = self._head(session)
        for item in queued:
            self._link(session, head, **item)
        session.flush()

    def entries(self, session: Session) -> list[audit_chain.AuditEntry]:
        rows = session.execute(select(AuditRow).order_by(AuditRow.seq)).scalars().all()
        return [_row_to_entry(r) for r in rows]

    def verify(self) -> audit_chain.ChainReport:
        """Verify the stored chain against the recorded head (detects a truncated tail)."""
        with self.store.transaction() as session:
            entries = self.entries(session)
            head = session.get(AuditLock, LOCK_ID)
            head_seq = head.head_seq if head is not None else 0
            head_hash = head.head_hash if head is not None else audit_chain.GENESIS_HASH
        return audit_chain.verify_chain(entries, head_seq=head_seq, head_hash=head_hash)
