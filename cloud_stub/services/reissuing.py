"""Re-issuing a refused token of an approved request: a reviewer's decision, not a retry.

A token the device refused as ``stale_seq`` (the broker lost it and the device accepted a
later token for another request meanwhile) or ``expired`` (the device came back after its
``exp``) can never be served by re-publishing it (ADR 0011). A reviewer may then have it
issued again: `Reissuing.reissue` checks, in one transaction, that

- the request was approved and released, and for at least one of its devices the latest
  token ended ``rejected`` with reason ``stale_seq`` or ``expired`` and no manifest was
  accepted under any of the request's tokens for that device (``not_reissuable``
  otherwise, naming the state and reason found);
- the reviewer may review this request by the rules of approval (`check_reviewer`: a
  reviewer, of another organisation than the submitter's) and gives a written reason;
- the request still passes the legal check at ``now`` (`Intake.require_lawful_now`, the
  code path of submission, shared with approval: a warrant expired since, an emergency
  past its follow-up, a revoked device are refused with the policy's own code);

then signs a new token per such device exactly as at approval (`Issuer.sign_for_device`:
new ``jti``, next ``seq``, same window, basis, case and recipient, a fresh life from now),
marks the refused token ``superseded``, audits ``token.reissued`` (old and new jti,
reviewer, reason), puts a ``rejected`` request back to ``released``, and after the commit
publishes the new tokens like any other. A refusal changes nothing.

Under trust root v2 the service holds no reviewer's key and `sign_for_device` answers
``reviewer_signature_required``: reviewers re-issue by signing the new payloads on their
own machines (`cloud_stub.services.signed_reissue`, which uses `Reissuing.candidates`).

`Reissuing.reissuable` reads, by the same rules and without changing anything, which
tokens a caller may have re-issued: the review console shows its re-issue panel from it
(docs/adr/0015-review-console.md, section 9).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud_stub.domain.lifecycle import UNISSUED, RequestStatus, TokenStatus
from cloud_stub.domain.review_rules import Reviewer, check_reason, check_reviewer
from cloud_stub.domain.summaries import RequestSummary
from cloud_stub.errors import Conflict, Forbidden, NotFound
from cloud_stub.services.context import PrincipalCaller, ServiceCore, takes_a_signing_slot
from cloud_stub.services.intake import Intake
from cloud_stub.services.issuing import Issued, Issuer
from cloud_stub.services.publishing import Publisher
from cloud_stub.store.models import Device, Manifest, Principal, Request, Token
from cloud_stub.store.sequence import lock_counters

REISSUE_REASONS = ("stale_seq", "expired")  # device refusals a new token can answer
REISSUED_ACTION = "token.reissued"
NOT_REISSUABLE = "not_reissuable"
# Before approval there is no token to re-issue; a request in one of these never had one.
_NEVER_RELEASED = (RequestStatus.REFUSED, RequestStatus.PENDING_REVIEW, RequestStatus.DENIED,
                   RequestStatus.APPROVED, RequestStatus.NO_FOOTAGE)


@dataclass(frozen=True, slots=True)
class Candidate:
    """A device's refused token of the request, which a new one may replace."""

    old: Token
    device: Device


@dataclass(frozen=True, slots=True)
class Refused:
    """A refused token a reviewer may have re-issued, as a page names it."""

    jti: str
    device: str
    seq: int
    reason: str  # the device's refusal: one of `REISSUE_REASONS`


