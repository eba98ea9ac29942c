"""Approval by signature under trust root v2 (docs/adr/0013-trust-root-v2.md section 5).

The service never holds a reviewer's key. For a request waiting for review it prepares,
once, the exact token payload per device (claims with ``jti``, ``seq``, the sealed
``keys`` and, for a warrant, the court's signed statement) and stores it as a token row
in status ``prepared``; every reviewer is shown the same bytes. A reviewer signs them on
their own machine (`doorbell-review approve`) and posts the signatures; the service
accepts them only from the reviewer whose key id the trust root lists under that
reviewer's name and organisation, over exactly the prepared payload, and keeps
separation of duties (not the submitter's organisation; an emergency needs reviewers of
two organisations). When the approvals are in it runs the legal check again, adds the
policy signature (the only release key it holds) and publishes the tokens. A prepared
payload that can no longer be signed leaves ``prepared`` with its reason, audited, at the
step that learns it (`cloud_stub.services.prepared`).
"""

from __future__ import annotations

import base64
import binascii
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud_stub.domain.lifecycle import RequestStatus, TokenStatus
from cloud_stub.domain.review_rules import Action, PriorDecision, Reviewer, check_reason, decide
from cloud_stub.domain.summaries import RequestSummary
from cloud_stub.errors import Conflict, Forbidden, HostileInputError, NotFound, SigningError
from cloud_stub.policy.courts import WarrantStatement
from cloud_stub.policy.requests import WarrantRequest, parse_request
from cloud_stub.provision.trust_roots import current_root
from cloud_stub.services.context import PrincipalCaller, ServiceCore, takes_a_signing_slot
from cloud_stub.services.intake import Intake
from cloud_stub.services.issuing import Issuer, case_ref, hold_days, notify_after
from cloud_stub.services.prepared import EXPIRED, REQUEST_CLOSED, discard, prepared_rows, stored
from cloud_stub.services.publishing import Publisher
from cloud_stub.store.models import Decision, Device, Principal, Request, Token
from cloud_stub.store.sequence import allocate_seq
from protocol.errors import KeyFormatError
from protocol.keys import canonical_json
from protocol.release_signing import (
    DetachedSignature,
    SignatureRefused,
    assemble,
    check_detached,
    claims_of,
    describe,
    payload_segment,
    payload_sha256,
    sign_detached,
)
from protocol.token import ReleaseClaims, Window, seal_keys_for_device, unix_time
from protocol.trust_root_v2 import TrustRootV2
from protocol.warrant import WarrantClaim


@dataclass(frozen=True, slots=True)
class Submitted:
    """One reviewer signature over one prepared payload, as posted."""

    jti: str
    signature: DetachedSignature


def aware_utc(at: datetime) -> datetime:
    """Stored times come back naive from SQLite; they are UTC."""
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def payload_view(token: Token) -> dict[str, Any]:
    """A prepared row as a reviewer is shown it: the exact payload, its digest and the
    summary `doorbell-review` recomputes from it."""
    segment, _ = stored(token)
    return {
        "device": token.device_id,
        "jti": token.jti,
        "payload": segment,
        "payload_sha256": payload_sha256(segment),
        "summary": describe(claims_of(segment)),
    }


def check_reviewer_key(root: TrustRootV2, kid: str, caller: PrincipalCaller) -> None:
    """Raises Forbidden unless `kid` is the key the trust root lists for the caller (the
    reviewer's name and organisation)."""
    enrolled = root.reviewers.get(kid)
    if enrolled is None or (enrolled.name, enrolled.org) != (caller.name, caller.org):
        raise Forbidden(f"key {kid[:16]}... is not the key the trust root lists for "
                        f"reviewer {caller.name} of {caller.org}")


def check_signatures(root: TrustRootV2, kid: str, tokens: dict[str, Token],
                     signatures: list[Submitted], what: str) -> dict[str, DetachedSignature]:
    """The signatures by jti, when there is exactly one for each prepared token in
    `tokens` and each is `kid`'s over exactly that token's payload. Raises
    HostileInputError naming the token (`what` names the payloads in the message)."""
    given = {s.jti: s.signature for s in signatures}
    if len(given) != len(signatures) or set(given) != set(tokens):
        raise HostileInputError(f"sign every {what} of the request once: "
                                f"{', '.join(sorted(tokens))}")
    for jti, token in tokens.items():
        try:
            check_detached(stored(token)[0], given[jti], kid, root.keys[kid])
        except SignatureRefused as exc:
            raise HostileInputError(f"token {jti}: {exc}") from None
    return given


