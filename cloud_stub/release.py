"""Turning an approved request into signed tokens, and handing them to the broker.

`issue` runs inside the transaction that recorded the last approval, so a request is
never approved without its tokens nor tokens issued for an unapproved request. Per named
device it allocates the next ``seq``, opens the escrowed epoch keys overlapping
``[window.start - 1 h, window.end]`` and seals them at once to the device's transport
recipient, builds the claims (``jti`` uuid4, token life from the basis, capped by the
trust root and, for a warrant, by the warrant's ``expires``: a token never outlives its
warrant) and signs them with the threshold of release keys. A device with no escrowed
epoch in the window gets no token: there is nothing it could decrypt. Publishing happens
after the commit (`publish`); a token the broker did not take stays ``issued`` and is
published again when the MQTT link reconnects, and on the link's next redelivery pass.
A ``published`` token that no device result has answered is published again with
backoff until its ``exp`` (`redeliver`, policy in `cloud_stub.domain.redelivery_policy`, ADR 0011):
the broker's acknowledgement does not prove the device will ever get it. A token the
device refused ``stale_seq`` or ``expired`` is signed again only on a reviewer's decision
(`sign_for_device` from `cloud_stub.reissuing`); the refused one becomes ``superseded``.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import case, func, select

from cloud_stub.core import ReleasePublisher, ServiceCore
from cloud_stub.domain.lifecycle import RequestStatus, TokenStatus
from cloud_stub.domain.redelivery_policy import (
    PublishedToken,
    RedeliveryPolicy,
    due_for_redelivery,
)
from cloud_stub.errors import CloudError, SigningError
from cloud_stub.escrow import Escrow
from cloud_stub.policy.requests import DEFAULT_HOLD_DAYS as DEFAULT_HOLD_DAYS  # re-exported
from cloud_stub.release_log import DeploymentLog, LogClientError
from cloud_stub.signer import TokenSigner
from cloud_stub.store.models import AuditRow, Device, Request, Token
from cloud_stub.store.sequence import allocate_seq
from cloud_stub.views import warrant_expiry
from protocol.errors import KeyFormatError
from protocol.keys import canonical_json
from protocol.timefmt import parse_time
from protocol.token import CaseRef, ReleaseClaims, Window, seal_keys_for_device, unix_time

log = logging.getLogger(__name__)


PUBLISHED_ACTION = "token.published"
REPUBLISHED_ACTION = "token.republished"


@dataclass(frozen=True, slots=True)
class PublishHistory:
    """From the audit log: the last publish of a token and how many were re-publishes."""

    last_published_at: datetime
    republished: int


@dataclass(frozen=True, slots=True)
class Issued:
    jti: str
    device_id: str
    seq: int


def issued_sha256(token: Token) -> str:
    """The sha256 of the token's bytes exactly as issued and published (its stored JWS
    text, UTF-8): the bytes a device result must name to be believed."""
    return hashlib.sha256(token.jws.encode("utf-8")).hexdigest()


def _document_sha256(row: Request) -> str:
    given = row.body.get("document_sha256")
    if row.basis == "warrant" and isinstance(given, str) and len(given) == 64:
        return given.lower()
    return hashlib.sha256(canonical_json(row.body)).hexdigest()


def case_ref(row: Request, agency_org: str) -> CaseRef:
    """The token's ``case``: what the owner's notice names as the requester. For a
    warrant the docket and the court are the ones the court signed (checked at
    submission and at approval); for an emergency or a preservation the authority is the
    authenticated agency's registered organisation and the docket the service's request
    id, never the request body's free text (``agency``, ``agency_case_number``), which
    would let one agency sign a request as another (docs/protocol.md, ``case``)."""
    body: dict[str, Any] = row.body
    if row.basis == "warrant":
        docket = str(body.get("docket") or row.id)
        authority = str(body.get("court_id") or agency_org)
    else:
        docket = row.id
        authority = agency_org
    return CaseRef(
        request_id=row.id,
        docket=docket[:256],
        authority=authority[:256],
        document_sha256=_document_sha256(row),
    )


class Releaser:
    """Issues and publishes tokens for approved requests."""

    def __init__(self, core: ServiceCore, *, signer: TokenSigner, escrow: Escrow,
                 policy_life_s: Callable[[str], int] | None = None) -> None:
        self.core = core
        self.signer = signer
        self.escrow = escrow
        self.policy_life_s = policy_life_s
        section = core.settings.redelivery
        self.redelivery = RedeliveryPolicy(initial_s=section.initial_s, max_s=section.max_s)
        self._history: dict[str, PublishHistory] = {}  # cache of the audit log, by jti
        self._redeliver_lock = threading.RLock()  # guards the cache; redeliver is re-entrant
        # under a trust root with a log policy, tokens go out only with their log proof
        # (docs/protocol.md section 11)
        self.release_log = DeploymentLog(core.layout, now=core.now)

    def upload_url(self, jti: str) -> str:
        return f"{self.core.settings.api.url.rstrip('/')}/v1/evidence/{jti}"

    def _life_s(self, row: Request) -> int:
        limit = self.signer.limits(row.basis).max_token_life_s
        if self.policy_life_s is not None:  # the policy file may only shorten it
            limit = min(limit, self.policy_life_s(row.basis))
        asked = row.body.get("token_lifetime_s")
        if isinstance(asked, int) and 0 < asked < limit:
            return asked
        return limit

    def issue(self, session: Any, row: Request, agency_org: str, now: datetime
              ) -> list[Issued]:
        """Sign one token per named device and store them; set the request's status.

        Raises `SigningError` when a token cannot be built (unreadable escrow, bad key).
        """
        if row.window_start is None or row.window_end is None:
            raise SigningError(f"request {row.id} has no window", code="bad_state")
        issued: list[Issued] = []
        skipped: list[str] = []
        revoked: list[str] = []
        for device_id in [str(d) for d in row.devices]:
            device = session.get(Device, device_id)
            if device is None:
                raise SigningError(f"device {device_id} is not enrolled", code="bad_state")
            if device.revoked_at is not None:  # revoked after the request was submitted
                revoked.append(device_id)
                continue
            one = self.sign_for_device(session, row, device, agency_org, now)
            if one is None:
                skipped.append(device_id)
                continue
            issued.append(one)
        row.status = (RequestStatus.RELEASED if issued else RequestStatus.NO_FOOTAGE).value
        if revoked:
            row.reasons = [*row.reasons, {
                "code": "device_revoked",
                "reason": "revoked device, no token issued: " + ", ".join(revoked),
            }]
        if skipped:
            row.reasons = [*row.reasons, {
                "code": "no_escrowed_epochs",
                "reason": "no footage can be released from " + ", ".join(skipped)
                          + ": the doorbell sent the cloud no key for any hour of the window "
                          "(it was offline or not yet enrolled then, or has deleted that "
                          "footage), so there is nothing to send",
            }]
        row.updated_at = now
        return issued

    def sign_for_device(self, session: Any, row: Request, device: Device, agency_org: str,
                        now: datetime, *, audit_detail: dict[str, Any] | None = None
                        ) -> Issued | None:
        """Sign and store one token of an approved request for one enrolled, unrevoked
        device: a new ``jti`` and the device's next ``seq``, the request's window, basis
        and case, a token life from `now` capped as the basis and the policy say. Audited
        as ``token.issued`` (with `audit_detail` added). None when no escrowed epoch
        overlaps the window (nothing the device could decrypt).

        Raises `SigningError` when the token cannot be built.
        """
        if row.window_start is None or row.window_end is None:
            raise SigningError(f"request {row.id} has no window", code="bad_state")
        window = Window(start=row.window_start, end=row.window_end)
        case = case_ref(row, agency_org)
        life = self._life_s(row)
        warrant_expires = warrant_expiry(row)
        if warrant_expires is not None:  # a token never outlives its warrant
            left = unix_time(warrant_expires) - unix_time(now)
            if left <= 0:
                raise SigningError(f"the warrant of request {row.id} has expired",
                                   code="warrant_expired")
            life = min(life, left)
        preservation = row.basis == "preservation"
        notify_after = row.body.get("notify_after")
        lead = timedelta(seconds=self.core.limits.epoch_lead_s)
        device_id = device.id
        jti = str(uuid.uuid4())
        extra: dict[str, Any] = {}
        if preservation:
            days = int(row.body.get("hold_days") or DEFAULT_HOLD_DAYS)
            extra["hold_until"] = now + timedelta(days=days)
        else:
            epochs = self.escrow.covering(session, device_id, window.start, window.end, lead)
            if not epochs:
                return None
            try:
                keys = seal_keys_for_device(self.escrow.open(epochs),
                                            device.transport_recipient)
            except KeyFormatError as exc:
                raise SigningError(f"cannot seal keys for {device_id}: {exc}") from exc
            extra["recipient"] = str(row.body.get("recipient") or "")
            extra["keys"] = keys
            extra["upload"] = self.upload_url(jti)
            if notify_after:
                extra["notify_after"] = parse_time(str(notify_after).replace("+00:00", "Z"))
        seq = allocate_seq(session, device_id)
        iat = unix_time(now)
        claims = ReleaseClaims(
            v=1,
            iss=self.signer.issuer,
            aud=device_id,
            jti=jti,
            seq=seq,
            iat=iat,
            nbf=iat,
            exp=iat + life,
            basis=row.basis,
            case=case,
            window=window,
            **extra,
        )
        jws = self.signer.sign(claims)
        session.add(
            Token(
                jti=jti,
                request_id=row.id,
                device_id=device_id,
                seq=seq,
                basis=row.basis,
                window_start=window.start,
                window_end=window.end,
                issued_at=now,
                expires_at=now + timedelta(seconds=life),
                hold_until=extra.get("hold_until"),
                size_cap=0 if preservation else self.core.limits.max_evidence_per_token,
                status=TokenStatus.ISSUED.value,
                status_reason="",
                jws=jws.decode("utf-8"),
                updated_at=now,
            )
        )
        session.flush()
        self.core.audit.append(
            session,
            at=now,
            actor="service:signer",
            action="token.issued",
            subject=f"token:{jti}",
            detail={
                "request": row.id,
                "device": device_id,
                "seq": seq,
                "basis": row.basis,
                "window": window.to_payload(),
                "exp": iat + life,
                "signers": ["policy", "review"],
                **(audit_detail or {}),
            },
        )
        return Issued(jti, device_id, seq)

    def publish(self, jtis: list[str]) -> None:
        """Hand issued tokens to the broker; a failure leaves them ``issued`` for a retry."""
        publisher = self.core.publisher
        if publisher is None:
            return
        for jti in jtis:
            device_id = self._hand_to_broker(publisher, jti, TokenStatus.ISSUED, "published")
            if device_id is None:
                continue
            with self.core.store.transaction() as session:
                token = session.get(Token, jti)
                if token is not None and token.status == TokenStatus.ISSUED:
                    token.status = TokenStatus.PUBLISHED.value
                    token.updated_at = self.core.now()
                    self.core.audit.append(
                        session,
                        at=self.core.now(),
                        actor="service:mqtt",
                        action=PUBLISHED_ACTION,
                        subject=f"token:{jti}",
                        detail={"device": device_id},
                    )

    def _hand_to_broker(self, publisher: ReleasePublisher, jti: str, status: str,
                        what: str) -> str | None:
        """Publish token `jti` while it has `status`; its device when the broker took
        it, None when the token is gone or moved on, or the publish failed (logged)."""
        with self.core.store.read() as session:
            token = session.get(Token, jti)
            if token is None or token.status != status:
                return None
            device_id, jws = token.device_id, token.jws
            device = session.get(Device, device_id)
            identity = "" if device is None else device.identity_pub
        try:
            # the statement logged and cosigned by the witness quorum before it is sent
            payload = self.release_log.with_proof(device_id, identity, jws.encode("utf-8"))
        except LogClientError as exc:
            log.warning("token %s not %s yet: no release-log proof: %s", jti, what, exc)
            return None
        try:
            publisher.publish_release(device_id, payload)
        except CloudError as exc:
            log.warning("token %s not %s yet: %s", jti, what, exc)
            return None
        return device_id

    def pending(self) -> list[str]:
        """Tokens issued but not yet taken by the broker, oldest first."""
        with self.core.store.transaction() as session:
            return list(
                session.execute(
                    select(Token.jti)
                    .where(Token.status == TokenStatus.ISSUED)
                    .order_by(Token.issued_at, Token.seq)
                ).scalars()
            )

    # --- re-publishing tokens that no result answered (ADR 0011) -----------------------

    def awaiting_result(self, now: datetime) -> list[PublishedToken]:
        """Unexpired ``published`` tokens with their publish history, oldest first."""
        with self._redeliver_lock, self.core.store.read() as session:
            rows = session.execute(
                select(Token.jti, Token.status, Token.expires_at, Token.updated_at)
                .where(Token.status == TokenStatus.PUBLISHED, Token.expires_at > now)
                .order_by(Token.issued_at, Token.seq)
            ).all()
            live = {row.jti for row in rows}
            for gone in set(self._history) - live:
                del self._history[gone]
            missing = [jti for jti in live if jti not in self._history]
            if missing:
                self._history.update(self._read_history(session, missing))
        out = []
        for row in rows:
            # no audit entry (a store older than the audit of publishes): the row's time
            known = self._history.get(row.jti) or PublishHistory(row.updated_at, 0)
            out.append(PublishedToken(jti=row.jti, status=row.status,
                                      expires_at=row.expires_at,
                                      last_published_at=known.last_published_at,
                                      republished=known.republished))
        return out

    @staticmethod
    def _read_history(session: Any, jtis: list[str]) -> dict[str, PublishHistory]:
        prefix = "token:"
        rows = session.execute(
            select(AuditRow.subject, func.max(AuditRow.at),
                   func.sum(case((AuditRow.action == REPUBLISHED_ACTION, 1), else_=0)))
            .where(AuditRow.action.in_((PUBLISHED_ACTION, REPUBLISHED_ACTION)),
                   AuditRow.subject.in_([prefix + jti for jti in jtis]))
            .group_by(AuditRow.subject)
        ).all()
        return {subject.removeprefix(prefix): PublishHistory(last, int(republished))
                for subject, last, republished in rows}

    def redeliver(self, now: datetime) -> list[str]:
        """Publish again every token the policy says is due at `now`; returns those the
        broker took. Each is audited as ``token.republished`` with its attempt number.
        A publish the broker does not take is tried again on a later pass."""
        with self._redeliver_lock:
            return self._redeliver_locked(now)

    def _redeliver_locked(self, now: datetime) -> list[str]:
        publisher = self.core.publisher
        if publisher is None:
            return []
        waiting = {token.jti: token for token in self.awaiting_result(now)}
        done = []
        for jti in due_for_redelivery(waiting.values(), now=now, policy=self.redelivery):
            # None also when a result arrived meanwhile (the token left `published`)
            device_id = self._hand_to_broker(publisher, jti, TokenStatus.PUBLISHED,
                                             "published again")
            if device_id is None:
                continue
            at = self.core.now()
            attempt = waiting[jti].republished + 1
            with self.core.store.transaction() as session:
                self.core.audit.append(
                    session,
                    at=at,
                    actor="service:mqtt",
                    action=REPUBLISHED_ACTION,
                    subject=f"token:{jti}",
                    detail={"device": device_id, "attempt": attempt,
                            "reason": "no device result yet"},
                )
            self._history[jti] = PublishHistory(at, attempt)
            log.info("token %s published again (attempt %d): no result from %s yet",
                     jti, attempt, device_id)
            done.append(jti)
        return done
