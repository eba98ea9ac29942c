"""What the API and the CLI show of requests, decisions, tokens and evidence.

Pydantic models so that the OpenAPI description documents the answers and the CLI's
``--json`` prints exactly what the API returns. Built from the services' summaries
(`cloud_stub.domain.summaries`), field by field of the same name (`from_attributes`),
by `request_view`, `evidence_listing` and `manifest_accepted`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from cloud_stub.domain.summaries import (
    EvidenceSummary,
    ManifestReceipt,
    RequestSummary,
    TokenSummary,
)


class _View(BaseModel):
    model_config = ConfigDict(frozen=True, from_attributes=True)


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


def token_view(token: TokenSummary) -> TokenView:
    return TokenView.model_validate(token)


def request_view(request: RequestSummary) -> RequestView:
    return RequestView(
        id=request.id,
        basis=request.basis,
        status=request.status,
        agency=request.agency,
        org=request.org,
        devices=list(request.devices),
        window=None if request.window is None else Window.model_validate(request.window),
        reasons=[Reason.model_validate(r) for r in request.reasons],
        approvals=Approvals(required=request.approvals_required,
                            received=request.approvals_received),
        decisions=[DecisionView.model_validate(d) for d in request.decisions],
        tokens=[token_view(t) for t in request.tokens],
        follow_up_due=request.follow_up_due,
        follow_up_received=request.follow_up_received,
        created_at=request.created_at,
        updated_at=request.updated_at,
        warrant=None if request.warrant is None else WarrantView.model_validate(request.warrant),
    )


def evidence_listing(evidence: EvidenceSummary) -> EvidenceListing:
    return EvidenceListing.model_validate(evidence)


def manifest_accepted(receipt: ManifestReceipt) -> ManifestAccepted:
    return ManifestAccepted.model_validate(receipt)


def as_json(model: BaseModel) -> Any:
    return model.model_dump(mode="json")