class SignedReview:
    """Prepare payloads, accept reviewer signatures, finish with the policy signature."""

    def __init__(self, core: ServiceCore, issuer: Issuer, publisher: Publisher,
                 intake: Intake) -> None:
        self.core = core
        self.issuer = issuer
        self.publisher = publisher
        self.intake = intake

    def root(self, now: datetime) -> TrustRootV2:
        """The trust root v2 in force. Raises Conflict under a v1 root."""
        root = current_root(self.core.layout, now)
        if not isinstance(root, TrustRootV2):
            raise Conflict("this deployment's trust root is v1: reviewers approve with "
                           "POST /v1/requests/{id}/approve", code="trust_root_v1")
        return root

    # --- the payload ---------------------------------------------------------------------

    @takes_a_signing_slot
    def signing_payload(self, caller: PrincipalCaller, request_id: str) -> dict[str, Any]:
        """The prepared payloads of a request waiting for review (prepared on first ask).

        Raises Conflict (not pending, v1 root, nothing to release), NotFound, SigningError.
        """
        now = self.core.now()
        root = self.root(now)
        with self.core.store.transaction() as session:
            row = self.core.load_request(session, request_id, lock=True)
            tokens = prepared_rows(session, row.id, reissue=False)
            refusal = self.closed(session, row, tokens, caller.label, now)
            if refusal is None:
                tokens = self._unexpired(session, tokens, caller.label, now)
                if not tokens:
                    tokens = self._prepare(session, row, root, now)
                return {"request_id": row.id, "basis": row.basis,
                        "root_version": root.version,
                        "payloads": [payload_view(token) for token in tokens]}
        raise refusal  # after the commit: the discarded payloads stay discarded

    def closed(self, session: Session, row: Request, tokens: list[Token], actor: str,
               now: datetime) -> Conflict | None:
        """None while `row` waits for review; otherwise the refusal (``not_pending``) to
        raise after the commit, its prepared `tokens` discarded ``request_closed``."""
        if row.status == RequestStatus.PENDING_REVIEW:
            return None
        why = f"the request is {row.status}, not waiting for review"
        discard(self.core.audit, session, tokens, code=REQUEST_CLOSED, why=why, actor=actor,
                now=now)
        return Conflict(why, code="not_pending")

    def _unexpired(self, session: Session, tokens: list[Token], actor: str, now: datetime
                   ) -> list[Token]:
        """`tokens`, the request's prepared approval payloads, while none has expired.
        Once one has, before the approvals were in: [] with them discarded ``expired``
        (to be prepared again) when nobody has signed them yet; otherwise Conflict, and
        they stay as they are: the approvals recorded stand on them, so the request is
        denied (which discards them) and submitted again."""
        if not tokens or min(aware_utc(t.expires_at) for t in tokens) > now:
            return tokens
        if any(stored(t)[1] for t in tokens):
            raise Conflict("the prepared payload expired after a reviewer signed it: deny the "
                           "request and have the agency submit it again", code="expired")
        discard(self.core.audit, session, tokens, code=EXPIRED,
                why="the prepared payload expired before anyone signed it", actor=actor,
                now=now)
        return []

    def _prepare(self, session: Any, row: Request, root: TrustRootV2, now: datetime
                 ) -> list[Token]:
        agency = session.get(Principal, row.agency_id)
        if agency is None:
            raise NotFound(f"the agency of request {row.id} no longer exists")
        warrant = self.warrant_claim(row) if root.rules[row.basis].court else None
        out = []
        for device_id in [str(d) for d in row.devices]:
            device = session.get(Device, device_id)
            if device is None or device.revoked_at is not None:
                continue
            token = self.prepared_token(session, row, device, agency.name, root, warrant, now)
            if token is not None:
                out.append(token)
        if not out:
            raise Conflict("no device of this request has escrowed footage in the window",
                           code="no_footage")
        session.flush()
        self.core.audit.append_at_commit(session, at=now, actor="service:policy",
                                         action="request.prepared",
                                         subject=f"request:{row.id}",
                                         detail={"tokens": [t.jti for t in out],
                                                 "root_version": root.version})
        return out

    def prepared_token(self, session: Any, row: Request, device: Device, agency_name: str,
                       root: TrustRootV2, warrant: WarrantClaim | None, now: datetime,
                       status_reason: str = "") -> Token | None:
        """A new token row in status ``prepared`` holding the exact payload for `device`
        (next ``seq``, new ``jti``, sealed keys), added to the session; None when no
        escrowed epoch key of the device overlaps the window."""
        claims = self._claims(session, row, device, agency_name, root, warrant, now)
        if claims is None:
            return None
        segment = payload_segment(claims)
        token = Token(
            jti=claims.jti, request_id=row.id, device_id=device.id, seq=claims.seq,
            basis=row.basis, window_start=claims.window.start,
            window_end=claims.window.end, issued_at=now,
            expires_at=now + timedelta(seconds=claims.exp - claims.iat),
            hold_until=claims.hold_until,
            size_cap=0 if claims.is_preservation
            else self.core.limits.max_evidence_per_token,
            status=TokenStatus.PREPARED.value, status_reason=status_reason,
            jws=canonical_json({"payload": segment, "signatures": []}).decode(),
            updated_at=now,
        )
        session.add(token)
        return token

    @staticmethod
    def warrant_claim(row: Request) -> WarrantClaim:
        request = parse_request(row.body)
        if not isinstance(request, WarrantRequest) or request.court_signature is None:
            raise SigningError(f"request {row.id} carries no court-signed warrant",
                               code="bad_state")
        statement = WarrantStatement.from_request(request).to_protocol()
        try:
            sig = base64.b64decode(str(request.court_signature), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise SigningError(f"request {row.id}: court_signature is not base64") from exc
        return WarrantClaim.of(statement, sig)

    def _claims(self, session: Any, row: Request, device: Device, agency_name: str,
                root: TrustRootV2, warrant: WarrantClaim | None, now: datetime
                ) -> ReleaseClaims | None:
        if row.window_start is None or row.window_end is None:
            raise SigningError(f"request {row.id} has no window", code="bad_state")
        window = Window(start=row.window_start, end=row.window_end)
        request = parse_request(row.body)
        life = min(root.limits[row.basis].max_token_life_s, self.issuer.life_s(row, request))
        iat = unix_time(now)
        exp = iat + life
        if warrant is not None:  # a token never outlives its warrant
            exp = min(exp, unix_time(warrant.statement.expires))
        jti = str(uuid.uuid4())
        extra: dict[str, Any] = {}
        if row.basis == "preservation":
            extra["hold_until"] = now + timedelta(days=hold_days(request))
        else:
            lead = timedelta(seconds=self.core.limits.epoch_lead_s)
            epochs = self.issuer.escrow.covering(session, device.id, window.start, window.end,
                                                   lead)
            if not epochs:
                return None
            try:
                extra["keys"] = seal_keys_for_device(self.issuer.escrow.open(epochs),
                                                     device.transport_recipient)
            except KeyFormatError as exc:
                raise SigningError(f"cannot seal keys for {device.id}: {exc}") from exc
            extra["recipient"] = request.recipient or ""
            extra["upload"] = self.issuer.upload_url(jti)
            notify = notify_after(request)
            if notify is not None:
                extra["notify_after"] = notify
            if warrant is not None:
                extra["warrant"] = warrant
        return ReleaseClaims(
            v=1, iss=root.issuer, aud=device.id, jti=jti,
            seq=allocate_seq(session, device.id), iat=iat, nbf=iat, exp=exp,
            basis=row.basis, case=case_ref(row, request, agency_name), window=window, **extra,
        )

    # --- the signatures ------------------------------------------------------------------

    @takes_a_signing_slot
    def submit(self, caller: PrincipalCaller, request_id: str, kid: str, reason: str,
               signatures: list[Submitted]) -> RequestSummary:
        """Record one reviewer's approval by signature; on the last one, finish.

        Raises Forbidden (not this reviewer's key, separation of duties), Conflict (not
        pending, nothing prepared, the payload expired, already decided),
        HostileInputError (a signature that is not over the prepared payload, a missing
        or extra one), NotFound.
        """
        now = self.core.now()
        root = self.root(now)
        check_reviewer_key(root, kid, caller)
        check_reason(reason)
        issued: list[str] = []
        with self.core.store.transaction() as session:
            row = self.core.load_request(session, request_id, lock=True)
            tokens = {t.jti: t for t in prepared_rows(session, row.id, reissue=False)}
            refusal = self.closed(session, row, list(tokens.values()), caller.label, now)
            if refusal is not None:
                pass  # raised after the commit: the discarded payloads stay discarded
            elif not tokens:
                raise Conflict("nothing is prepared for this request: fetch the signing "
                               "payload first", code="not_prepared")
            elif not self._unexpired(session, list(tokens.values()), caller.label, now):
                # a token signed now would be issued expired; nobody signed it yet, so it
                # was discarded and the reviewer fetches a new one
                refusal = Conflict("the prepared payload expired before the approvals were "
                                   "in: fetch the signing payload again", code="expired")
            else:
                issued = self._approve(session, row, root, kid, reason, caller, tokens,
                                       signatures, now)
        if refusal is not None:
            raise refusal
        self.publisher.publish(issued)
        with self.core.store.transaction() as session:
            return self.core.summary(session, self.core.load_request(session, request_id))

    def _approve(self, session: Session, row: Request, root: TrustRootV2, kid: str,
                 reason: str, caller: PrincipalCaller, tokens: dict[str, Token],
                 signatures: list[Submitted], now: datetime) -> list[str]:
        """Record the caller's approval and signatures; the tokens issued when it was the
        last approval needed."""
        text = check_reason(reason)
        given = check_signatures(root, kid, tokens, signatures, "prepared payload")
        prior_rows = list(session.execute(
            select(Decision).where(Decision.request_id == row.id)).scalars())
        if row.basis == "emergency" and any(
            d.action == Action.APPROVE.value and d.org == caller.org for d in prior_rows
        ):
            raise Forbidden("an emergency needs reviewers of two organisations; "
                            f"{caller.org} has approved already")
        verdict = decide(
            status=row.status, submitter_org=row.org,
            approvals_required=row.approvals_required,
            prior=[PriorDecision(d.reviewer_id, Action(d.action)) for d in prior_rows],
            reviewer=Reviewer(caller.id, caller.role, caller.org),
            action=Action.APPROVE, reason=reason,
        )
        session.add(Decision(request_id=row.id, reviewer_id=caller.id, org=caller.org,
                             action=Action.APPROVE.value, reason=text, at=now))
        for jti, token in tokens.items():
            segment, collected = stored(token)
            token.jws = canonical_json(
                {"payload": segment,
                 "signatures": [d.to_json() for d in [*collected, given[jti]]]}).decode()
            token.updated_at = now
        row.status = verdict.status.value
        row.updated_at = now
        session.flush()
        self.core.audit.append_at_commit(session, at=now, actor=caller.label,
                               action="request.approve", subject=f"request:{row.id}",
                               detail={"reason": text, "org": caller.org, "kid": kid,
                                       "approvals": verdict.approvals,
                                       "required": verdict.required,
                                       "status": verdict.status.value})
        if verdict.status is RequestStatus.APPROVED:
            return self._finish(session, row, list(tokens.values()), now)
        return []

    def _finish(self, session: Any, row: Request, tokens: list[Token], now: datetime
                ) -> list[str]:
        reasons = self.intake.recheck(session, row, now)
        if reasons:  # the law changed under the request: nothing is released
            row.status = RequestStatus.REFUSED.value
            row.reasons = [*row.reasons, *reasons]
            self.core.audit.append_at_commit(session, at=now, actor="service:policy",
                                   action="request.refused", subject=f"request:{row.id}",
                                   detail={"reasons": reasons, "at": "approval"})
            discard(self.core.audit, session, tokens, code=reasons[0]["code"],
                    why=f"the request no longer passes the legal check: "
                        f"{reasons[0]['reason']}", actor="service:policy", now=now)
            return []
        policy = self.issuer.signer.policy_key
        for token in tokens:
            segment, collected = stored(token)
            token.jws = assemble(segment, [sign_detached(segment, policy), *collected]).decode()
            token.status = TokenStatus.ISSUED.value
            token.updated_at = now
            self.core.audit.append_at_commit(session, at=now, actor="service:signer",
                                   action="token.issued", subject=f"token:{token.jti}",
                                   detail={"request": row.id, "device": token.device_id,
                                           "seq": token.seq, "basis": row.basis,
                                           "signers": ["policy", "review"]})
        row.status = RequestStatus.RELEASED.value
        return [t.jti for t in tokens]
