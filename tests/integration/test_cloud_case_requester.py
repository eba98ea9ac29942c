"""The requester the owner's notice names comes from what the cloud verified, never from
the request body's free text (docs/protocol.md, ``case``), over real HTTP.

An agency registered as ``metro-pd`` writes another agency's name and case number in an
emergency and a preservation request; the signed token (read by the device's own
acceptance code, from which the owner notice is built) names ``metro-pd`` and the
service's request id. The control: a warrant's docket and court are the court-signed ones.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from tests.fixtures.cloud import CloudServer
from tests.integration.test_cloud_review import REASON, approve, device_accepts, tokens_of

IMPOSTOR: dict[str, Any] = {"agency": "Federal Bureau of Investigation",
                            "agency_case_number": "FBI-2026-1"}


def test_the_requester_is_the_authenticated_agency_not_the_body(cloud: CloudServer) -> None:
    agency = cloud.principal("agency", org="metro-pd")
    reviewers = [cloud.principal("reviewer", org=org) for org in ("legal", "ethics-board")]
    device = cloud.enroll()
    now = datetime.now(UTC)
    cloud.escrow_epoch(device.device_id, now - timedelta(hours=2), now - timedelta(hours=1))
    cloud.escrow_epoch(device.device_id, now - timedelta(hours=20), now - timedelta(hours=19))
    world = cloud.world(agency, device.device_id)

    bodies = {
        "emergency": world.emergency(device_ids=[device.device_id], **IMPOSTOR),
        "preservation": world.preservation(device_ids=[device.device_id], **IMPOSTOR),
        "warrant": world.warrant(device_ids=[device.device_id], **IMPOSTOR),
    }
    cases = {}
    for basis, body in bodies.items():
        response = cloud.submit(agency, body)
        assert response.status_code == 201, response.text
        request_id = response.json()["id"]
        for reviewer in reviewers[: 2 if basis == "emergency" else 1]:
            answer = approve(cloud, reviewer, request_id, REASON)
            assert answer.status_code == 200, answer.text
        [token] = tokens_of(cloud, request_id)
        claims = device_accepts(cloud, device, token.jws)
        cases[basis] = (request_id, claims.case)

    for basis in ("emergency", "preservation"):
        request_id, case = cases[basis]
        assert (case.authority, case.docket) == ("metro-pd", request_id), basis
        assert "FBI" not in case.docket + case.authority
    request_id, case = cases["warrant"]  # the control: the court-signed fields
    assert (case.authority, case.docket) == ("demo-district-court", "2026-MJ-00421")
