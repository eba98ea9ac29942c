"""What the services hand back: a request as it stands (with its decisions, tokens and,
for a warrant, the warrant's details), the evidence of a request, and the receipt of an
accepted manifest. Plain frozen records, built by the services from the store's rows;
the API, the console and the CLI turn them into their response views
(`cloud_stub.api.views`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True, slots=True)
class ReasonLine:
    """Why a request was refused or what befell it (a policy or service code)."""

    code: str
    reason: str


@dataclass(frozen=True, slots=True)
class TimeSpan:
    start: datetime
    end: datetime


@dataclass(frozen=True, slots=True)
class DecisionSummary:
    reviewer: str  # the reviewer's name
    org: str
    action: str
    reason: str
    at: datetime


@dataclass(frozen=True, slots=True)
class TokenSummary:
    jti: str
    device: str
    seq: int
    basis: str
    status: str
    status_reason: str
    issued_at: datetime
    expires_at: datetime
    hold_until: datetime | None


@dataclass(frozen=True, slots=True)
class WarrantSummary:
    """The warrant behind a warrant-basis request, as the agency filed it and the court
    signed it. Fields the agency left out are None."""

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


@dataclass(frozen=True, slots=True)
class RequestSummary:
    id: str
    basis: str
    status: str
    agency: str  # the requesting agency's name
    org: str
    devices: tuple[str, ...]
    window: TimeSpan | None
    reasons: tuple[ReasonLine, ...]
    approvals_required: int
    approvals_received: int
    decisions: tuple[DecisionSummary, ...]
    tokens: tuple[TokenSummary, ...]
    follow_up_due: datetime | None
    follow_up_received: bool
    created_at: datetime
    updated_at: datetime
    warrant: WarrantSummary | None = None  # warrant basis only


@dataclass(frozen=True, slots=True)
class EvidenceFile:
    """One accepted clip file of a request, with its custody times."""

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
    download: str  # the URL the agency downloads it from


@dataclass(frozen=True, slots=True)
class EvidenceSummary:
    """A request's evidence, with what an agency needs to check it end to end
    (docs/protocol.md, "Evidence an agency can check")."""

    request_id: str
    files: tuple[EvidenceFile, ...]
    manifests: dict[str, str]  # jti -> the device-signed manifest (JWS JSON text)
    tokens: dict[str, str] = field(default_factory=dict)  # jti -> the release token
    device_certificates: dict[str, str] = field(default_factory=dict)  # device -> cert
    trust_root: str = ""  # the deployment's trust root (JSON text)


@dataclass(frozen=True, slots=True)
class ManifestReceipt:
    """A device's manifest accepted: how many files it closed, and its sha256."""

    jti: str
    accepted: int
    manifest_sha256: str
