"""Review and release over real HTTP: separation of duties, two reviewers for an
emergency, and tokens a device accepts (threshold signatures, keys for the window).

The tokens are checked with the device's own acceptance code (`protocol.token.
verify_token` with the deployment's trust root) and their keys opened with the
device's transport identity, so "the cloud signs" means "a device would act on it".
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from cloud_stub.policy.config import default_policy_text
from cloud_stub.store.models import EscrowedEpoch, Token
from protocol.errors import TokenRejected
from protocol.token import VerificationContext, open_delivered_keys, verify_token
from protocol.trust_root import load_trust_root
from tests.fixtures.cloud import CloudServer, DeviceSigner, Principal, open_cloud
from tests.fixtures.deployment import TestDeployment

REASON = "Warrant checked against the court docket; scope is one porch camera."


def approve(cloud: CloudServer, reviewer: Principal, request_id: str,
            reason: str = REASON) -> Any:
    return cloud.http.post(f"/v1/requests/{request_id}/approve", json={"reason": reason},
                           headers=reviewer.headers)


def deny(cloud: CloudServer, reviewer: Principal, request_id: str,
         reason: str = "The window is broader than the affidavit supports.") -> Any:
    return cloud.http.post(f"/v1/requests/{request_id}/deny", json={"reason": reason},
                           headers=reviewer.headers)


def tokens_of(cloud: CloudServer, request_id: str) -> list[Token]:
    with cloud.service.store.transaction() as session:
        return list(session.execute(
            select(Token).where(Token.request_id == request_id).order_by(Token.seq)
        ).scalars())


def device_accepts(cloud: CloudServer, device: DeviceSigner, jws: str) -> Any:
    root = load_trust_root(cloud.deployment.layout.trust_root.read_bytes(), now=datetime.now(UTC))
    context = VerificationContext(device_id=device.device_id, now=datetime.now(UTC),
                                  clock_synchronized=True)
    return verify_token(jws.encode(), root=root, context=context, replay=None)


@pytest.fixture
def parties(cloud: CloudServer) -> tuple[Principal, Principal, Principal, DeviceSigner]:
    agency = cloud.principal("agency", org="metro-pd")
    first = cloud.principal("reviewer", org="legal")
    second = cloud.principal("reviewer", org="ethics-board")
    return agency, first, second, cloud.enroll()


def submit_warrant(cloud: CloudServer, agency: Principal, device: DeviceSigner) -> str:
    world = cloud.world(agency, device.device_id)
    response = cloud.submit(agency, world.warrant(device_ids=[device.device_id]))
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def test_an_approved_warrant_becomes_a_token_the_device_accepts(
    cloud: CloudServer, parties: tuple[Principal, Principal, Principal, DeviceSigner]
) -> None:
    agency, reviewer, _, device = parties
    now = datetime.now(UTC).replace(microsecond=0)
    # Epochs: one starting before the window (its clips may reach in), one inside, one
    # long before (not delivered), one after (not delivered).
    inside = cloud.escrow_epoch(device.device_id, now - timedelta(hours=20),
                                now - timedelta(hours=19))
    lead = cloud.escrow_epoch(device.device_id, now - timedelta(hours=30, minutes=30),
                              now - timedelta(hours=29, minutes=30))
    cloud.escrow_epoch(device.device_id, now - timedelta(hours=40), now - timedelta(hours=39))
    cloud.escrow_epoch(device.device_id, now - timedelta(hours=5), now - timedelta(hours=4))
    request_id = submit_warrant(cloud, agency, device)  # window: now-30h .. now-6h

    response = approve(cloud, reviewer, request_id)
    assert response.status_code == 200, response.text
    view = response.json()
    assert view["status"] == "released"
    assert view["approvals"] == {"required": 1, "received": 1}
    assert [d["reviewer"] for d in view["decisions"]] == [reviewer.name]
    [token] = tokens_of(cloud, request_id)
    claims = device_accepts(cloud, device, token.jws)
    assert claims.aud == device.device_id
    assert claims.basis == "warrant"
    assert claims.recipient == agency.recipient
    assert claims.upload == f"{cloud.url}/v1/evidence/{token.jti}"
    assert claims.case.request_id == request_id
    assert claims.exp - claims.iat == 24 * 3600
    transport = device.bundle.transport_identity.read_text().strip()
    recorded: dict[str, str] = {}
    with cloud.service.store.transaction() as session:
        for row in session.execute(select(EscrowedEpoch)).scalars():
            recorded[row.epoch_id] = row.recipient
    opened = open_delivered_keys(claims, transport, recorded)
    assert sorted(opened.values()) == sorted([str(inside), str(lead)])


def test_a_token_with_one_signature_is_refused_by_the_device(
    cloud: CloudServer, parties: tuple[Principal, Principal, Principal, DeviceSigner]
) -> None:
    """The threshold is real: the policy key alone does not make a token."""
    agency, reviewer, _, device = parties
    now = datetime.now(UTC)
    cloud.escrow_epoch(device.device_id, now - timedelta(hours=20), now - timedelta(hours=19))
    request_id = submit_warrant(cloud, agency, device)
    approve(cloud, reviewer, request_id)
    [token] = tokens_of(cloud, request_id)
    envelope = json.loads(token.jws)
    envelope["signatures"] = envelope["signatures"][:1]
    with pytest.raises(TokenRejected) as info:
        device_accepts(cloud, device, json.dumps(envelope))
    assert info.value.code.value == "below_threshold"


def test_seq_strictly_increases_per_device(
    cloud: CloudServer, parties: tuple[Principal, Principal, Principal, DeviceSigner]
) -> None:
    agency, reviewer, _, device = parties
    now = datetime.now(UTC)
    cloud.escrow_epoch(device.device_id, now - timedelta(hours=20), now - timedelta(hours=19))
    seqs = []
    for _ in range(3):
        request_id = submit_warrant(cloud, agency, device)
        assert approve(cloud, reviewer, request_id).status_code == 200
        seqs += [t.seq for t in tokens_of(cloud, request_id)]
    assert seqs == sorted(seqs)
    assert len(set(seqs)) == 3
    assert seqs[0] >= 1


def test_an_emergency_needs_two_distinct_reviewers(
    cloud: CloudServer, parties: tuple[Principal, Principal, Principal, DeviceSigner]
) -> None:
    agency, first, second, device = parties
    now = datetime.now(UTC)
    cloud.escrow_epoch(device.device_id, now - timedelta(hours=2), now - timedelta(hours=1))
    world = cloud.world(agency, device.device_id)
    response = cloud.submit(agency, world.emergency(device_ids=[device.device_id]))
    assert response.status_code == 201
    request_id = response.json()["id"]

    one = approve(cloud, first, request_id, "Imminent danger to a child is credibly described.")
    assert one.status_code == 200
    assert one.json()["status"] == "pending_review"
    assert one.json()["approvals"] == {"required": 2, "received": 1}
    assert tokens_of(cloud, request_id) == []

    # The same reviewer approving again does not count as a second approval.
    twice = approve(cloud, first, request_id, "Approving again to speed this up.")
    assert twice.status_code == 409
    assert twice.json()["error"]["code"] == "already_decided"

    two = approve(cloud, second, request_id, "Independent review: justification holds.")
    assert two.status_code == 200, two.text
    assert two.json()["status"] == "released"
    [token] = tokens_of(cloud, request_id)
    claims = device_accepts(cloud, device, token.jws)
    assert claims.basis == "emergency"
    assert claims.exp - claims.iat == 3600

    # The follow-up legal process: pending in the report until the agency files it.
    emergency = cloud.http.get("/v1/transparency").json()["emergency"]
    assert emergency["granted"] == 1
    assert emergency["followups_pending"] == 1
    # a search warrant the court signed over the disclosed devices and window
    signed = world.warrant(device_ids=[device.device_id], docket="2026-MJ-00777",
                           window=response.json()["window"])
    follow_up = {k: signed[k] for k in ("order_type", "court_id", "judge", "docket",
                                        "issued", "expires", "document_sha256",
                                        "court_signature")}
    filed = cloud.http.post(f"/v1/requests/{request_id}/follow-up", json=follow_up,
                            headers=agency.headers)
    assert filed.status_code == 200, filed.text
    assert filed.json()["follow_up_received"] is True
    again = cloud.http.post(f"/v1/requests/{request_id}/follow-up", json=follow_up,
                            headers=agency.headers)
    assert again.status_code == 409
    emergency = cloud.http.get("/v1/transparency").json()["emergency"]
    assert emergency["followups_received"] == 1
    assert emergency["followups_missing"] == []


def test_separation_of_duties(
    cloud: CloudServer, parties: tuple[Principal, Principal, Principal, DeviceSigner]
) -> None:
    agency, reviewer, _, device = parties
    request_id = submit_warrant(cloud, agency, device)
    colleague = cloud.principal("reviewer", org=agency.org)

    same_org = approve(cloud, colleague, request_id)
    assert same_org.status_code == 403
    assert same_org.json()["error"]["code"] == "separation_of_duties"
    own = approve(cloud, agency, request_id)  # the submitter itself
    assert own.status_code == 403
    admin = cloud.principal("admin", org="operator")
    assert approve(cloud, admin, request_id).status_code == 403

    queue = cloud.http.get("/v1/review/queue", headers=colleague.headers).json()
    assert request_id not in [v["id"] for v in queue]
    queue = cloud.http.get("/v1/review/queue", headers=reviewer.headers).json()
    assert request_id in [v["id"] for v in queue]
    assert cloud.http.get(f"/v1/requests/{request_id}",
                          headers=agency.headers).json()["status"] == "pending_review"


@pytest.mark.parametrize("spelling", ["Metro-PD", "METRO PD", "metro_pd", "Metro.P.D."])
def test_separation_of_duties_ignores_case_and_punctuation(
    cloud: CloudServer, parties: tuple[Principal, Principal, Principal, DeviceSigner],
    spelling: str,
) -> None:
    agency, reviewer, _, device = parties  # the agency is "metro-pd"
    request_id = submit_warrant(cloud, agency, device)
    colleague = cloud.principal("reviewer", org=spelling)
    for decide in (approve, deny):
        response = decide(cloud, colleague, request_id)
        assert response.status_code == 403, (spelling, response.text)
        assert response.json()["error"]["code"] == "separation_of_duties"
    queue = cloud.http.get("/v1/review/queue", headers=colleague.headers).json()
    assert request_id not in [v["id"] for v in queue]
    assert approve(cloud, reviewer, request_id).status_code == 200  # the control: "legal"


def test_a_denial_is_final_and_needs_a_reason(
    cloud: CloudServer, parties: tuple[Principal, Principal, Principal, DeviceSigner]
) -> None:
    agency, first, second, device = parties
    request_id = submit_warrant(cloud, agency, device)
    short = deny(cloud, first, request_id, "no")
    assert short.status_code == 400
    assert short.json()["error"]["code"] == "reason_required"
    missing = cloud.http.post(f"/v1/requests/{request_id}/deny", json={},
                              headers=first.headers)
    assert missing.status_code == 422
    assert "reason" in missing.json()["error"]["message"]

    denied = deny(cloud, first, request_id)
    assert denied.status_code == 200
    assert denied.json()["status"] == "denied"
    late = approve(cloud, second, request_id)
    assert late.status_code == 409
    assert late.json()["error"]["code"] == "not_pending"
    assert tokens_of(cloud, request_id) == []


def test_without_escrowed_keys_nothing_is_signed(
    cloud: CloudServer, parties: tuple[Principal, Principal, Principal, DeviceSigner]
) -> None:
    agency, reviewer, _, device = parties
    request_id = submit_warrant(cloud, agency, device)
    view = approve(cloud, reviewer, request_id).json()
    assert view["status"] == "no_footage"
    assert view["reasons"][-1]["code"] == "no_escrowed_epochs"
    assert tokens_of(cloud, request_id) == []


def test_a_preservation_token_carries_no_keys_and_a_hold(
    cloud: CloudServer, parties: tuple[Principal, Principal, Principal, DeviceSigner]
) -> None:
    agency, reviewer, _, device = parties
    world = cloud.world(agency, device.device_id)
    response = cloud.submit(agency, world.preservation(device_ids=[device.device_id],
                                                       hold_days=30))
    assert response.status_code == 201, response.text
    request_id = response.json()["id"]
    assert approve(cloud, reviewer, request_id).json()["status"] == "released"
    [token] = tokens_of(cloud, request_id)
    claims = device_accepts(cloud, device, token.jws)
    assert claims.is_preservation
    assert claims.keys is None
    assert claims.upload is None
    assert claims.recipient is None
    assert claims.hold_until is not None
    held = (claims.hold_until - datetime.fromtimestamp(claims.iat, UTC)).days
    assert held == 30


def test_every_step_is_in_the_audit_chain(
    cloud: CloudServer, parties: tuple[Principal, Principal, Principal, DeviceSigner]
) -> None:
    agency, reviewer, _, device = parties
    now = datetime.now(UTC)
    cloud.escrow_epoch(device.device_id, now - timedelta(hours=20), now - timedelta(hours=19))
    request_id = submit_warrant(cloud, agency, device)
    approve(cloud, reviewer, request_id)
    with cloud.service.store.transaction() as session:
        entries = cloud.service.core.audit.entries(session)
    actions = [e.action for e in entries if request_id in e.subject
               or e.detail.get("request") == request_id]
    assert actions == ["request.submitted", "request.approve", "token.issued",
                       "request.released"]
    admin = cloud.principal("admin", org="operator")
    state = cloud.http.get("/v1/audit/verify", headers=admin.headers).json()
    assert state["ok"] is True
    assert state["entries"] == len(entries)


def test_the_policy_file_can_shorten_the_token_life(fresh_deployment: TestDeployment,
                                                    tmp_path: Path) -> None:
    text = default_policy_text()
    assert "token_lifetime_minutes = 1440" in text
    policy = fresh_deployment.layout.cloud_dir / "policy.toml"
    policy.write_text(text.replace("token_lifetime_minutes = 1440", "token_lifetime_minutes = 90",
                                   1))
    try:
        for cloud in open_cloud(fresh_deployment, tmp_path):
            agency = cloud.principal("agency", org="metro-pd")
            reviewer = cloud.principal("reviewer", org="legal")
            device = cloud.enroll()
            now = datetime.now(UTC)
            cloud.escrow_epoch(device.device_id, now - timedelta(hours=20),
                               now - timedelta(hours=19))
            request_id = submit_warrant(cloud, agency, device)
            assert approve(cloud, reviewer, request_id).json()["status"] == "released"
            [token] = tokens_of(cloud, request_id)
            claims = device_accepts(cloud, device, token.jws)
            assert claims.exp - claims.iat == 90 * 60
    finally:
        policy.unlink()


def test_a_request_naming_two_devices_gets_one_token_each(
    cloud: CloudServer, parties: tuple[Principal, Principal, Principal, DeviceSigner]
) -> None:
    agency, reviewer, _, first = parties
    second = cloud.enroll()
    now = datetime.now(UTC)
    for device in (first, second):
        cloud.escrow_epoch(device.device_id, now - timedelta(hours=20),
                           now - timedelta(hours=19))
    world = cloud.world(agency, first.device_id)
    body = world.warrant(device_ids=[first.device_id, second.device_id])
    request_id = cloud.submit(agency, body).json()["id"]
    assert approve(cloud, reviewer, request_id).json()["status"] == "released"
    tokens = tokens_of(cloud, request_id)
    assert sorted(t.device_id for t in tokens) == sorted([first.device_id, second.device_id])
    for token, device in ((t, first if t.device_id == first.device_id else second)
                          for t in tokens):
        claims = device_accepts(cloud, device, token.jws)
        assert claims.aud == device.device_id
        assert claims.seq == 1  # each device's own counter
        other = second if device is first else first
        with pytest.raises(TokenRejected) as info:  # and only that device accepts it
            device_accepts(cloud, other, token.jws)
        assert info.value.code.value == "wrong_device"
