"""The request models: shape only, closed, bounded; instants normalised to UTC."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from cloud_stub.policy import (
    Basis,
    EmergencyRequest,
    VoluntaryRequest,
    WarrantRequest,
    basis_of,
    parse_request,
    parse_request_json,
)
from tests.fixtures.policy import PolicyWorld


def fails_at(body: Any) -> str:
    with pytest.raises(ValidationError) as info:
        parse_request(body)
    return ".".join(str(p) for p in info.value.errors()[0]["loc"])


def test_a_warrant_body_parses_and_normalises_instants(policy_world: PolicyWorld) -> None:
    body = policy_world.warrant(tamper={"issued": "2026-11-29T12:00:00+02:00"})
    request = parse_request(body)
    assert isinstance(request, WarrantRequest)
    assert request.issued == datetime(2026, 11, 29, 10, 0, tzinfo=UTC)
    assert request.issued is not None
    assert request.issued.utcoffset() is not None
    assert basis_of(request) is Basis.WARRANT


def test_request_for_assistance_is_the_voluntary_model() -> None:
    request = parse_request({"basis": "request_for_assistance"})
    assert isinstance(request, VoluntaryRequest)
    assert basis_of(request) is Basis.VOLUNTARY


def test_an_unknown_key_is_refused_by_name(policy_world: PolicyWorld) -> None:
    body = policy_world.warrant(area="downtown")
    assert fails_at(body) == "warrant.area"


def test_an_unknown_basis_is_refused() -> None:
    with pytest.raises(ValidationError, match="basis"):
        parse_request({"basis": "subpoena"})
    with pytest.raises(ValidationError):
        parse_request({})
    with pytest.raises(ValidationError):
        parse_request(["basis", "warrant"])


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("issued", "2026-11-29T10:00:00"),  # no offset: ambiguous
        ("issued", "0001-01-01T00:00:00+05:00"),  # would overflow converting to UTC
        ("expires", "9999-12-31T23:59:59Z"),
        ("expires", "yesterday"),
        ("judge", "Hon. A\x1b[2J"),  # terminal escape
        ("docket", "2026\u202eMJ"),  # bidi override (Trojan Source)
        ("docket", "x" * 129),
        ("judge", "J\nDoe"),
        ("device_ids", [f"cam-{i}" for i in range(65)]),
        ("device_ids", "porch-cam"),
        ("recipient", "age1" + "q" * 300),
        ("token_lifetime_s", 0),
        ("token_lifetime_s", True),
        ("order_type", "warrant-ish"),
        ("window", {"start": "2026-11-28T00:00:00Z"}),
        ("window", {"start": "2026-11-28T00:00:00Z", "end": "2026-11-28T01:00:00Z", "x": 1}),
    ],
)
def test_malformed_fields_are_refused(policy_world: PolicyWorld, field: str, value: Any) -> None:
    body = policy_world.warrant(tamper={field: value})
    assert fails_at(body).startswith(f"warrant.{field}")


def test_narratives_may_span_lines_but_are_bounded(policy_world: PolicyWorld) -> None:
    text = "A child is missing.\nShe was last seen at this door.\tSuspect on foot."
    request = parse_request(policy_world.emergency(danger=text))
    assert isinstance(request, EmergencyRequest)
    assert request.danger == text
    assert fails_at(policy_world.emergency(danger="x" * 4001)) == "emergency.danger"
    assert fails_at(policy_world.emergency(danger="a\x00b")) == "emergency.danger"


def test_an_officer_is_closed_too(policy_world: PolicyWorld) -> None:
    body = policy_world.emergency()
    body["supervisor"] = {**body["supervisor"], "rank_override": "chief"}
    assert fails_at(body) == "emergency.supervisor.rank_override"


def test_raw_json_bodies_parse_and_bad_json_is_a_validation_error() -> None:
    assert isinstance(parse_request_json(b'{"basis": "voluntary"}'), VoluntaryRequest)
    with pytest.raises(ValidationError):
        parse_request_json(b'{"basis": "voluntary"')
    with pytest.raises(ValidationError):
        parse_request_json(b"\xff\xfe")


def test_requests_are_immutable(policy_world: PolicyWorld) -> None:
    request = parse_request(policy_world.warrant())
    with pytest.raises(ValidationError):
        request.device_ids = ["someone-else"]  # type: ignore[misc]
