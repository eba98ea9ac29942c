"""The transparency report: a pure aggregation of request, decision and release records.

The service loads its rows into the three small record types below and calls
`build_report`; the result is a typed, frozen model whose JSON form
(``report.model_dump(mode="json")``) is what ``GET /v1/transparency`` returns and whose
`render_text` form is what ``cloud-stub report`` prints. Nothing here reads the store or
the clock: ``now`` decides which follow-ups are overdue, and the period (when given)
selects requests by submission time, ``[start, end)``.

Definitions (docs/policy.md):
- *outcome* of a request: ``refused`` (by the policy engine), ``pending`` (waiting for
  review), ``denied`` (by a reviewer) or ``granted`` (approved, whatever happened next);
- *data produced*: a warrant or emergency request for which at least one clip file was
  delivered to the agency (a preservation never produces data);
- *follow-up missing*: a granted emergency whose follow-up legal process was due before
  ``now`` and has not been received;
- *owners notified*: releases whose owner notice the device reported; a notice is
  *outstanding* when clips were delivered and the owner has not been told yet (a
  court's delayed-notice date, or a device that has not reported back).
- clips *pinned* by a preservation are never counted as delivered.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict

from cloud_stub.domain.lifecycle import RequestStatus
from protocol.timefmt import format_time

OUTCOMES = ("refused", "pending", "denied", "granted")
_STATUS_OUTCOME: Mapping[str, str] = {
    RequestStatus.REFUSED: "refused",
    RequestStatus.PENDING_REVIEW: "pending",
    RequestStatus.DENIED: "denied",
    RequestStatus.APPROVED: "granted",
    RequestStatus.RELEASED: "granted",
    RequestStatus.NO_FOOTAGE: "granted",
    RequestStatus.EVIDENCE_RECEIVED: "granted",
    RequestStatus.UPLOADED: "granted",
    RequestStatus.REJECTED: "granted",
    RequestStatus.DEFERRED: "granted",
    RequestStatus.PRESERVED: "granted",
}
CONTENT_BASES = frozenset({"warrant", "emergency"})


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One request as stored: who asked, on what basis, what became of it."""

    request_id: str
    basis: str  # warrant | emergency | preservation | voluntary
    agency: str  # the requesting organisation (authenticated, not self-declared)
    status: str  # a `RequestStatus` value
    devices: tuple[str, ...]
    submitted_at: datetime
    refusal_codes: tuple[str, ...] = ()  # policy codes when refused
    followup_due: datetime | None = None  # emergency only
    followup_received: bool = False


@dataclass(frozen=True, slots=True)
class DecisionRecord:
    """One reviewer's decision on a request."""

    request_id: str
    reviewer: str
    action: str  # approve | deny
    at: datetime


@dataclass(frozen=True, slots=True)
class ReleaseRecord:
    """One token sent to one device for a request, and what came of it."""

    request_id: str
    jti: str
    device_id: str
    status: str  # token status: issued, uploaded, rejected, deferred, preserved...
    clips_delivered: int = 0  # clip files accepted into evidence custody
    owner_notified: bool = False  # the device reported the owner's notice


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AgencyLine(_Model):
    agency: str
    requests: int
    by_outcome: dict[str, int]
    data_produced: int


class FollowUpMissing(_Model):
    request_id: str
    agency: str
    due: datetime


class EmergencySection(_Model):
    requests: int
    granted: int
    disclosures: int  # granted emergencies that produced data
    followups_received: int
    followups_pending: int  # not received, not yet due
    followups_missing: list[FollowUpMissing]  # not received, past due


class AuditHead(_Model):
    seq: int
    hash: str


class TransparencyReport(_Model):
    generated_at: datetime
    period_start: datetime | None
    period_end: datetime | None
    requests: int
    by_basis: dict[str, int]
    by_outcome: dict[str, int]
    by_basis_and_outcome: dict[str, dict[str, int]]
    by_agency: list[AgencyLine]
    devices_named: int  # distinct devices named in any request
    device_requests: int  # device names summed over requests
    data_produced: int
    data_produced_share: float  # data_produced / requests (0 when there are none)
    refusals_by_code: dict[str, int]
    reviewer_approvals: int
    reviewer_denials: int
    emergency: EmergencySection
    releases: int
    clips_delivered: int
    owners_notified: int
    owner_notices_outstanding: int
    audit_head: AuditHead | None = None


