"""Every rule of the legal check, over real HTTP: each violation is answered with its code.

The service runs for real (uvicorn on a loopback port); bodies come from the policy
fixtures' legal world, signed by the deployment's demo court, naming an enrolled
device. A refused request is still stored (422 with the code, the stored request in the
body) so the transparency report can count refusals by code.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cloud_stub.policy.codes import Code
from tests.fixtures.cloud import CloudServer
from tests.fixtures.policy import PolicyWorld

Body = dict[str, Any]
Case = Callable[[PolicyWorld, str], Body]


def _without(body: Body, *names: str) -> Body:
    return {k: v for k, v in body.items() if k not in names}


OFFICER = {"name": "Sgt. Lee Park", "badge": "4471", "contact": "l.park@metro-pd.example"}

CASES: dict[str, tuple[Case, Code]] = {
    # --- warrant ---------------------------------------------------------------------
    "subpoena gets no content": (
        lambda w, d: w.warrant(device_ids=[d], order_type="subpoena"),
        Code.ORDER_TYPE_NO_CONTENT,
    ),
    "warrant without judge": (
        lambda w, d: _without(w.warrant(device_ids=[d]), "judge"),
        Code.WARRANT_FIELD_MISSING,
    ),
    "warrant without agency details": (
        lambda w, d: _without(w.warrant(device_ids=[d]), "investigator"),
        Code.AGENCY_DETAILS_MISSING,
    ),
    "warrant names no device": (
        lambda w, d: _without(w.warrant(device_ids=[d]), "device_ids"),
        Code.DEVICE_NOT_NAMED,
    ),
    "warrant for all devices": (
        lambda w, d: w.warrant(device_ids=[d, "*"]),
        Code.PARTICULARITY_WILDCARD,
    ),
    "warrant repeats a device": (lambda w, d: w.warrant(device_ids=[d, d]), Code.DEVICE_ID_INVALID),
    "warrant names too many devices": (
        lambda w, d: w.warrant(device_ids=[f"{d}-{i}" for i in range(6)]),
        Code.TOO_MANY_DEVICES,
    ),
    "warrant without window": (
        lambda w, d: _without(w.warrant(device_ids=[d]), "window"),
        Code.WINDOW_MISSING,
    ),
    "warrant window inverted": (
        lambda w, d: w.warrant(
            device_ids=[d], window={"start": w.t(hours=-2), "end": w.t(hours=-5)}
        ),
        Code.WINDOW_INVERTED,
    ),
    "warrant window over 72 h": (
        lambda w, d: w.warrant(
            device_ids=[d], window={"start": w.t(hours=-80), "end": w.t(hours=-1)}
        ),
        Code.WINDOW_TOO_LONG,
    ),
    "warrant window in the future": (
        lambda w, d: w.warrant(
            device_ids=[d], window={"start": w.t(hours=-1), "end": w.t(hours=5)}
        ),
        Code.WINDOW_IN_FUTURE,
    ),
    "warrant without recipient": (
        lambda w, d: _without(w.warrant(device_ids=[d]), "recipient"),
        Code.RECIPIENT_MISSING,
    ),
    "warrant with a bad recipient": (
        lambda w, d: w.warrant(device_ids=[d], recipient="age1notarecipient"),
        Code.RECIPIENT_INVALID,
    ),
    "warrant asks a token life over the limit": (
        lambda w, d: w.warrant(device_ids=[d], token_lifetime_s=2 * 86400),
        Code.TOKEN_LIFETIME_TOO_LONG,
    ),
    "warrant issued in the future": (
        lambda w, d: w.warrant(device_ids=[d], issued=w.t(hours=3)),
        Code.WARRANT_ISSUED_IN_FUTURE,
    ),
    "warrant expired": (
        lambda w, d: w.warrant(device_ids=[d], issued=w.t(days=-5), expires=w.t(hours=-1)),
        Code.WARRANT_EXPIRED,
    ),
    "warrant expires before issue": (
        lambda w, d: w.warrant(device_ids=[d], issued=w.t(hours=-1), expires=w.t(hours=-3)),
        Code.WARRANT_EXPIRY_BEFORE_ISSUE,
    ),
    "warrant valid too long": (
        lambda w, d: w.warrant(device_ids=[d], expires=w.t(days=60)),
        Code.WARRANT_VALIDITY_TOO_LONG,
    ),
    "warrant document hash malformed": (
        lambda w, d: w.warrant(device_ids=[d], document_sha256="not-a-hash"),
        Code.WARRANT_DOCUMENT_HASH_INVALID,
    ),
    "warrant from an unknown court": (
        lambda w, d: w.warrant(device_ids=[d], court_id="no-such-court"),
        Code.COURT_UNKNOWN,
    ),
    "warrant signed by another key": (
        lambda w, d: w.warrant(device_ids=[d], key=Ed25519PrivateKey.generate()),
        Code.COURT_SIGNATURE_INVALID,
    ),
    "warrant altered after signing": (
        lambda w, d: w.warrant(device_ids=[d], tamper={"docket": "2026-MJ-99999"}),
        Code.COURT_SIGNATURE_INVALID,
    ),
    "warrant notice delay too long": (
        lambda w, d: w.warrant(device_ids=[d], notify_after=w.t(days=400)),
        Code.NOTICE_DELAY_INVALID,
    ),
    # --- emergency -------------------------------------------------------------------
    "emergency without danger": (
        lambda w, d: _without(w.emergency(device_ids=[d]), "danger"),
        Code.EMERGENCY_JUSTIFICATION_MISSING,
    ),
    "emergency justification too thin": (
        lambda w, d: w.emergency(device_ids=[d], why_ongoing="suspect still at large"),
        Code.EMERGENCY_JUSTIFICATION_INSUFFICIENT,
    ),
    "emergency without certifying officer": (
        lambda w, d: _without(w.emergency(device_ids=[d]), "certifying_officer"),
        Code.EMERGENCY_OFFICER_MISSING,
    ),
    "emergency supervisor is the officer": (
        lambda w, d: w.emergency(device_ids=[d], certifying_officer=OFFICER, supervisor=OFFICER),
        Code.EMERGENCY_SUPERVISOR_NOT_INDEPENDENT,
    ),
    "emergency window over 12 h": (
        lambda w, d: w.emergency(
            device_ids=[d], window={"start": w.t(hours=-14), "end": w.t(hours=-1)}
        ),
        Code.WINDOW_TOO_LONG,
    ),
    "emergency window ends after now": (
        lambda w, d: w.emergency(
            device_ids=[d], window={"start": w.t(hours=-1), "end": w.t(hours=1)}
        ),
        Code.WINDOW_IN_FUTURE,
    ),
    "emergency token life over 1 h": (
        lambda w, d: w.emergency(device_ids=[d], token_lifetime_s=3601),
        Code.TOKEN_LIFETIME_TOO_LONG,
    ),
    "emergency names too many devices": (
        lambda w, d: w.emergency(device_ids=[f"{d}-{i}" for i in range(4)]),
        Code.TOO_MANY_DEVICES,
    ),
    "emergency without follow-up date": (
        lambda w, d: _without(w.emergency(device_ids=[d]), "followup_due"),
        Code.EMERGENCY_FOLLOWUP_MISSING,
    ),
    "emergency follow-up after 48 h": (
        lambda w, d: w.emergency(device_ids=[d], followup_due=w.t(hours=72)),
        Code.EMERGENCY_FOLLOWUP_OUT_OF_RANGE,
    ),
    # --- preservation ----------------------------------------------------------------
    "preservation asks for content": (
        lambda w, d: w.preservation(device_ids=[d], recipient=w.recipient),
        Code.PRESERVATION_NO_CONTENT,
    ),
    "preservation hold over 90 days": (
        lambda w, d: w.preservation(device_ids=[d], hold_days=91),
        Code.PRESERVATION_TOO_LONG,
    ),
    "preservation renews an unknown one": (
        lambda w, d: w.preservation(device_ids=[d], renews="p-404"),
        Code.PRESERVATION_RENEWAL_UNKNOWN,
    ),
    "preservation window over 30 days": (
        lambda w, d: w.preservation(
            device_ids=[d], window={"start": w.t(days=-40), "end": w.t(days=-1)}
        ),
        Code.WINDOW_TOO_LONG,
    ),
    # --- voluntary -------------------------------------------------------------------
    "voluntary request": (
        lambda w, d: {
            "basis": "voluntary",
            "device_ids": [d],
            "agency": "Metro PD",
            "message": "Could you share the footage from last night?",
        },
        Code.VOLUNTARY_REQUESTS_DISCONTINUED,
    ),
    "request for assistance": (
        lambda w, d: {"basis": "request_for_assistance", "device_ids": [d]},
        Code.VOLUNTARY_REQUESTS_DISCONTINUED,
    ),
}


@pytest.fixture(scope="module")
def setting(module_cloud: CloudServer) -> tuple[CloudServer, Any, str, PolicyWorld]:
    cloud = module_cloud
    agency = cloud.principal("agency")
    device = cloud.enroll()
    return cloud, agency, device.device_id, cloud.world(agency, device.device_id)


@pytest.mark.parametrize("name", sorted(CASES))
def test_each_rule_is_answered_with_its_code(
    setting: tuple[CloudServer, Any, str, PolicyWorld], name: str
) -> None:
    cloud, agency, device_id, world = setting
    make, code = CASES[name]
    response = cloud.submit(agency, make(world, device_id))
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["error"]["code"] == code.value, body
    assert body["error"]["message"]
    stored = body["request"]
    assert stored["status"] == "refused"
    assert stored["reasons"][0]["code"] == code.value
    # The refusal is stored and readable by its agency.
    again = cloud.http.get(f"/v1/requests/{stored['id']}", headers=agency.headers)
    assert again.status_code == 200
    assert again.json()["reasons"][0]["code"] == code.value


def test_valid_requests_of_each_basis_wait_for_review(
    setting: tuple[CloudServer, Any, str, PolicyWorld],
) -> None:
    cloud, agency, device_id, world = setting
    for body, approvals in (
        (world.warrant(device_ids=[device_id]), 1),
        (world.emergency(device_ids=[device_id]), 2),
        (world.preservation(device_ids=[device_id]), 1),
    ):
        response = cloud.submit(agency, body)
        assert response.status_code == 201, response.text
        view = response.json()
        assert view["status"] == "pending_review"
        assert view["approvals"] == {"required": approvals, "received": 0}
        assert response.headers["location"] == f"/v1/requests/{view['id']}"


def test_a_device_that_is_not_enrolled_is_refused(
    setting: tuple[CloudServer, Any, str, PolicyWorld],
) -> None:
    cloud, agency, _device_id, world = setting
    response = cloud.submit(agency, world.warrant(device_ids=["never-enrolled-cam"]))
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "device_not_enrolled"


def test_the_emergency_follow_up_date_is_kept_for_the_report(
    setting: tuple[CloudServer, Any, str, PolicyWorld],
) -> None:
    cloud, agency, device_id, world = setting
    response = cloud.submit(agency, world.emergency(device_ids=[device_id]))
    assert response.status_code == 201
    due = response.json()["follow_up_due"]
    assert due is not None
    assert due.startswith((world.now + timedelta(hours=24)).strftime("%Y-%m-%dT%H"))


def test_a_device_enrolled_while_the_service_runs_is_found(
    setting: tuple[CloudServer, Any, str, PolicyWorld],
) -> None:
    cloud, agency, _device_id, world = setting
    bundle = cloud.deployment.enroll_device(cloud.deployment.new_device_id("late"))
    late = bundle.device_id_file.read_text().strip()  # no explicit registry sync
    response = cloud.submit(agency, world.warrant(device_ids=[late]))
    assert response.status_code == 201, response.text
