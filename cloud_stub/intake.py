"""Requests for footage: submission through the legal check, listing, reading.

A submission is parsed by the policy's request models, checked by the policy with the
clock, the court registry and the agency's earlier preservations passed in, checked
against the device registry (every named device must be enrolled and not revoked), and
stored with its
outcome either way: a refused request is kept with its codes and reasons (the
transparency report counts refusals by code), a passing one waits for review.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud_stub.core import PrincipalCaller, ServiceCore, caller_of
from cloud_stub.errors import Conflict, Forbidden, NotFound
from cloud_stub.policy.base import Policy, PolicyContext, PreservationRecord
from cloud_stub.policy.courts import Court
from cloud_stub.policy.errors import PolicyViolation
from cloud_stub.policy.requests import (
    DEFAULT_HOLD_DAYS,
    AnyRequest,
    Basis,
    EmergencyRequest,
    basis_of,
    parse_request,
)
from cloud_stub.review import Status
from cloud_stub.store.models import Principal, Request, Token
from cloud_stub.views import RequestView

DEVICE_NOT_ENROLLED = "device_not_enrolled"
DEVICE_REVOKED = "device_revoked"  # `cloud-stub devices revoke`: no new token for it
LIVE_PRESERVATION = (Status.PENDING_REVIEW, Status.APPROVED, Status.RELEASED, Status.PRESERVED)
ApprovalsFor = Callable[[Basis], int]


def default_approvals(basis: Basis) -> int:
    """Two distinct reviewers for an emergency (DESIGN section 5), one otherwise."""
    return 2 if basis is Basis.EMERGENCY else 1


class Intake:
    """Submit, list and read requests."""

    def __init__(
        self,
        core: ServiceCore,
        *,
        policy: Policy[AnyRequest],
        courts: Mapping[str, Court],
        approvals_for: ApprovalsFor = default_approvals,
    ) -> None:
        self.core = core
        self.policy = policy
        self.courts = courts
        self.approvals_for = approvals_for

    def _preservations(self, session: Session, caller: PrincipalCaller, exclude: str = ""
                       ) -> dict[str, PreservationRecord]:
        rows = session.execute(
            select(Request).where(
                Request.agency_id == caller.id,
                Request.basis == Basis.PRESERVATION.value,
                Request.status.in_([s.value for s in LIVE_PRESERVATION]),
                Request.id != exclude,
            )
        ).scalars()
        out: dict[str, PreservationRecord] = {}
        for row in rows:
            if row.window_start is None or row.window_end is None:
                continue
            holds = session.execute(
                select(Token.hold_until).where(Token.request_id == row.id)
            ).scalars().all()
            known = [h for h in holds if h is not None]
            days = int(row.body.get("hold_days") or DEFAULT_HOLD_DAYS)
            hold_until = max(known) if known else row.created_at + timedelta(days=days)
            renews = row.body.get("renews")
            out[row.id] = PreservationRecord(
                preservation_id=row.id,
                requester=caller.org,
                device_ids=frozenset(str(d) for d in row.devices),
                window_start=row.window_start,
                window_end=row.window_end,
                hold_until=hold_until,
                renewal_of=str(renews) if renews else None,
            )
        return out

    def _check(self, session: Session, caller: PrincipalCaller, request: AnyRequest,
               now: datetime, *, exclude: str = "") -> list[dict[str, str]]:
        ctx = PolicyContext(
            now=now,
            courts=self.courts,
            requester=caller.org,
            preservations=self._preservations(session, caller, exclude),
        )
        try:
            self.policy.check(request, ctx)
        except PolicyViolation as violation:
            return [{"code": str(violation.code), "reason": violation.reason}]
        devices = list(request.device_ids or [])
        known = self.core.known_devices(session, devices)
        missing = [d for d in devices if d not in known]
        if missing:
            return [{
                "code": DEVICE_NOT_ENROLLED,
                "reason": f"no enrolled device named {', '.join(repr(d) for d in missing[:5])}",
            }]
        revoked = self.core.revoked_devices(session, devices)
        if revoked:
            return [{
                "code": DEVICE_REVOKED,
                "reason": f"revoked device {', '.join(repr(d) for d in revoked[:5])}: "
                          "it gets no new token",
            }]
        return []

    def recheck(self, session: Session, row: Request, now: datetime) -> list[dict[str, str]]:
        """The legal check of a stored request run again at `now`, as at submission and
        for the same agency (the request itself left out of its preservations): the
        codes and reasons it fails with now, empty when it still passes. A re-issued
        token stands on the law as it is when it is signed (`cloud_stub.reissuing`).
        Raises `NotFound` when the agency no longer exists."""
        agency = session.get(Principal, row.agency_id)
        if agency is None:
            raise NotFound(f"the agency of request {row.id} no longer exists")
        return self._check(session, caller_of(agency), parse_request(row.body), now,
                           exclude=row.id)

    def submit(self, caller: PrincipalCaller, request: AnyRequest) -> RequestView:
        """Check and store a request. Raises `Forbidden` for a non-agency caller."""
        if caller.role != "agency":
            raise Forbidden("only an agency submits requests")
        now = self.core.now()
        basis = basis_of(request)
        window = request.window
        followup: datetime | None = None
        if isinstance(request, EmergencyRequest):
            followup = request.followup_due
        with self.core.store.transaction() as session:
            reasons = self._check(session, caller, request, now)
            status = Status.REFUSED if reasons else Status.PENDING_REVIEW
            body: dict[str, Any] = request.model_dump(mode="json", exclude_none=True)
            row = Request(
                id=str(uuid.uuid4()),
                agency_id=caller.id,
                org=caller.org,
                basis=basis.value,
                status=status.value,
                devices=list(request.device_ids or []),
                window_start=window.start if window else None,
                window_end=window.end if window else None,
                body=body,
                reasons=reasons,
                approvals_required=self.approvals_for(basis),
                follow_up_due=followup,
                follow_up_received=False,
                created_at=now,
                updated_at=now,
            )
            session.add(row)
            session.flush()
            self.core.audit.append(
                session,
                at=now,
                actor=caller.label,
                action="request.refused" if reasons else "request.submitted",
                subject=f"request:{row.id}",
                detail={
                    "basis": basis.value,
                    "org": caller.org,
                    "devices": row.devices,
                    "reasons": reasons,
                },
            )
            return self.core.view(session, row)

    def list_for(self, caller: PrincipalCaller, *, status: str | None = None,
             limit: int = 100, offset: int = 0) -> list[RequestView]:
        """Requests the caller may see, newest first: an agency sees only its own."""
        with self.core.store.transaction() as session:
            stmt = select(Request).order_by(Request.created_at.desc(), Request.id)
            if caller.role == "agency":
                stmt = stmt.where(Request.agency_id == caller.id)
            elif caller.role not in ("reviewer", "admin"):
                raise Forbidden("this principal may not list requests")
            if status is not None:
                stmt = stmt.where(Request.status == status)
            rows = session.execute(stmt.limit(limit).offset(offset)).scalars().all()
            return [self.core.view(session, r) for r in rows]

    def get(self, caller: PrincipalCaller, request_id: str) -> RequestView:
        """Raises `NotFound` (also for another agency's request)."""
        with self.core.store.transaction() as session:
            return self.core.view(session, self.core.visible_request(session, caller, request_id))

    def queue(self, caller: PrincipalCaller) -> list[RequestView]:
        """Requests waiting for review that this caller's organisation may review."""
        if caller.role not in ("reviewer", "admin"):
            raise Forbidden("only reviewers and admins see the review queue")
        with self.core.store.transaction() as session:
            stmt = (
                select(Request)
                .where(Request.status == Status.PENDING_REVIEW.value)
                .order_by(Request.created_at, Request.id)
            )
            if caller.role == "reviewer":
                stmt = stmt.where(Request.org != caller.org)
            rows = session.execute(stmt).scalars().all()
            views = [self.core.view(session, r) for r in rows]
        if caller.role == "reviewer":
            views = [v for v in views if all(d.reviewer != caller.name for d in v.decisions)]
        return views


class FollowUp:
    """The legal process an agency files after an emergency disclosure (due within 48 h)."""

    def __init__(self, core: ServiceCore) -> None:
        self.core = core

    def record(self, caller: PrincipalCaller, request_id: str, *, docket: str,
               court_id: str, document_sha256: str) -> RequestView:
        """Record the follow-up on the agency's own emergency request.

        Raises `NotFound` (not this agency's), `Conflict` (not an emergency, not granted,
        already recorded).
        """
        now = self.core.now()
        with self.core.store.transaction() as session:
            row = self.core.visible_request(session, caller, request_id)
            if caller.role != "agency":
                raise Forbidden("only the requesting agency files the follow-up")
            if row.basis != Basis.EMERGENCY.value:
                raise Conflict("only an emergency request takes a follow-up", code="not_emergency")
            if row.status in (Status.REFUSED, Status.DENIED, Status.PENDING_REVIEW):
                raise Conflict(f"the request is {row.status}; nothing was disclosed",
                               code="not_granted")
            if row.follow_up_received:
                raise Conflict("the follow-up was already recorded", code="already_recorded")
            row.follow_up_received = True
            row.updated_at = now
            self.core.audit.append(
                session, at=now, actor=caller.label, action="request.follow_up",
                subject=f"request:{row.id}",
                detail={"docket": docket, "court_id": court_id,
                        "document_sha256": document_sha256,
                        "due": row.follow_up_due.isoformat() if row.follow_up_due else None,
                        "late": bool(row.follow_up_due and now > row.follow_up_due)},
            )
            return self.core.view(session, row)