def _aware(value: datetime) -> datetime:
    # Stores hand back naive UTC datetimes; compare them as UTC.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def _outcome(status: str) -> str:
    return _STATUS_OUTCOME.get(status, "other")


def _sorted(counter: Counter[str]) -> dict[str, int]:
    return dict(sorted(counter.items()))


def build_report(
    requests: Iterable[RequestRecord],
    decisions: Iterable[DecisionRecord],
    releases: Iterable[ReleaseRecord],
    *,
    now: datetime,
    period_start: datetime | None = None,
    period_end: datetime | None = None,
    audit_head: tuple[int, str] | None = None,
) -> TransparencyReport:
    """Aggregate the records. Decisions and releases of requests outside the period are
    ignored. Raises ValueError for a naive ``now`` or period bound, or a period that ends
    before it starts."""
    for name, value in (("now", now), ("period_start", period_start), ("period_end", period_end)):
        if value is not None and (value.tzinfo is None or value.utcoffset() is None):
            raise ValueError(f"{name} must be an aware datetime")
    if period_start is not None and period_end is not None and period_end < period_start:
        raise ValueError("the period ends before it starts")

    def in_period(r: RequestRecord) -> bool:
        at = _aware(r.submitted_at)
        return (period_start is None or at >= period_start) and (
            period_end is None or at < period_end
        )

    selected = {r.request_id: r for r in requests if in_period(r)}
    releases_by_request: dict[str, list[ReleaseRecord]] = {}
    for release in releases:
        if release.request_id in selected:
            releases_by_request.setdefault(release.request_id, []).append(release)
    own_decisions = [d for d in decisions if d.request_id in selected]

    def produced(r: RequestRecord) -> bool:
        return r.basis in CONTENT_BASES and any(
            rel.clips_delivered > 0 for rel in releases_by_request.get(r.request_id, ())
        )

    by_basis: Counter[str] = Counter()
    by_outcome: Counter[str] = Counter({o: 0 for o in OUTCOMES})
    cross: defaultdict[str, Counter[str]] = defaultdict(Counter)
    agencies: defaultdict[str, Counter[str]] = defaultdict(Counter)
    agency_data: Counter[str] = Counter()
    refusals: Counter[str] = Counter()
    devices: set[str] = set()
    device_requests = 0
    data_produced = 0
    emergency = {"requests": 0, "granted": 0, "disclosures": 0, "received": 0, "pending": 0}
    missing: list[FollowUpMissing] = []

    for r in selected.values():
        outcome = _outcome(r.status)
        by_basis[r.basis] += 1
        by_outcome[outcome] += 1
        cross[r.basis][outcome] += 1
        agencies[r.agency][outcome] += 1
        devices.update(r.devices)
        device_requests += len(r.devices)
        if outcome == "refused":
            refusals.update(r.refusal_codes or ("unspecified",))
        if produced(r):
            data_produced += 1
            agency_data[r.agency] += 1
        if r.basis == "emergency":
            emergency["requests"] += 1
            if outcome == "granted":
                emergency["granted"] += 1
                emergency["disclosures"] += produced(r)
                if r.followup_received:
                    emergency["received"] += 1
                elif r.followup_due is not None and _aware(r.followup_due) > now:
                    emergency["pending"] += 1
                else:
                    due = _aware(r.followup_due or r.submitted_at)
                    missing.append(
                        FollowUpMissing(request_id=r.request_id, agency=r.agency, due=due)
                    )

    all_releases = [rel for rels in releases_by_request.values() for rel in rels]
    content_releases = [
        rel for rel in all_releases if selected[rel.request_id].basis in CONTENT_BASES
    ]
    delivered = [rel for rel in content_releases if rel.clips_delivered > 0]
    total = len(selected)
    return TransparencyReport(
        generated_at=now,
        period_start=period_start,
        period_end=period_end,
        requests=total,
        by_basis=_sorted(by_basis),
        by_outcome=dict(by_outcome),
        by_basis_and_outcome={b: _sorted(c) for b, c in sorted(cross.items())},
        by_agency=[
            AgencyLine(
                agency=agency,
                requests=sum(c.values()),
                by_outcome=_sorted(c),
                data_produced=agency_data[agency],
            )
            for agency, c in sorted(agencies.items())
        ],
        devices_named=len(devices),
        device_requests=device_requests,
        data_produced=data_produced,
        data_produced_share=(data_produced / total) if total else 0.0,
        refusals_by_code=_sorted(refusals),
        reviewer_approvals=sum(1 for d in own_decisions if d.action == "approve"),
        reviewer_denials=sum(1 for d in own_decisions if d.action == "deny"),
        emergency=EmergencySection(
            requests=emergency["requests"],
            granted=emergency["granted"],
            disclosures=emergency["disclosures"],
            followups_received=emergency["received"],
            followups_pending=emergency["pending"],
            followups_missing=sorted(missing, key=lambda m: (m.due, m.request_id)),
        ),
        releases=len(all_releases),
        clips_delivered=sum(rel.clips_delivered for rel in content_releases),
        owners_notified=sum(1 for rel in all_releases if rel.owner_notified),
        owner_notices_outstanding=sum(1 for rel in delivered if not rel.owner_notified),
        audit_head=None if audit_head is None else AuditHead(seq=audit_head[0], hash=audit_head[1]),
    )


