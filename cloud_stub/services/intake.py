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
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, case, func, select
from sqlalchemy.orm import Session

from cloud_stub.domain.lifecycle import RequestStatus
from cloud_stub.domain.review_rules import same_organisation
from cloud_stub.domain.summaries import RequestSummary
from cloud_stub.errors import Conflict, Forbidden, NotFound, RefusedByPolicy
from cloud_stub.policy.base import Policy, PolicyContext, PreservationRecord
from cloud_stub.policy.config import Limits
from cloud_stub.policy.courts import Court
from cloud_stub.policy.errors import PolicyViolation
from cloud_stub.policy.requests import (
    DEFAULT_HOLD_DAYS,
    AnyRequest,
    Basis,
    EmergencyRequest,
    FollowUpWarrant,
    WarrantRequest,
    Window,
    basis_of,
    parse_request,
)
from cloud_stub.services.context import PrincipalCaller, ServiceCore, caller_of
from cloud_stub.store.models import Decision, Principal, Request, Token

DEVICE_NOT_ENROLLED = "device_not_enrolled"
DEVICE_REVOKED = "device_revoked"  # `cloud-stub devices revoke`: no new token for it
LIVE_PRESERVATION = (RequestStatus.PENDING_REVIEW, RequestStatus.APPROVED, RequestStatus.RELEASED,
                     RequestStatus.PRESERVED)


@dataclass(frozen=True, slots=True)
class QueueQuery:
    """Filters of `Intake.queue_page`; None means any."""

    status: str | None = RequestStatus.PENDING_REVIEW.value
    basis: str | None = None
    org: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    limit: int = 50
    offset: int = 0


@dataclass(frozen=True, slots=True)
class QueuePage:
    requests: list[RequestSummary]
    total: int  # matching requests on all pages


