"""Re-issuing a refused token by the reviewers' signatures under trust root v2
(docs/adr/0013-trust-root-v2.md, "Re-issue by signature").

Under v1 the service signs a re-issued token by itself (`cloud_stub.services.reissuing`).
Under v2 it holds only the policy key, so a re-issue goes the way of approval by signature
(`cloud_stub.services.signed_review`):

- a reviewer asks for the re-issue payload (`payload`): the service checks the request is
  re-issuable (`Reissuing.candidates`: per device, its latest token refused ``stale_seq``
  or ``expired`` without accepted evidence) and still lawful now
  (`Intake.require_lawful_now`), and prepares, once, one payload per such device: new
  ``jti``, next ``seq``, the same window, basis, case, recipient and warrant, a fresh life
  capped at the warrant's expiry, the keys sealed again. It is stored as a token row in
  status ``prepared`` whose ``status_reason`` names the token it replaces; every reviewer
  is shown the same bytes;
- each reviewer signs them on their own machine (`doorbell-review reissue`) and posts the
  signatures with a written reason (`submit`). The service takes them only from the
  reviewer whose key id the trust root lists under that reviewer's name and organisation,
  over exactly the prepared payloads, from a reviewer allowed to review the request (not
  the submitter's organisation), once per reviewer and organisation; and it runs the legal
  check and the re-issuability again at that moment;
- a re-issue needs as many reviewers, of as many organisations, as approving the request
  did: ``max(approvals_required, rules[basis].review)`` reviewers, each of another
  organisation (an emergency: two). When the last one is in, the service adds the policy
  signature, marks the refused token ``superseded``, audits ``token.reissued`` (old and
  new jti, the reviewers, their reasons and key ids) and publishes after the commit.

A refusal changes nothing (the transaction is rolled back), except that prepared payloads
it shows can no longer be signed are discarded with its reason and audited, committed
before it is raised (`cloud_stub.services.prepared`).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cloud_stub.domain.lifecycle import UNISSUED, RequestStatus, TokenStatus
from cloud_stub.domain.review_rules import Reviewer, check_reason, check_reviewer, organisation_key
from cloud_stub.domain.summaries import RequestSummary
from cloud_stub.errors import Conflict, Forbidden, NotFound
from cloud_stub.services.context import PrincipalCaller, ServiceCore, takes_a_signing_slot
from cloud_stub.services.intake import Intake
from cloud_stub.services.prepared import (
    EXPIRED,
    LATER_ISSUED,
    REISSUE_OF,
    TOKENS_CHANGED,
    discard,
    prepared_rows,
    replaced_jti,
    stored,
)
from cloud_stub.services.publishing import Publisher
from cloud_stub.services.reissuing import REISSUED_ACTION, Candidate, Reissuing
from cloud_stub.services.signed_review import (
    SignedReview,
    Submitted,
    aware_utc,
    check_reviewer_key,
    check_signatures,
    payload_view,
)
from cloud_stub.store.models import Principal, Request, Token
from cloud_stub.store.sequence import lock_counters
from protocol.keys import canonical_json
from protocol.release_signing import (
    assemble,
    sign_detached,
)
from protocol.trust_root_v2 import TrustRootV2

SIGNED_ACTION = "token.reissue_signed"
PREPARED_ACTION = "token.reissue_prepared"


def _reviews(token: Token) -> list[dict[str, str]]:
    """The reviewers who signed a prepared re-issue row so far: kid, name, org, reason."""
    return list(json.loads(token.jws).get("reviews", []))


def reviewers_required(root: TrustRootV2, row: Request) -> int:
    """How many reviewers, each of another organisation, a re-issue of `row` needs: as
    many as its approval (the request's rule and the trust root's rule for its basis)."""
    rule = root.rules[row.basis]
    return max(row.approvals_required, rule.review, rule.review_orgs)


class SignedReissue:
    """Prepare re-issue payloads, accept reviewer signatures, finish with the policy key."""

    def __init__(self, core: ServiceCore, signed_review: SignedReview, reissuing: Reissuing,
                 publisher: Publisher, intake: Intake) -> None:
        self.core = core
        self.signed_review = signed_review
        self.reissuing = reissuing
        self.publisher = publisher
        self.intake = intake

    # --- the payload ---------------------------------------------------------------------

    @takes_a_signing_slot
    def payload(self, caller: PrincipalCaller, request_id: str) -> dict[str, Any]:
        """The prepared re-issue payloads of a request (prepared on first ask, and again
        when the ones stored expired or no longer match what is re-issuable).

        Raises Forbidden (not a reviewer, separation of duties), Conflict (v1 root,
        ``not_reissuable``, the legal check's own code, ``no_escrowed_epochs``), NotFound,
        SigningError.
        """
        now = self.core.now()
        root = self.signed_review.root(now)
        with self.core.store.transaction() as session:
            row = self.core.load_request(session, request_id, lock=True)
            check_reviewer(Reviewer(caller.id, caller.role, caller.org), row.org)
            tokens = self._prepared(session, row.id)
            candidates, refusal, outdated = self._recheck(session, row, tokens, caller.label,
                                                          now)
            if outdated:
                tokens = []  # discarded: prepared again below
            if refusal is None and not tokens:
                try:
                    with session.begin_nested():  # a refusal keeps the discards above
                        tokens = self._prepare(session, row, root, candidates, now)
                except Conflict as exc:
                    refusal = exc
            if refusal is None:
                return self._shown(row, root, tokens, candidates)
        raise refusal  # after the commit: the discarded payloads stay discarded

    def _shown(self, row: Request, root: TrustRootV2, tokens: list[Token],
               candidates: list[Candidate]) -> dict[str, Any]:
        """The prepared re-issue payloads as a reviewer is shown them."""
        replaced = {c.old.jti: c.old for c in candidates}
        payloads = []
        for token in tokens:
            old = replaced[replaced_jti(token)]
            payloads.append({
                **payload_view(token),
                "replaces": {"jti": old.jti, "seq": old.seq,
                             "refused": old.status_reason},
                "signed_by": [r["name"] for r in _reviews(token)],
            })
        return {"request_id": row.id, "basis": row.basis, "root_version": root.version,
                "reviewers_required": reviewers_required(root, row),
                "payloads": payloads}

    def _prepared(self, session: Session, request_id: str) -> list[Token]:
        return prepared_rows(session, request_id, reissue=True)

    def _recheck(self, session: Session, row: Request, tokens: list[Token], actor: str,
                 now: datetime) -> tuple[list[Candidate], Conflict | None, str]:
        """The re-issuability and the law as they are now, not as when `tokens` (the
        request's prepared re-issue rows) were prepared: the tokens re-issuable now, the
        refusal to raise after the commit (None when there is none), and why `tokens`
        can no longer be signed ("" when they can). Tokens that can no longer be signed
        are discarded with the refusal's code or `_outdated`'s reason."""
        try:
            candidates = self.reissuing.candidates(session, row)
            self.intake.require_lawful_now(session, row, now)
        except Conflict as exc:
            discard(self.core.audit, session, tokens, code=exc.code, why=str(exc),
                    actor=actor, now=now)
            return [], exc, str(exc) if tokens else ""
        code, why = self._outdated(session, tokens, candidates, now) if tokens else ("", "")
        if why:
            discard(self.core.audit, session, tokens, code=code, why=why, actor=actor,
                    now=now)
        return candidates, None, why

    @staticmethod
    def _outdated(session: Session, tokens: list[Token], candidates: list[Candidate],
                  now: datetime) -> tuple[str, str]:
        """Why prepared re-issue payloads can no longer be signed, as a named reason and
        words (("", "") when they can): one expired, they replace other tokens than the
        ones re-issuable now, or a later token was issued to the device since (the new
        one would be refused ``stale_seq``: the device accepted something newer)."""
        if min(aware_utc(t.expires_at) for t in tokens) <= now:
            return EXPIRED, "the prepared payload expired"
        if sorted(replaced_jti(t) for t in tokens) != sorted(c.old.jti for c in candidates):
            return TOKENS_CHANGED, "the tokens to re-issue changed since the payload was prepared"
        for token in tokens:
            later = session.execute(
                select(func.count()).select_from(Token)
                .where(Token.device_id == token.device_id, Token.seq > token.seq,
                       Token.status.not_in(UNISSUED))).scalar_one()
            if later:
                return LATER_ISSUED, f"a later token was issued to {token.device_id} since"
        return "", ""

    def _prepare(self, session: Session, row: Request, root: TrustRootV2,
                 candidates: list[Candidate], now: datetime) -> list[Token]:
        agency = session.get(Principal, row.agency_id)
        if agency is None:
            raise NotFound(f"the agency of request {row.id} no longer exists")
        warrant = self.signed_review.warrant_claim(row) if root.rules[row.basis].court else None
        lock_counters(session, [c.device.id for c in candidates])
        out = []
        for candidate in candidates:
            token = self.signed_review.prepared_token(
                session, row, candidate.device, agency.name, root, warrant, now,
                status_reason=REISSUE_OF + candidate.old.jti)
            if token is None:  # the escrowed epochs are gone: nothing to seal
                raise Conflict(f"no escrowed epoch key overlaps the window for "
                               f"{candidate.device.id} any more", code="no_escrowed_epochs")
            out.append(token)
        session.flush()
        self.core.audit.append(session, at=now, actor="service:policy",
                               action=PREPARED_ACTION, subject=f"request:{row.id}",
                               detail={"tokens": [t.jti for t in out],
                                       "replaces": [replaced_jti(t) for t in out],
                                       "root_version": root.version})
        return out

    # --- the signatures ------------------------------------------------------------------

    @takes_a_signing_slot
    def submit(self, caller: PrincipalCaller, request_id: str, kid: str, reason: str,
               signatures: list[Submitted]) -> RequestSummary:
        """Record one reviewer's signatures over the prepared re-issue payloads; on the
        last one needed, issue the new tokens and publish them after the commit.

        Raises Forbidden (not this reviewer's key, separation of duties, an organisation
        that signed already), Conflict (``not_prepared``, ``payload_outdated``,
        ``already_decided``, ``not_reissuable``, the legal check's own code),
        HostileInputError (a signature not over the prepared payload, a missing or extra
        one, no reason), NotFound.
        """
        now = self.core.now()
        root = self.signed_review.root(now)
        check_reviewer_key(root, kid, caller)
        text = check_reason(reason)
        issued: list[str] = []
        with self.core.store.transaction() as session:
            row = self.core.load_request(session, request_id, lock=True)
            check_reviewer(Reviewer(caller.id, caller.role, caller.org), row.org)
            tokens = {t.jti: t for t in self._prepared(session, row.id)}
            if not tokens:
                raise Conflict("no re-issue is prepared for this request: fetch the "
                               "re-issue payload first", code="not_prepared")
            candidates, refusal, why = self._recheck(session, row, list(tokens.values()),
                                                     caller.label, now)
            if refusal is None and why:
                refusal = Conflict(f"{why}: fetch the re-issue payload again and sign it",
                                   code="payload_outdated")
            if refusal is None:
                issued = self._sign(session, row, root, kid, text, caller, tokens,
                                    signatures, candidates, now)
        if refusal is not None:
            raise refusal  # after the commit: the discarded payloads stay discarded
        self.publisher.publish(issued)
        with self.core.store.transaction() as session:
            return self.core.summary(session, self.core.load_request(session, request_id))

    def _sign(self, session: Session, row: Request, root: TrustRootV2, kid: str, text: str,
              caller: PrincipalCaller, tokens: dict[str, Token], signatures: list[Submitted],
              candidates: list[Candidate], now: datetime) -> list[str]:
        """Record the caller's signatures over the prepared re-issue payloads; the tokens
        issued when they were the last needed."""
        given = check_signatures(root, kid, tokens, signatures,
                                 "prepared re-issue payload")
        reviews = _reviews(next(iter(tokens.values())))
        if any(r["kid"] == kid or r["name"] == caller.name for r in reviews):
            raise Conflict("this reviewer already signed this re-issue",
                           code="already_decided")
        if any(organisation_key(r["org"]) == organisation_key(caller.org)
               for r in reviews):
            raise Forbidden("a reviewer of this organisation already signed this "
                            "re-issue; the next must come from another organisation",
                            code="same_organisation")
        review = {"kid": kid, "name": caller.name, "org": caller.org, "reason": text}
        reviews = [*reviews, review]
        for jti, token in tokens.items():
            segment, collected = stored(token)
            token.jws = canonical_json(
                {"payload": segment,
                 "signatures": [d.to_json() for d in [*collected, given[jti]]],
                 "reviews": reviews}).decode()
            token.updated_at = now
        required = reviewers_required(root, row)
        self.core.audit.append_at_commit(
            session, at=now, actor=caller.label, action=SIGNED_ACTION,
            subject=f"request:{row.id}",
            detail={"tokens": sorted(tokens), "reason": text, "org": caller.org,
                    "kid": kid, "signatures": len(reviews), "required": required})
        row.updated_at = now
        if len(reviews) >= required:
            old = {c.old.jti: c.old for c in candidates}
            return self._finish(session, row, list(tokens.values()), old, reviews,
                                caller, now)
        return []

    def _finish(self, session: Session, row: Request, tokens: list[Token],
                old: dict[str, Token], reviews: list[dict[str, str]],
                caller: PrincipalCaller, now: datetime) -> list[str]:
        policy = self.signed_review.issuer.signer.policy_key
        for token in tokens:
            segment, collected = stored(token)
            jti = replaced_jti(token)
            if jti not in old:  # `_outdated` checked this; a mismatch is a bug: fail closed
                raise Conflict(f"token {token.jti} replaces no re-issuable token",
                               code="not_reissuable")
            refused_token = old[jti]
            token.jws = assemble(segment, [sign_detached(segment, policy), *collected]).decode()
            token.status = TokenStatus.ISSUED.value
            token.status_reason = ""
            token.updated_at = now
            refused = refused_token.status_reason
            refused_token.status = TokenStatus.SUPERSEDED.value
            refused_token.status_reason = f"rejected {refused}; re-issued as {token.jti}"
            refused_token.updated_at = now
            self.core.audit.append_at_commit(
                session, at=now, actor="service:signer", action="token.issued",
                subject=f"token:{token.jti}",
                detail={"request": row.id, "device": token.device_id, "seq": token.seq,
                        "basis": row.basis, "signers": ["policy", "review"],
                        "reissue_of": refused_token.jti})
            self.core.audit.append_at_commit(
                session, at=now, actor=caller.label, action=REISSUED_ACTION,
                subject=f"token:{refused_token.jti}",
                detail={"request": row.id, "device": token.device_id,
                        "old_jti": refused_token.jti, "old_seq": refused_token.seq,
                        "refused": refused, "new_jti": token.jti, "new_seq": token.seq,
                        "reviewer": caller.name, "org": caller.org,
                        "reason": reviews[-1]["reason"], "kid": reviews[-1]["kid"],
                        "reviewers": reviews})
        if row.status == RequestStatus.REJECTED:
            row.status = RequestStatus.RELEASED.value
        return [t.jti for t in tokens]

