"""What the API and the CLI show of requests, decisions, tokens and evidence.

Pydantic models so that the OpenAPI description documents the answers and the CLI's
``--json`` prints exactly what the API returns. Built from store rows by `request_view`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from cloud_stub.store.models import CustodyRecord, Decision, Principal, Request, Token


class _View(BaseModel):
    model_config = ConfigDict(frozen=True)


class Reason(_View):
    code: str
    reason: str


class Window(_View):
    start: datetime
    end: datetime


class DecisionView(_View):
    reviewer: str
    org: str
    action: str
    reason: str
    at: datetime


class TokenView(_View):
    jti: str
    device: str
    seq: int
    basis: str
    status: str
    status_reason: str
    issued_at: datetime
    expires_at: datetime
    hold_until: datetime | None


class WarrantView(_View):
    """The warrant behind a warrant-basis request, as the agency filed it and the court
    signed it: what a reviewer checks with the clerk before approving. Fields the agency
    left out are null (the legal check refuses a warrant without them)."""

    court: str | None
    judge: str | None
    docket: str | None
    order_type: str | None
    issued: datetime | None
    expires: datetime | None  # no token of the request lives past it
    document_sha256: str | None
    notify_after: datetime | None
    investigator: str | None
    contact: str | None
    agency_case_number: str | None


class Approvals(_View):
    required: int
    received: int


class RequestView(_View):
    id: str
    basis: str
    status: str
    agency: str
    org: str
    devices: list[str]
    window: Window | None
    reasons: list[Reason]
    approvals: Approvals
    decisions: list[DecisionView]
    tokens: list[TokenView]
    follow_up_due: datetime | None
    follow_up_received: bool
    created_at: datetime
    updated_at: datetime
    warrant: WarrantView | None = None  # warrant basis only


class EvidenceFileView(_View):
    jti: str
    device: str
    clip_id: str
    sha256: str
    bytes: int
    clip_start: datetime
    clip_end: datetime
    manifest_sha256: str
    upload_started_at: datetime
    received_at: datetime
    accepted_at: datetime
    download: str


class EvidenceListing(_View):
    request_id: str
    files: list[EvidenceFileView]
    manifests: dict[str, str]  # jti -> the device-signed manifest (JWS JSON text)
    # What `doorbell-evidence verify` needs to check the manifests end to end
    # (docs/protocol.md, "Evidence an agency can check"):
    tokens: dict[str, str] = {}  # jti -> the release token (JWS JSON text)
    device_certificates: dict[str, str] = {}  # device -> its identity certificate (JSON)
    trust_root: str = ""  # the deployment's trust root (JSON text)


class Offset(_View):
    offset: int


class ManifestAccepted(_View):
    jti: str
    accepted: int
    manifest_sha256: str


class Submitted(_View):
    """The answer to POST /v1/requests: the stored request, refused or queued."""

    request: RequestView


def token_view(row: Token) -> TokenView:
    return TokenView(
        jti=row.jti,
        device=row.device_id,
        seq=row.seq,
        basis=row.basis,
        status=row.status,
        status_reason=row.status_reason,
        issued_at=row.issued_at,
        expires_at=row.expires_at,
        hold_until=row.hold_until,
    )


def _instant(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value).astimezone(UTC)
    except ValueError:
        return None


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def warrant_expiry(row: Request) -> datetime | None:
    """The warrant's ``expires`` of a warrant-basis request (None for another basis): a
    token's ``exp`` never passes it (`cloud_stub.services.issuing`), and the request view
    shows it."""
    given = row.body.get("expires")
    if row.basis != "warrant" or not isinstance(given, str):
        return None
    return datetime.fromisoformat(given).astimezone(UTC)


def warrant_view(row: Request) -> WarrantView | None:
    """The warrant's details from the stored body (None for another basis)."""
    if row.basis != "warrant":
        return None
    body = row.body
    return WarrantView(
        court=_text(body.get("court_id")),
        judge=_text(body.get("judge")),
        docket=_text(body.get("docket")),
        order_type=_text(body.get("order_type")),
        issued=_instant(body.get("issued")),
        expires=warrant_expiry(row),
        document_sha256=_text(body.get("document_sha256")),
        notify_after=_instant(body.get("notify_after")),
        investigator=_text(body.get("investigator")),
        contact=_text(body.get("contact")),
        agency_case_number=_text(body.get("agency_case_number")),
    )


def request_view(
    row: Request,
    agency: Principal,
    decisions: Sequence[tuple[Decision, Principal]],
    tokens: Sequence[Token],
) -> RequestView:
    window = None
    if row.window_start is not None and row.window_end is not None:
        window = Window(start=row.window_start, end=row.window_end)
    approvals = len({d.reviewer_id for d, _ in decisions if d.action == "approve"})
    return RequestView(
        id=row.id,
        basis=row.basis,
        status=row.status,
        agency=agency.name,
        org=row.org,
        devices=[str(d) for d in row.devices],
        window=window,
        reasons=[Reason(code=str(r["code"]), reason=str(r["reason"])) for r in row.reasons],
        approvals=Approvals(required=row.approvals_required, received=approvals),
        decisions=[
            DecisionView(reviewer=p.name, org=d.org, action=d.action, reason=d.reason, at=d.at)
            for d, p in decisions
        ],
        tokens=[token_view(t) for t in tokens],
        follow_up_due=row.follow_up_due,
        follow_up_received=row.follow_up_received,
        created_at=row.created_at,
        updated_at=row.updated_at,
        warrant=warrant_view(row),
    )


def custody_view(row: CustodyRecord, api_url: str) -> EvidenceFileView:
    return EvidenceFileView(
        jti=row.jti,
        device=row.device_id,
        clip_id=row.clip_id,
        sha256=row.sha256,
        bytes=row.bytes,
        clip_start=row.clip_start,
        clip_end=row.clip_end,
        manifest_sha256=row.manifest_sha256,
        upload_started_at=row.upload_started_at,
        received_at=row.received_at,
        accepted_at=row.accepted_at,
        download=f"{api_url.rstrip('/')}/v1/evidence/{row.jti}/{row.clip_id}",
    )


def as_json(model: BaseModel) -> Any:
    return model.model_dump(mode="json")