class Reissuing:
    """Issue a new token for an approved request whose token the device refused."""

    def __init__(self, core: ServiceCore, issuer: Issuer, publisher: Publisher,
                 intake: Intake) -> None:
        self.core = core
        self.issuer = issuer
        self.publisher = publisher
        self.intake = intake

    def candidates(self, session: Session, row: Request) -> list[Candidate]:
        """Per device, its latest token of this request when a new one may replace it
        (payloads prepared for reviewers to sign and never issued do not count).
        Raises `Conflict` (``not_reissuable``) when there is none, naming what was found."""
        tokens = session.execute(
            select(Token).where(Token.request_id == row.id,
                                Token.status.not_in(UNISSUED))
            .order_by(Token.device_id, Token.seq)
        ).scalars().all()
        if row.status in _NEVER_RELEASED or not tokens:
            raise Conflict(f"the request is {row.status}: it was never released, there is "
                           "no token to re-issue", code=NOT_REISSUABLE)
        latest: dict[str, Token] = {}
        for token in tokens:  # ordered by seq: the last one per device wins
            latest[token.device_id] = token
        accepted = set(session.execute(
            select(Manifest.jti).where(Manifest.jti.in_([t.jti for t in tokens]))
        ).scalars())
        evidence = {t.device_id for t in tokens if t.jti in accepted}
        found: list[str] = []
        out: list[Candidate] = []
        for device_id, token in sorted(latest.items()):
            state = f"{device_id}: token {token.jti} is {token.status}" + (
                f" ({token.status_reason})" if token.status_reason else "")
            if device_id in evidence:
                found.append(f"{device_id}: evidence was accepted")
                continue
            if token.status != TokenStatus.REJECTED or token.status_reason not in REISSUE_REASONS:
                found.append(state)
                continue
            device = session.get(Device, device_id)
            if device is None:
                raise NotFound(f"device {device_id} is not enrolled")
            out.append(Candidate(token, device))
        if not out:
            raise Conflict(
                "only a token the device rejected as " + " or ".join(REISSUE_REASONS)
                + ", without accepted evidence, is re-issued; " + "; ".join(found),
                code=NOT_REISSUABLE,
            )
        return out

    def reissuable(self, caller: PrincipalCaller, request_id: str) -> list[Refused]:
        """The tokens of the request that `caller` may have re-issued now, by the rules
        `reissue` applies (`check_reviewer`, `candidates`); empty when the caller may not
        review the request or nothing is re-issuable. The legal check is left to the
        re-issue itself. Changes nothing. Raises `NotFound` (no such request)."""
        with self.core.store.read() as session:
            row = self.core.load_request(session, request_id)
            try:
                check_reviewer(Reviewer(caller.id, caller.role, caller.org), row.org)
                candidates = self.candidates(session, row)
            except (Forbidden, Conflict, NotFound):
                return []
            return [Refused(c.old.jti, c.old.device_id, c.old.seq, c.old.status_reason or "")
                    for c in candidates]

    @takes_a_signing_slot
    def reissue(self, caller: PrincipalCaller, request_id: str, reason: str) -> RequestSummary:
        """Re-issue the refused tokens of an approved request; returns the request.

        Raises `Forbidden` (not a reviewer, separation of duties), `Conflict`
        (``not_reissuable``; or the legal check's own code when the request no longer
        passes it), `HostileInputError` (no reason), `NotFound`, `SigningError`.
        """
        now = self.core.now()
        issued: list[Issued] = []
        with self.core.store.transaction() as session:
            row = self.core.load_request(session, request_id, lock=True)
            check_reviewer(Reviewer(caller.id, caller.role, caller.org), row.org)
            text = check_reason(reason)
            candidates = self.candidates(session, row)
            self.intake.require_lawful_now(session, row, now)
            agency = session.get(Principal, row.agency_id)
            if agency is None:
                raise NotFound(f"the agency of request {row.id} no longer exists")
            lock_counters(session, [c.device.id for c in candidates])
            for candidate in candidates:
                old = candidate.old
                new = self.issuer.sign_for_device(
                    session, row, candidate.device, agency.org, now,
                    audit_detail={"reissue_of": old.jti},
                )
                if new is None:  # the escrowed epochs are gone: nothing to seal
                    raise Conflict(f"no escrowed epoch key overlaps the window for "
                                   f"{old.device_id} any more", code="no_escrowed_epochs")
                refused = old.status_reason
                old.status = TokenStatus.SUPERSEDED.value
                old.status_reason = f"rejected {refused}; re-issued as {new.jti}"
                old.updated_at = now
                self.core.audit.append_at_commit(
                    session,
                    at=now,
                    actor=caller.label,
                    action=REISSUED_ACTION,
                    subject=f"token:{old.jti}",
                    detail={
                        "request": row.id,
                        "device": old.device_id,
                        "old_jti": old.jti,
                        "old_seq": old.seq,
                        "refused": refused,
                        "new_jti": new.jti,
                        "new_seq": new.seq,
                        "reviewer": caller.name,
                        "org": caller.org,
                        "reason": text,
                    },
                )
                issued.append(new)
            if row.status == RequestStatus.REJECTED:
                row.status = RequestStatus.RELEASED.value
            row.updated_at = now
        self.publisher.publish([i.jti for i in issued])
        with self.core.store.transaction() as session:
            return self.core.summary(session, self.core.load_request(session, request_id))
