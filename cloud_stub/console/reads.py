"""What the console pages show, read through the service's own reads and checks.

Visibility is the service's: a request is read through `ServiceCore.visible_request`
(an agency sees only its own; another agency's request is `NotFound`), the queue through
`Intake.queue_page`, an agency's list through `Intake.list_for`. Verdicts are the
service's checks run again now: the legal check's rules (`console.rules`), the court
signature, the manifest signature (`protocol.manifest.verify_manifest` under the
device's enrolled key) and the audit chain (`AuditTrail.verify`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud_stub.api.views import RequestView, TokenView, request_view, token_view
from cloud_stub.console.rules import CourtVerdict, RuleResult, court_verdict, explain
from cloud_stub.domain.audit_chain import AuditChainBroken, AuditEntry
from cloud_stub.errors import Forbidden, NotFound
from cloud_stub.policy import parse_request
from cloud_stub.services.cloud_service import CloudService
from cloud_stub.services.context import PrincipalCaller
from cloud_stub.services.publishing import REPUBLISHED_ACTION
from cloud_stub.services.summarise import token_summary
from cloud_stub.store.models import AuditRow, CustodyRecord, Device, Manifest, Request, Token
from protocol.errors import ProtocolError
from protocol.keys import public_key_from_hex
from protocol.manifest import verify_manifest

AUDIT_SHOWN = 200  # the newest entries listed under the chain's verdict
ONLINE = "online"
ISSUED_ACTION = "token.issued"


@dataclass(frozen=True, slots=True)
class DeviceState:
    id: str
    enrolled: bool
    revoked_at: datetime | None
    online: bool
    last_status: str | None
    last_seen: datetime | None


@dataclass(frozen=True, slots=True)
class RequestPage:
    view: RequestView
    body: Mapping[str, Any]  # what the agency submitted (shown inert)
    rules: list[RuleResult]
    rules_error: str | None  # the stored body no longer parses (shown, not hidden)
    court: CourtVerdict | None
    devices: list[DeviceState]
    checked_at: datetime


@dataclass(frozen=True, slots=True)
class TokenEvent:
    at: datetime
    actor: str
    action: str
    detail: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class TokenLife:
    request_id: str
    token: TokenView
    events: list[TokenEvent]
    redeliveries: int


@dataclass(frozen=True, slots=True)
class ManifestVerdict:
    jti: str
    device: str
    verified: bool
    reason: str


@dataclass(frozen=True, slots=True)
class CustodyPage:
    request_id: str
    files: list[CustodyRecord]
    manifests: list[ManifestVerdict]


@dataclass(frozen=True, slots=True)
class AuditPage:
    ok: bool
    entries: int
    head_hash: str | None
    problem: str | None
    recent: list[AuditEntry]


def _visible(service: CloudService, session: Session, caller: PrincipalCaller,
             request_id: str) -> Request:
    return service.core.visible_request(session, caller, request_id)


def _devices(session: Session, ids: Sequence[str]) -> list[DeviceState]:
    rows = {d.id: d for d in session.execute(select(Device).where(Device.id.in_(ids))).scalars()}
    out = []
    for device_id in ids:
        row = rows.get(device_id)
        if row is None:
            out.append(DeviceState(device_id, False, None, False, None, None))
            continue
        out.append(DeviceState(device_id, True, row.revoked_at, row.last_status == ONLINE,
                               row.last_status, row.last_status_at))
    return out


def request_page(service: CloudService, caller: PrincipalCaller, request_id: str
                 ) -> RequestPage:
    """Raises `NotFound` (also another agency's request), `Forbidden`."""
    now = service.core.now()
    with service.store.transaction() as session:
        row = _visible(service, session, caller, request_id)
        view = request_view(service.core.summary(session, row))
        body = dict(row.body)
        devices = _devices(session, [str(d) for d in row.devices])
        ctx = service.intake.context_for(session, row, now)
    rules: list[RuleResult] = []
    court = None
    rules_error = None
    try:
        request = parse_request(body)
    except ValidationError as exc:
        rules_error = f"the stored request no longer parses: {exc.error_count()} problem(s)"
    else:
        rules = explain(service.intake.policy, request, ctx)
        court = court_verdict(request, ctx)
    return RequestPage(view=view, body=body, rules=rules, rules_error=rules_error,
                       court=court, devices=devices, checked_at=now)


def token_life(service: CloudService, caller: PrincipalCaller, jti: str) -> TokenLife:
    """A token's history from the audit chain. Raises `NotFound` (no such token, or
    one of a request the caller may not see)."""
    with service.store.transaction() as session:
        token = session.get(Token, jti[:64])
        if token is None:
            raise NotFound(f"no token {jti[:40]!r}")
        _visible(service, session, caller, token.request_id)
        rows = session.execute(
            select(AuditRow).where(AuditRow.subject == f"token:{token.jti}")
            .order_by(AuditRow.seq)
        ).scalars().all()
        events = [TokenEvent(r.at, r.actor, r.action, dict(r.detail)) for r in rows]
        if not any(e.action == ISSUED_ACTION for e in events):  # a store from before it
            events.insert(0, TokenEvent(token.issued_at, "service:signer", ISSUED_ACTION,
                                        {"device": token.device_id, "seq": token.seq}))
        return TokenLife(
            request_id=token.request_id,
            token=token_view(token_summary(token)),
            events=events,
            redeliveries=sum(1 for e in events if e.action == REPUBLISHED_ACTION),
        )


def _manifest_verdict(manifest: Manifest, device: Device | None) -> ManifestVerdict:
    if device is None:
        return ManifestVerdict(manifest.jti, manifest.device_id, False,
                               "the device is no longer enrolled: no key to check with")
    try:
        verify_manifest(manifest.jws.encode(), public_key_from_hex(device.identity_pub))
    except (ProtocolError, ValueError) as exc:
        return ManifestVerdict(manifest.jti, manifest.device_id, False, str(exc)[:300])
    return ManifestVerdict(manifest.jti, manifest.device_id, True,
                           "signed by the device's enrolled identity key")


def custody(service: CloudService, caller: PrincipalCaller, request_id: str) -> CustodyPage:
    """Evidence files of a request and each manifest's verdict. Raises `NotFound`."""
    with service.store.transaction() as session:
        row = _visible(service, session, caller, request_id)
        files = list(session.execute(
            select(CustodyRecord).where(CustodyRecord.request_id == row.id)
            .order_by(CustodyRecord.jti, CustodyRecord.clip_start, CustodyRecord.clip_id)
        ).scalars())
        jtis = sorted({f.jti for f in files})
        manifests = session.execute(select(Manifest).where(Manifest.jti.in_(jtis))).scalars()
        verdicts = [_manifest_verdict(m, session.get(Device, m.device_id)) for m in manifests]
        session.expunge_all()
    return CustodyPage(request_id=request_id, files=files, manifests=verdicts)


def audit_page(service: CloudService, caller: PrincipalCaller) -> AuditPage:
    """The chain verified from its first entry to the recorded head, and the newest
    entries. Raises `Forbidden` for an agency (the chain names every request)."""
    if caller.role not in ("reviewer", "admin"):
        raise Forbidden("only reviewers and admins read the audit chain")
    with service.store.transaction() as session:
        rows = session.execute(
            select(AuditRow).order_by(AuditRow.seq.desc()).limit(AUDIT_SHOWN)
        ).scalars().all()
        recent = [AuditEntry(r.seq, r.at, r.actor, r.action, r.subject, dict(r.detail),
                             r.prev_hash, r.hash) for r in rows]
    try:
        report = service.core.audit.verify()
    except AuditChainBroken as exc:
        return AuditPage(False, exc.seq - 1, None, str(exc), recent)
    return AuditPage(True, report.entries, report.head_hash, None, recent)
