"""Turning an approved request into signed tokens.

`Issuer.issue` runs inside the transaction that recorded the last approval, so a request
is never approved without its tokens nor tokens issued for an unapproved request. Per
named device it allocates the next ``seq``, opens the escrowed epoch keys overlapping
``[window.start - 1 h, window.end]`` and seals them at once to the device's transport
recipient, builds the claims (``jti`` uuid4, token life from the basis, capped by the
trust root, by the policy file and, for a warrant, by the warrant's ``expires``: a token
never outlives its warrant) and signs them with the threshold of release keys. A device
with no escrowed epoch in the window gets no token: there is nothing it could decrypt.
The audit entries are queued for the commit (`AuditTrail.append_at_commit`): the chain's
lock is not held while the tokens are sealed and signed. Handing the tokens to the
broker happens after the commit
(`cloud_stub.services.publishing`). A token the device refused ``stale_seq`` or
``expired`` is signed again only on a reviewer's decision (`Issuer.sign_for_device` from
`cloud_stub.services.reissuing`); the refused one becomes ``superseded``.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cloud_stub.domain.lifecycle import RequestStatus, TokenStatus
from cloud_stub.errors import SigningError
from cloud_stub.policy.config import Limits
from cloud_stub.policy.requests import (
    DEFAULT_HOLD_DAYS,
    AnyRequest,
    EmergencyRequest,
    PreservationRequest,
    WarrantRequest,
    parse_request,
)
from cloud_stub.services.context import ServiceCore
from cloud_stub.services.escrow import Escrow
from cloud_stub.services.summarise import warrant_expiry
from cloud_stub.services.token_signing import TokenSigner
from cloud_stub.store.models import Device, Request, Token
from cloud_stub.store.sequence import allocate_seq, lock_counters
from protocol.errors import KeyFormatError
from protocol.keys import canonical_json
from protocol.token import CaseRef, ReleaseClaims, Window, seal_keys_for_device, unix_time


@dataclass(frozen=True, slots=True)
class Issued:
    jti: str
    device_id: str
    seq: int


def issued_sha256(token: Token) -> str:
    """The sha256 of the token's bytes exactly as issued and published (its stored JWS
    text, UTF-8): the bytes a device result must name to be believed."""
    return hashlib.sha256(token.jws.encode("utf-8")).hexdigest()


def _document_sha256(row: Request, request: AnyRequest) -> str:
    given = request.document_sha256 if isinstance(request, WarrantRequest) else None
    if given is not None and len(given) == 64:
        return given.lower()
    return hashlib.sha256(canonical_json(row.body)).hexdigest()


def hold_days(request: AnyRequest) -> int:
    """How long a preservation pins its clips, in days."""
    given = request.hold_days if isinstance(request, PreservationRequest) else None
    return given or DEFAULT_HOLD_DAYS


def notify_after(request: AnyRequest) -> datetime | None:
    """Until when a warrant's non-disclosure order delays the owner's notice."""
    return request.notify_after if isinstance(request, WarrantRequest) else None


def case_ref(row: Request, request: AnyRequest, agency_org: str) -> CaseRef:
    """The token's ``case``: what the owner's notice names as the requester. For a
    warrant the docket and the court are the ones the court signed (checked at
    submission and at approval); for an emergency or a preservation the authority is the
    authenticated agency's registered organisation and the docket the service's request
    id, never the request body's free text (``agency``, ``agency_case_number``), which
    would let one agency sign a request as another (docs/protocol.md, ``case``)."""
    if isinstance(request, WarrantRequest):
        docket = request.docket or row.id
        authority = request.court_id or agency_org
    else:
        docket = row.id
        authority = agency_org
    return CaseRef(
        request_id=row.id,
        docket=docket[:256],
        authority=authority[:256],
        document_sha256=_document_sha256(row, request),
    )

class Issuer:
    """Signs and stores the tokens of approved requests."""

    def __init__(self, core: ServiceCore, *, signer: TokenSigner, escrow: Escrow,
                 limits: Limits | None = None) -> None:
        self.core = core
        self.signer = signer
        self.escrow = escrow
        self.limits = limits  # the policy file's: it may only shorten a token's life

    def upload_url(self, jti: str) -> str:
        return f"{self.core.settings.api.url.rstrip('/')}/v1/evidence/{jti}"

    def life_s(self, row: Request, request: AnyRequest) -> int:
        """The life of a token of this request, in seconds, before a warrant caps it."""
        limit = self.signer.limits(row.basis).max_token_life_s
        if self.limits is not None:  # the policy file may only shorten it
            limit = min(limit, self.limits.token_life_s(row.basis))
        asked = (request.token_lifetime_s
                 if isinstance(request, WarrantRequest | EmergencyRequest) else None)
        if asked is not None and 0 < asked < limit:
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
        device_ids = [str(d) for d in row.devices]
        lock_counters(session, device_ids)  # in id order: approvals never wait on each other
        for device_id in device_ids:
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
        request = parse_request(row.body)  # it passed the legal check again just now
        case = case_ref(row, request, agency_org)
        life = self.life_s(row, request)
        warrant_expires = warrant_expiry(request)
        if warrant_expires is not None:  # a token never outlives its warrant
            left = unix_time(warrant_expires) - unix_time(now)
            if left <= 0:
                raise SigningError(f"the warrant of request {row.id} has expired",
                                   code="warrant_expired")
            life = min(life, left)
        preservation = row.basis == "preservation"
        notify = notify_after(request)
        lead = timedelta(seconds=self.core.limits.epoch_lead_s)
        device_id = device.id
        jti = str(uuid.uuid4())
        extra: dict[str, Any] = {}
        if preservation:
            extra["hold_until"] = now + timedelta(days=hold_days(request))
        else:
            epochs = self.escrow.covering(session, device_id, window.start, window.end, lead)
            if not epochs:
                return None
            try:
                keys = seal_keys_for_device(self.escrow.open(epochs),
                                            device.transport_recipient)
            except KeyFormatError as exc:
                raise SigningError(f"cannot seal keys for {device_id}: {exc}") from exc
            extra["recipient"] = request.recipient or ""
            extra["keys"] = keys
            extra["upload"] = self.upload_url(jti)
            if notify is not None:
                extra["notify_after"] = notify
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
        self.core.audit.append_at_commit(
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
