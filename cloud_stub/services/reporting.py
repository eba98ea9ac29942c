"""Loading the store's rows into `cloud_stub.domain.transparency`'s records and building the report.

The report is public (``GET /v1/transparency`` needs no key, docs/adr/0008): it holds
counts, agency names and the audit head, never a device id, a case number or a person.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime

from sqlalchemy import func, select

from cloud_stub.domain.lifecycle import RequestStatus
from cloud_stub.domain.transparency import (
    DecisionRecord,
    ReleaseRecord,
    RequestRecord,
    TransparencyReport,
    build_report,
)
from cloud_stub.services.context import ServiceCore
from cloud_stub.store.audit_log import LOCK_ID
from cloud_stub.store.models import (
    AuditLock,
    CustodyRecord,
    Decision,
    OwnerNotice,
    Principal,
    Request,
    Token,
)


def transparency_report(core: ServiceCore, *, period_start: datetime | None = None,
                        period_end: datetime | None = None) -> TransparencyReport:
    """The report over every stored request (or those submitted in the period)."""
    with core.store.transaction() as session:
        requests = [
            RequestRecord(
                request_id=r.id,
                basis=r.basis,
                agency=r.org,
                status=r.status,
                devices=tuple(str(d) for d in r.devices),
                submitted_at=r.created_at,
                refusal_codes=tuple(str(x["code"]) for x in r.reasons)
                if r.status == RequestStatus.REFUSED else (),
                followup_due=r.follow_up_due,
                followup_received=r.follow_up_received,
            )
            for r in session.execute(select(Request)).scalars()
        ]
        decisions = [
            DecisionRecord(request_id=d.request_id, reviewer=name, action=d.action, at=d.at)
            for d, name in session.execute(
                select(Decision, Principal.name).join(Principal,
                                                      Principal.id == Decision.reviewer_id)
            )
        ]
        delivered = Counter(
            dict(session.execute(
                select(CustodyRecord.jti, func.count()).group_by(CustodyRecord.jti)
            ).all())
        )
        notified = set(session.execute(select(OwnerNotice.jti)).scalars())
        releases = [
            ReleaseRecord(
                request_id=t.request_id,
                jti=t.jti,
                device_id=t.device_id,
                status=t.status,
                clips_delivered=int(delivered.get(t.jti, 0)),
                owner_notified=t.jti in notified,
            )
            for t in session.execute(select(Token)).scalars()
        ]
        head = session.get(AuditLock, LOCK_ID)
        audit_head = (head.head_seq, head.head_hash) if head is not None else None
    return build_report(
        requests, decisions, releases, now=core.now(), period_start=period_start,
        period_end=period_end, audit_head=audit_head,
    )