class Intake:
    """Submit, list and read requests."""

    def __init__(
        self,
        core: ServiceCore,
        *,
        policy: Policy[AnyRequest],
        courts: Mapping[str, Court],
        limits: Limits,
    ) -> None:
        self.core = core
        self.policy = policy
        self.courts = courts
        self.limits = limits  # the policy file's: how many approvals a basis needs

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

    def _context(self, session: Session, caller: PrincipalCaller, now: datetime,
                 exclude: str = "") -> PolicyContext:
        return PolicyContext(
            now=now,
            courts=self.courts,
            requester=caller.org,
            preservations=self._preservations(session, caller, exclude),
        )

    def context_for(self, session: Session, row: Request, now: datetime) -> PolicyContext:
        """The facts `recheck` judges a stored request by at `now` (the review console
        shows each rule's result under them). Raises `NotFound` when the agency is gone."""
        agency = session.get(Principal, row.agency_id)
        if agency is None:
            raise NotFound(f"the agency of request {row.id} no longer exists")
        return self._context(session, caller_of(agency), now, exclude=row.id)

    def _check(self, session: Session, caller: PrincipalCaller, request: AnyRequest,
               now: datetime, *, exclude: str = "") -> list[dict[str, str]]:
        ctx = self._context(session, caller, now, exclude)
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
        token stands on the law as it is when it is signed (`cloud_stub.services.reissuing`).
        Raises `NotFound` when the agency no longer exists."""
        agency = session.get(Principal, row.agency_id)
        if agency is None:
            raise NotFound(f"the agency of request {row.id} no longer exists")
        return self._check(session, caller_of(agency), parse_request(row.body), now,
                           exclude=row.id)

    def require_lawful_now(self, session: Session, row: Request, now: datetime) -> None:
        """The one "re-check at now" of every step that acts on a stored request: an
        approval (`cloud_stub.services.reviewing`) and a re-issue
        (`cloud_stub.services.reissuing`) stand on the law as it is at `now`, not as it
        was at submission (docs/policy.md, "Checked again at every step"). Raises
        `Conflict` with the policy's own code (a warrant expired since is
        ``warrant_expired``, an emergency past its follow-up
        ``emergency_followup_out_of_range``, a revoked device ``device_revoked``) and
        `NotFound` when the agency no longer exists."""
        failed = self.recheck(session, row, now)
        if failed:
            first = failed[0]
            raise Conflict(f"the request no longer passes the legal check: {first['reason']}",
                           code=first["code"])

    def submit(self, caller: PrincipalCaller, request: AnyRequest) -> RequestSummary:
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
            status = RequestStatus.REFUSED if reasons else RequestStatus.PENDING_REVIEW
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
                approvals_required=self.limits.approvals(basis),
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
            return self.core.summary(session, row)

    def list_for(self, caller: PrincipalCaller, *, status: str | None = None,
             limit: int = 100, offset: int = 0) -> list[RequestSummary]:
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
            return [self.core.summary(session, r) for r in rows]

    def get(self, caller: PrincipalCaller, request_id: str) -> RequestSummary:
        """Raises `NotFound` (also for another agency's request)."""
        with self.core.store.transaction() as session:
            row = self.core.visible_request(session, caller, request_id)
            return self.core.summary(session, row)

    def queue(self, caller: PrincipalCaller) -> list[RequestSummary]:
        """Requests waiting for review that this caller's organisation may review."""
        with self.core.store.transaction() as session:
            stmt = self._reviewable(session, caller, RequestStatus.PENDING_REVIEW.value)
            rows = session.execute(stmt.order_by(Request.created_at, Request.id)).scalars()
            return [self.core.summary(session, r) for r in rows.all()]

    def _reviewable(self, session: Session, caller: PrincipalCaller, status: str | None
                    ) -> Select[Request]:
        """Requests of `status` (any when None) a reviewer or admin may see in the queue:
        waiting for review means one this reviewer may still decide (not of their own
        organisation, not already decided by them). Raises `Forbidden` for an agency."""
        if caller.role not in ("reviewer", "admin"):
            raise Forbidden("only reviewers and admins see the review queue")
        stmt = select(Request)
        if status is not None:
            stmt = stmt.where(Request.status == status)
        if caller.role == "reviewer" and status == RequestStatus.PENDING_REVIEW.value:
            decided = select(Decision.id).where(
                Decision.request_id == Request.id, Decision.reviewer_id == caller.id
            )
            # not its own organisation's, however spelt (`same_organisation`)
            own = [org for org in session.execute(select(Request.org).distinct()).scalars()
                   if same_organisation(org, caller.org)]
            stmt = stmt.where(Request.org.not_in(own), ~decided.exists())
        return stmt

    def queue_page(self, caller: PrincipalCaller, query: QueueQuery) -> QueuePage:
        """One page of the queue: emergencies first, then oldest first, filtered
        (the review console's queue, docs/adr/0015-review-console.md)."""
        with self.core.store.transaction() as session:
            stmt = self._reviewable(session, caller, query.status)
            if query.basis is not None:
                stmt = stmt.where(Request.basis == query.basis)
            if query.org is not None:
                stmt = stmt.where(Request.org == query.org)
            if query.created_after is not None:
                stmt = stmt.where(Request.created_at >= query.created_after)
            if query.created_before is not None:
                stmt = stmt.where(Request.created_at < query.created_before)
            total = session.execute(
                select(func.count()).select_from(stmt.subquery())
            ).scalar_one()
            emergency_first = case((Request.basis == Basis.EMERGENCY.value, 0), else_=1)
            rows = session.execute(
                stmt.order_by(emergency_first, Request.created_at, Request.id)
                .limit(query.limit).offset(query.offset)
            ).scalars().all()
            return QueuePage(requests=[self.core.summary(session, r) for r in rows], total=total)


class FollowUp:
    """The legal process an agency files after an emergency disclosure (due within 48 h):
    a search warrant for what was disclosed, checked as a warrant is (`followup_policy`:
    the court registry, the court's signature over the statement naming the disclosed
    devices and window, the dates, the document hash, the string rules of the request
    models). Only a follow-up that passes is recorded, so the transparency report counts
    as received only what a court signed."""

    def __init__(self, core: ServiceCore, *, policy: Policy[WarrantRequest],
                 courts: Mapping[str, Court]) -> None:
        self.core = core
        self.policy = policy
        self.courts = courts

    def record(self, caller: PrincipalCaller, request_id: str, follow_up: FollowUpWarrant
               ) -> RequestSummary:
        """Check and record the follow-up on the agency's own emergency request.

        Raises `NotFound` (not this agency's), `Conflict` (not an emergency, not granted,
        already recorded), `RefusedByPolicy` (the warrant does not pass: the policy's
        own code, such as ``court_unknown`` or ``court_signature_invalid``).
        """
        now = self.core.now()
        with self.core.store.transaction() as session:
            row = self.core.visible_request(session, caller, request_id)
            if caller.role != "agency":
                raise Forbidden("only the requesting agency files the follow-up")
            if row.basis != Basis.EMERGENCY.value:
                raise Conflict("only an emergency request takes a follow-up", code="not_emergency")
            if row.status in (RequestStatus.REFUSED, RequestStatus.DENIED,
                              RequestStatus.PENDING_REVIEW):
                raise Conflict(f"the request is {row.status}; nothing was disclosed",
                               code="not_granted")
            if row.follow_up_received:
                raise Conflict("the follow-up was already recorded", code="already_recorded")
            if row.window_start is None or row.window_end is None:
                raise Conflict("the request has no window", code="bad_state")
            warrant = follow_up.as_warrant(
                [str(d) for d in row.devices],
                Window(start=row.window_start, end=row.window_end),
            )
            ctx = PolicyContext(now=now, courts=self.courts, requester=caller.org)
            try:
                self.policy.check(warrant, ctx)
            except PolicyViolation as violation:
                raise RefusedByPolicy(f"the follow-up warrant is refused: {violation.reason}",
                                      code=str(violation.code)) from None
            row.follow_up_received = True
            row.updated_at = now
            self.core.audit.append(
                session, at=now, actor=caller.label, action="request.follow_up",
                subject=f"request:{row.id}",
                detail={"docket": follow_up.docket, "court_id": follow_up.court_id,
                        "judge": follow_up.judge,
                        "document_sha256": follow_up.document_sha256,
                        "verified": "court_signature",
                        "due": row.follow_up_due.isoformat() if row.follow_up_due else None,
                        "late": bool(row.follow_up_due and now > row.follow_up_due)},
            )
            return self.core.summary(session, row)