def _table(headers: tuple[str, ...], rows: list[tuple[object, ...]]) -> list[str]:
    if not rows:
        return ["  (none)"]
    cells = [tuple(str(h) for h in headers), *[tuple(str(c) for c in r) for r in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for n, row in enumerate(cells):
        lines.append("  " + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
        if n == 0:
            lines.append("  " + "  ".join("-" * w for w in widths))
    return [line.rstrip() for line in lines]


def render_text(report: TransparencyReport) -> str:
    """The report as a readable plain-text page (tables, no colour)."""
    period = "all time"
    if report.period_start or report.period_end:
        start = format_time(report.period_start) if report.period_start else "the beginning"
        end = format_time(report.period_end) if report.period_end else "now"
        period = f"{start} to {end}"
    out = [
        "Transparency report",
        f"generated {format_time(report.generated_at)}; period: {period}",
        "",
        f"Requests: {report.requests}   devices named: {report.devices_named} "
        f"(in {report.device_requests} device requests)",
        f"Data produced: {report.data_produced} of {report.requests} "
        f"({report.data_produced_share:.1%})",
        "",
        "By basis and outcome",
    ]
    outcomes = [o for o in OUTCOMES if o in report.by_outcome] + sorted(
        o for o in report.by_outcome if o not in OUTCOMES
    )
    rows: list[tuple[object, ...]] = [
        (basis, report.by_basis[basis], *(cross.get(o, 0) for o in outcomes))
        for basis, cross in report.by_basis_and_outcome.items()
    ]
    if rows:
        rows.append(("total", report.requests, *(report.by_outcome.get(o, 0) for o in outcomes)))
    out += _table(("basis", "requests", *outcomes), rows)
    out += ["", "By agency"]
    out += _table(
        ("agency", "requests", *outcomes, "data produced"),
        [
            (a.agency, a.requests, *(a.by_outcome.get(o, 0) for o in outcomes), a.data_produced)
            for a in report.by_agency
        ],
    )
    out += ["", "Refusals by code"]
    out += _table(("code", "count"), list(report.refusals_by_code.items()))
    e = report.emergency
    out += [
        "",
        f"Emergency requests: {e.requests}; granted {e.granted}; disclosures {e.disclosures}",
        f"Follow-up legal process: received {e.followups_received}, pending "
        f"{e.followups_pending}, MISSING {len(e.followups_missing)}",
    ]
    if e.followups_missing:
        out += _table(
            ("request", "agency", "due"),
            [(m.request_id, m.agency, format_time(m.due)) for m in e.followups_missing],
        )
    out += [
        "",
        f"Reviews: {report.reviewer_approvals} approvals, {report.reviewer_denials} denials",
        f"Releases: {report.releases} tokens; {report.clips_delivered} clips delivered",
        f"Owners notified: {report.owners_notified}; notices outstanding: "
        f"{report.owner_notices_outstanding}",
    ]
    if report.audit_head is not None:
        out.append(f"Audit log head: entry {report.audit_head.seq}, {report.audit_head.hash}")
    return "\n".join(out) + "\n"
