"""An approval stands on the law at the moment it is given (docs/policy.md, "Checked
again at every step"), over real HTTP on the real cloud stub.

A warrant that expired while it waited for review, and an emergency whose follow-up is
overdue, are refused at approval with the policy's own code and change nothing; the same
request is approved once the clock is back (the control). A token never outlives its
warrant: its signed ``exp`` (read by the device's own acceptance code) is capped at the
warrant's ``expires``, which the request view shows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cloud_stub.cli import main
from tests.fixtures.cloud import CloudServer, DeviceSigner, Principal
from tests.integration.test_cloud_review import REASON, approve, device_accepts, tokens_of

SECOND_REASON = "Second reviewer: the danger is specific and the window is one hour."


@pytest.fixture
def parties(cloud: CloudServer) -> tuple[Principal, Principal, Principal, DeviceSigner]:
    agency = cloud.principal("agency", org="metro-pd")
    first = cloud.principal("reviewer", org="legal")
    second = cloud.principal("reviewer", org="ethics-board")
    device = cloud.enroll()
    now = datetime.now(UTC)
    cloud.escrow_epoch(device.device_id, now - timedelta(hours=20), now - timedelta(hours=19))
    cloud.escrow_epoch(device.device_id, now - timedelta(hours=2), now - timedelta(hours=1))
    return agency, first, second, device


@pytest.fixture
def shift_clock(cloud: CloudServer) -> Iterator[Callable[[timedelta], None]]:
    """Move the service's clock by a delta (and back after the test)."""
    real = cloud.service.core.clock

    def shift(delta: timedelta) -> None:
        cloud.service.core.clock = lambda: real() + delta

    yield shift
    cloud.service.core.clock = real


def _status(cloud: CloudServer, agency: Principal, request_id: str) -> str:
    response = cloud.http.get(f"/v1/requests/{request_id}", headers=agency.headers)
    return str(response.json()["status"])


def test_a_warrant_that_expired_while_waiting_is_refused_at_approval(
    cloud: CloudServer, parties: tuple[Principal, Principal, Principal, DeviceSigner],
    shift_clock: Callable[[timedelta], None],
) -> None:
    agency, reviewer, _, device = parties
    world = cloud.world(agency, device.device_id)
    response = cloud.submit(agency, world.warrant(device_ids=[device.device_id]))
    assert response.status_code == 201, response.text
    request_id = response.json()["id"]

    shift_clock(timedelta(days=11))  # the warrant is valid 10 days
    refused = approve(cloud, reviewer, request_id)
    assert refused.status_code == 409, refused.text
    assert refused.json()["error"]["code"] == "warrant_expired"
    assert tokens_of(cloud, request_id) == []
    assert _status(cloud, agency, request_id) == "pending_review"
    view = cloud.http.get(f"/v1/requests/{request_id}", headers=agency.headers).json()
    assert view["decisions"] == []  # the refused approval was not recorded

    shift_clock(timedelta(0))  # the control: the same approval at a lawful moment
    response = approve(cloud, reviewer, request_id)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "released"


def test_an_emergency_whose_follow_up_is_overdue_is_refused_at_approval(
    cloud: CloudServer, parties: tuple[Principal, Principal, Principal, DeviceSigner],
    shift_clock: Callable[[timedelta], None],
) -> None:
    agency, first, second, device = parties
    world = cloud.world(agency, device.device_id)
    response = cloud.submit(agency, world.emergency(device_ids=[device.device_id]))
    assert response.status_code == 201, response.text
    request_id = response.json()["id"]
    assert approve(cloud, first, request_id).status_code == 200  # one of two approvals

    shift_clock(timedelta(hours=25))  # the follow-up was due within 24 h
    refused = approve(cloud, second, request_id, SECOND_REASON)
    assert refused.status_code == 409, refused.text
    assert refused.json()["error"]["code"] == "emergency_followup_out_of_range"
    assert tokens_of(cloud, request_id) == []
    assert _status(cloud, agency, request_id) == "pending_review"

    shift_clock(timedelta(0))
    response = approve(cloud, second, request_id, SECOND_REASON)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "released"


def test_a_token_never_outlives_its_warrant_and_the_view_shows_the_expiry(
    cloud: CloudServer, parties: tuple[Principal, Principal, Principal, DeviceSigner],
    capsys: pytest.CaptureFixture[str], tmp_path: Path,
) -> None:
    agency, reviewer, _, device = parties
    world = cloud.world(agency, device.device_id)
    expires = world.now + timedelta(hours=1)  # a token may live 24 h: the warrant ends first
    response = cloud.submit(agency, world.warrant(device_ids=[device.device_id],
                                                  expires=world.t(hours=1)))
    assert response.status_code == 201, response.text
    request_id = response.json()["id"]
    assert response.json()["warrant"]["expires"] == expires.strftime("%Y-%m-%dT%H:%M:%SZ")

    response = approve(cloud, reviewer, request_id, REASON)
    assert response.status_code == 200, response.text
    [token] = tokens_of(cloud, request_id)
    claims = device_accepts(cloud, device, token.jws)
    assert claims.exp == int(expires.timestamp())
    assert claims.exp - claims.iat < 3700
    assert token.expires_at.replace(tzinfo=UTC) == expires
    [shown] = response.json()["tokens"]
    assert datetime.fromisoformat(shown["expires_at"]) == expires

    store = f"sqlite:///{tmp_path / 'cloud.sqlite3'}"  # the `cloud` fixture's store
    assert main(["requests", "show", request_id, "--deployment",
                 str(cloud.deployment.layout.root), "--store-url", store]) == 0
    out = capsys.readouterr().out
    assert f"warrant expires {expires.strftime('%Y-%m-%d %H:%M:%S')} UTC" in out


def test_other_bases_have_no_warrant_in_the_view(
    cloud: CloudServer, parties: tuple[Principal, Principal, Principal, DeviceSigner],
) -> None:
    agency, _, _, device = parties
    world = cloud.world(agency, device.device_id)
    response = cloud.submit(agency, world.emergency(device_ids=[device.device_id]))
    assert response.status_code == 201, response.text
    assert response.json()["warrant"] is None
