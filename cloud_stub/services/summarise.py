"""The store's rows of a request, its decisions, tokens and evidence, as the domain's
summaries (`cloud_stub.domain.summaries`): what every service hands back."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from cloud_stub.domain.summaries import (
    DecisionSummary,
    EvidenceFile,
    ReasonLine,
    RequestSummary,
    TimeSpan,
    TokenSummary,
    WarrantSummary,
)
from cloud_stub.policy.requests import AnyRequest, WarrantRequest
from cloud_stub.store.models import CustodyRecord, Decision, Principal, Request, Token


def warrant_expiry(request: AnyRequest) -> datetime | None:
    """The warrant's ``expires`` of a warrant-basis request (None for another basis): a
    token's ``exp`` never passes it (`cloud_stub.services.issuing`), and the request's
    summary shows it."""
    return request.expires if isinstance(request, WarrantRequest) else None


def _instant(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value).astimezone(UTC)
    except ValueError:
        return None


def _expires(value: object) -> datetime | None:
    return datetime.fromisoformat(value).astimezone(UTC) if isinstance(value, str) else None


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def warrant_summary(row: Request) -> WarrantSummary | None:
    """The warrant's details from the stored body (None for another basis). Read field
    by field, not through the request models: a summary shows what was stored even when
    the models have since tightened (the console says when a body no longer parses)."""
    if row.basis != "warrant":
        return None
    body = row.body
    return WarrantSummary(
        court=_text(body.get("court_id")),
        judge=_text(body.get("judge")),
        docket=_text(body.get("docket")),
        order_type=_text(body.get("order_type")),
        issued=_instant(body.get("issued")),
        expires=_expires(body.get("expires")),
        document_sha256=_text(body.get("document_sha256")),
        notify_after=_instant(body.get("notify_after")),
        investigator=_text(body.get("investigator")),
        contact=_text(body.get("contact")),
        agency_case_number=_text(body.get("agency_case_number")),
    )


def token_summary(row: Token) -> TokenSummary:
    return TokenSummary(
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


def request_summary(
    row: Request,
    agency: Principal,
    decisions: Sequence[tuple[Decision, Principal]],
    tokens: Sequence[Token],
) -> RequestSummary:
    window = None
    if row.window_start is not None and row.window_end is not None:
        window = TimeSpan(start=row.window_start, end=row.window_end)
    approvals = len({d.reviewer_id for d, _ in decisions if d.action == "approve"})
    return RequestSummary(
        id=row.id,
        basis=row.basis,
        status=row.status,
        agency=agency.name,
        org=row.org,
        devices=tuple(str(d) for d in row.devices),
        window=window,
        reasons=tuple(ReasonLine(code=str(r["code"]), reason=str(r["reason"]))
                      for r in row.reasons),
        approvals_required=row.approvals_required,
        approvals_received=approvals,
        decisions=tuple(
            DecisionSummary(reviewer=p.name, org=d.org, action=d.action, reason=d.reason,
                            at=d.at)
            for d, p in decisions
        ),
        tokens=tuple(token_summary(t) for t in tokens),
        follow_up_due=row.follow_up_due,
        follow_up_received=row.follow_up_received,
        created_at=row.created_at,
        updated_at=row.updated_at,
        warrant=warrant_summary(row),
    )


def evidence_file(row: CustodyRecord, api_url: str) -> EvidenceFile:
    return EvidenceFile(
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
