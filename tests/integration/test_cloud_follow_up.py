"""The follow-up of an emergency disclosure is a court-signed search warrant for what was
disclosed, checked as a warrant is (docs/policy.md, "The follow-up of an emergency"),
over real HTTP on the real cloud stub.

An unknown court, an invented docket under another warrant's signature, a hash of zeros,
control characters, no signature, and a warrant for other devices or another window are
each refused with their own code, and the transparency report does not count them as
received; the control, a warrant the registered court signed over the disclosed devices
and window, is recorded and counted.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.fixtures.cloud import CloudServer, DeviceSigner, Principal
from tests.fixtures.policy import PolicyWorld
from tests.integration.test_cloud_review import REASON, approve

FOLLOW_UP_FIELDS = ("order_type", "court_id", "judge", "docket", "issued", "expires",
                    "document_sha256", "court_signature")


def follow_up_of(world: PolicyWorld, **fields: Any) -> dict[str, Any]:
    """The follow-up body of a warrant the test court signed over `fields`."""
    return {k: v for k, v in world.warrant(**fields).items() if k in FOLLOW_UP_FIELDS}


@pytest.fixture
def granted(cloud: CloudServer) -> tuple[Principal, DeviceSigner, str, dict[str, Any]]:
    """An emergency approved by two reviewers: (agency, device, request id, its body)."""
    agency = cloud.principal("agency", org="metro-pd")
    device = cloud.enroll()
    body = cloud.world(agency, device.device_id).emergency(device_ids=[device.device_id])
    response = cloud.submit(agency, body)
    assert response.status_code == 201, response.text
    request_id = response.json()["id"]
    for org in ("legal", "ethics-board"):
        answer = approve(cloud, cloud.principal("reviewer", org=org), request_id, REASON)
        assert answer.status_code == 200, answer.text
    assert answer.json()["status"] in ("released", "no_footage")
    return agency, device, request_id, body


def _file(cloud: CloudServer, agency: Principal, request_id: str, body: dict[str, Any]
          ) -> Any:
    return cloud.http.post(f"/v1/requests/{request_id}/follow-up", json=body,
                           headers=agency.headers)


def _received(cloud: CloudServer) -> int:
    return int(cloud.http.get("/v1/transparency").json()["emergency"]["followups_received"])


def test_a_follow_up_is_checked_as_a_warrant_is(
    cloud: CloudServer, granted: tuple[Principal, DeviceSigner, str, dict[str, Any]]
) -> None:
    agency, device, request_id, emergency = granted
    world = cloud.world(agency, device.device_id)
    disclosed = {"device_ids": [device.device_id], "window": emergency["window"]}
    good = follow_up_of(world, **disclosed)

    refusals: dict[str, tuple[dict[str, Any], int, str]] = {
        "three unsigned fields": (
            {"court_id": "invented-court", "docket": "invented", "document_sha256": "0" * 64},
            422, "warrant_field_missing"),
        "unknown court": (
            {**good, "court_id": "invented-court"}, 422, "court_unknown"),
        "invented docket": (
            {**good, "docket": "2099-XX-00000"}, 422, "court_signature_invalid"),
        "hash of zeros": (
            follow_up_of(world, document_sha256="0" * 64, **disclosed), 422,
            "warrant_document_hash_invalid"),
        "no signature": (
            {k: v for k, v in good.items() if k != "court_signature"}, 422,
            "warrant_field_missing"),
        "another device": (
            follow_up_of(world, device_ids=["other-cam"], window=emergency["window"]), 422,
            "court_signature_invalid"),
        "another window": (
            follow_up_of(world, device_ids=[device.device_id],
                         window={"start": world.t(hours=-30), "end": world.t(hours=-6)}),
            422, "court_signature_invalid"),
        "escape in the docket": (
            {**good, "docket": "2026-\x1b[2J-1"}, 422, "invalid_request"),
        "bidi override in the judge": (
            {**good, "judge": "Hon. Ada\u202e Marsh"}, 422, "invalid_request"),
        "zero-width in the judge": (
            {**good, "judge": "Hon. Ada\u200b Marsh"}, 422, "invalid_request"),
    }
    for name, (body, status, code) in refusals.items():
        response = _file(cloud, agency, request_id, body)
        assert response.status_code == status, (name, response.text)
        assert response.json()["error"]["code"] == code, (name, response.text)
        assert _received(cloud) == 0, name

    response = _file(cloud, agency, request_id, good)  # the control
    assert response.status_code == 200, response.text
    assert response.json()["follow_up_received"] is True
    assert _received(cloud) == 1
