"""The transparency report: counts over a small, known history."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from cloud_stub.domain.transparency import (
    DecisionRecord,
    ReleaseRecord,
    RequestRecord,
    TransparencyReport,
    build_report,
    render_text,
)

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def req(
    rid: str,
    basis: str,
    agency: str,
    status: str,
    devices: tuple[str, ...] = ("porch-cam",),
    *,
    days_ago: float = 1,
    codes: tuple[str, ...] = (),
    followup_due: datetime | None = None,
    followup_received: bool = False,
) -> RequestRecord:
    return RequestRecord(
        request_id=rid,
        basis=basis,
        agency=agency,
        status=status,
        devices=devices,
        submitted_at=NOW - timedelta(days=days_ago),
        refusal_codes=codes,
        followup_due=followup_due,
        followup_received=followup_received,
    )


REQUESTS = [
    req("w1", "warrant", "metro-pd", "uploaded", ("porch-cam", "garage-cam")),
    req("w2", "warrant", "metro-pd", "no_footage"),
    req("w3", "warrant", "county-sheriff", "refused", codes=("court_signature_invalid",)),
    req("w4", "warrant", "county-sheriff", "denied"),
    req("e1", "emergency", "metro-pd", "uploaded", followup_due=NOW - timedelta(hours=1)),
    req("e2", "emergency", "metro-pd", "released", followup_due=NOW + timedelta(hours=5)),
    req(
        "e3",
        "emergency",
        "county-sheriff",
        "uploaded",
        ("shed-cam",),
        followup_due=NOW - timedelta(days=2),
        followup_received=True,
    ),
    req("e4", "emergency", "metro-pd", "refused", codes=("emergency_followup_missing",)),
    req("p1", "preservation", "metro-pd", "preserved"),
    req("v1", "voluntary", "metro-pd", "refused", codes=("voluntary_requests_discontinued",)),
    req("v2", "voluntary", "county-sheriff", "refused", codes=("voluntary_requests_discontinued",)),
    req("old", "warrant", "metro-pd", "uploaded", days_ago=400),
    req("x1", "warrant", "metro-pd", "pending_review", days_ago=0.1),
]
DECISIONS = [
    DecisionRecord("w1", "rev-a", "approve", NOW),
    DecisionRecord("w2", "rev-a", "approve", NOW),
    DecisionRecord("w4", "rev-b", "deny", NOW),
    DecisionRecord("e1", "rev-a", "approve", NOW),
    DecisionRecord("e1", "rev-b", "approve", NOW),
    DecisionRecord("old", "rev-a", "approve", NOW),
]
RELEASES = [
    ReleaseRecord("w1", "j1", "porch-cam", "uploaded", clips_delivered=3, owner_notified=True),
    ReleaseRecord("w1", "j2", "garage-cam", "uploaded", clips_delivered=2, owner_notified=False),
    ReleaseRecord("e1", "j3", "porch-cam", "uploaded", clips_delivered=1, owner_notified=True),
    ReleaseRecord("e2", "j4", "porch-cam", "issued"),
    ReleaseRecord("e3", "j5", "shed-cam", "uploaded", clips_delivered=4, owner_notified=True),
    ReleaseRecord("p1", "j6", "porch-cam", "preserved", clips_delivered=7),  # pinned, not given
    ReleaseRecord("old", "j7", "porch-cam", "uploaded", clips_delivered=9, owner_notified=True),
]


@pytest.fixture
def report() -> TransparencyReport:
    return build_report(
        REQUESTS,
        DECISIONS,
        RELEASES,
        now=NOW,
        period_start=NOW - timedelta(days=365),
        audit_head=(42, "ab" * 32),
    )


def test_counts_by_basis_and_outcome(report: TransparencyReport) -> None:
    assert report.requests == 12  # "old" is outside the period
    assert report.by_basis == {"emergency": 4, "preservation": 1, "voluntary": 2, "warrant": 5}
    assert report.by_outcome == {"refused": 4, "pending": 1, "denied": 1, "granted": 6}
    assert report.by_basis_and_outcome["warrant"] == {
        "denied": 1,
        "granted": 2,
        "pending": 1,
        "refused": 1,
    }
    assert report.by_basis_and_outcome["voluntary"] == {"refused": 2}


def test_counts_by_agency(report: TransparencyReport) -> None:
    lines = {a.agency: a for a in report.by_agency}
    assert lines["metro-pd"].requests == 8
    assert lines["metro-pd"].data_produced == 2  # w1, e1 (p1 preserved only)
    assert lines["county-sheriff"].by_outcome == {"denied": 1, "granted": 1, "refused": 2}
    assert lines["county-sheriff"].data_produced == 1  # e3


def test_devices_named_and_data_produced(report: TransparencyReport) -> None:
    assert report.devices_named == 3  # porch, garage, shed
    assert report.device_requests == 13
    assert report.data_produced == 3  # w1, e1, e3; not the preservation, not e2 (nothing yet)
    assert report.data_produced_share == pytest.approx(3 / 12)


def test_refusals_by_code(report: TransparencyReport) -> None:
    assert report.refusals_by_code == {
        "court_signature_invalid": 1,
        "emergency_followup_missing": 1,
        "voluntary_requests_discontinued": 2,
    }


def test_emergency_disclosures_and_follow_ups(report: TransparencyReport) -> None:
    e = report.emergency
    assert (e.requests, e.granted, e.disclosures) == (4, 3, 2)
    assert (e.followups_received, e.followups_pending) == (1, 1)
    assert [m.request_id for m in e.followups_missing] == ["e1"]
    assert e.followups_missing[0].due == NOW - timedelta(hours=1)


def test_reviews_releases_and_owner_notices(report: TransparencyReport) -> None:
    assert (report.reviewer_approvals, report.reviewer_denials) == (4, 1)
    assert report.releases == 6
    assert report.clips_delivered == 10  # the preservation's pinned clips are not given
    assert report.owners_notified == 3
    assert report.owner_notices_outstanding == 1  # j2: delivered, owner not told yet


def test_the_follow_up_turns_missing_when_its_due_date_passes() -> None:
    later = build_report(REQUESTS, DECISIONS, RELEASES, now=NOW + timedelta(hours=6))
    assert sorted(m.request_id for m in later.emergency.followups_missing) == ["e1", "e2"]


def test_naive_store_times_are_read_as_utc() -> None:
    naive = [
        RequestRecord(
            request_id="e9",
            basis="emergency",
            agency="metro-pd",
            status="uploaded",
            devices=("porch-cam",),
            submitted_at=(NOW - timedelta(days=1)).replace(tzinfo=None),
            followup_due=(NOW - timedelta(hours=1)).replace(tzinfo=None),
        )
    ]
    report = build_report(naive, [], [], now=NOW, period_start=NOW - timedelta(days=2))
    assert [m.request_id for m in report.emergency.followups_missing] == ["e9"]


def test_the_json_form_round_trips(report: TransparencyReport) -> None:
    data = json.loads(report.model_dump_json())
    assert data["by_outcome"]["granted"] == 6
    assert data["audit_head"] == {"seq": 42, "hash": "ab" * 32}
    assert TransparencyReport.model_validate(data) == report


def test_the_text_form_is_a_readable_table(report: TransparencyReport) -> None:
    text = render_text(report)
    assert "Data produced: 3 of 12 (25.0%)" in text
    assert "voluntary_requests_discontinued  2" in text
    assert "MISSING 1" in text
    assert "metro-pd" in text
    assert "Audit log head: entry 42" in text
    lines = text.splitlines()
    header = next(line for line in lines if line.strip().startswith("basis"))
    assert header.split() == ["basis", "requests", "refused", "pending", "denied", "granted"]
    total = next(line for line in lines if line.strip().startswith("total"))
    assert total.split() == ["total", "12", "4", "1", "1", "6"]


def test_an_empty_history_is_a_report_of_zeros() -> None:
    report = build_report([], [], [], now=NOW)
    assert report.requests == 0
    assert report.data_produced_share == 0.0
    assert "(none)" in render_text(report)


def test_a_naive_clock_or_inverted_period_is_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        build_report([], [], [], now=NOW.replace(tzinfo=None))
    with pytest.raises(ValueError, match="period"):
        build_report([], [], [], now=NOW, period_start=NOW, period_end=NOW - timedelta(days=1))
