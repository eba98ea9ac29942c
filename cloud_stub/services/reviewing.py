"""Applying a reviewer's decision: the state machine of `review`, the store, the audit
chain and, on the last approval, the release, all in one transaction.

An approval stands on the law at the moment it is given: every approval runs the whole
legal check again at ``now`` (`Intake.require_lawful_now`, as a re-issue does), so a
warrant that expired while it waited for review is refused ``warrant_expired`` and an
emergency whose follow-up is overdue is refused with its code; the refusal changes
nothing (the request still waits, and a reviewer may deny it).

Under trust root v2 a denial also discards the payloads prepared for the reviewers to
sign (`cloud_stub.services.prepared`): nothing will sign them now."""

from __future__ import annotations

from sqlalchemy import select

from cloud_stub.domain.lifecycle import RequestStatus
from cloud_stub.domain.review_rules import Action, PriorDecision, Reviewer, check_reason, decide
from cloud_stub.domain.summaries import RequestSummary
from cloud_stub.errors import NotFound
from cloud_stub.services.context import PrincipalCaller, ServiceCore, takes_a_signing_slot
from cloud_stub.services.intake import Intake
from cloud_stub.services.issuing import Issuer
from cloud_stub.services.prepared import REQUEST_CLOSED, discard, prepared_rows
from cloud_stub.services.publishing import Publisher
from cloud_stub.store.models import Decision, Principal


class Reviewing:
    """Approve or deny a request waiting for review."""

    def __init__(self, core: ServiceCore, issuer: Issuer, publisher: Publisher,
                 intake: Intake) -> None:
        self.core = core
        self.issuer = issuer
        self.publisher = publisher
        self.intake = intake

    @takes_a_signing_slot
    def decide(self, caller: PrincipalCaller, request_id: str, action: Action, reason: str
               ) -> RequestSummary:
        """Record the decision; on the last approval issue the tokens, then publish them.

        Raises `Forbidden` (not a reviewer, separation of duties), `Conflict` (not
        pending, already decided; for an approval, the legal check's own code when the
        request no longer passes it at `now`), `HostileInputError` (no reason),
        `NotFound`, `SigningError`.
        """
        now = self.core.now()
        issued_jtis: list[str] = []
        with self.core.store.transaction() as session:
            row = self.core.load_request(session, request_id, lock=True)
            prior = [
                PriorDecision(d.reviewer_id, Action(d.action), d.org)
                for d in session.execute(
                    select(Decision).where(Decision.request_id == row.id)
                ).scalars()
            ]
            verdict = decide(
                status=row.status,
                submitter_org=row.org,
                approvals_required=row.approvals_required,
                prior=prior,
                reviewer=Reviewer(caller.id, caller.role, caller.org),
                action=action,
                reason=reason,
            )
            text = check_reason(reason)
            if action is Action.APPROVE:
                self.intake.require_lawful_now(session, row, now)
            session.add(
                Decision(
                    request_id=row.id,
                    reviewer_id=caller.id,
                    org=caller.org,
                    action=action.value,
                    reason=text,
                    at=now,
                )
            )
            row.status = verdict.status.value
            row.updated_at = now
            session.flush()
            self.core.audit.append_at_commit(
                session,
                at=now,
                actor=caller.label,
                action=f"request.{action.value}",
                subject=f"request:{row.id}",
                detail={
                    "reason": text,
                    "org": caller.org,
                    "approvals": verdict.approvals,
                    "required": verdict.required,
                    "status": verdict.status.value,
                },
            )
            if verdict.status is RequestStatus.DENIED:  # trust root v2 (ADR 0013)
                discard(self.core.audit, session, prepared_rows(session, row.id, reissue=False),
                        code=REQUEST_CLOSED, why="a reviewer denied the request",
                        actor=caller.label, now=now)
            if verdict.status is RequestStatus.APPROVED:
                agency = session.get(Principal, row.agency_id)
                if agency is None:
                    raise NotFound(f"the agency of request {row.id} no longer exists")
                issued = self.issuer.issue(session, row, agency.org, now)
                issued_jtis = [i.jti for i in issued]
                self.core.audit.append_at_commit(
                    session,
                    at=now,
                    actor="service:signer",
                    action=f"request.{row.status}",
                    subject=f"request:{row.id}",
                    detail={"tokens": issued_jtis},
                )
        self.publisher.publish(issued_jtis)
        with self.core.store.transaction() as session:
            return self.core.summary(session, self.core.load_request(session, request_id))
