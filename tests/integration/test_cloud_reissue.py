"""A reviewer re-issues a token the device refused as ``stale_seq`` or ``expired``
(`cloud_stub.services.reissuing`), against a real mosquitto with the deployment's TLS and ACL, the
real cloud over HTTP, and the operator's command line on the same store.

The loss ADR 0011 cannot repair by re-publishing: token A (request one) is lost, the
device accepts token B (request two, a higher ``seq``), and A then reaches it and is
refused ``stale_seq``. The device's result travels as a real MQTT message from a client
presenting the device's certificate. A new token is judged by the device's own
acceptance code (`protocol.token.verify_token` with the trust root and the device's
replay state: B accepted), which refuses A with that same code: so "accepted" is not a
check that cannot fail.

Every refusal is shown to change nothing (no token, no audit entry, the old token as it
was) next to a re-issue of the same request that succeeds once the cause is removed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from cloud_stub.cli import main
from cloud_stub.mqtt import CloudMqtt
from cloud_stub.provision.revocations import Scope
from cloud_stub.provision.revoke import revoke_device
from cloud_stub.store.models import AuditRow, Request, Token
from protocol.errors import TokenRejected
from protocol.messages import ResultMessage, ResultStatus
from protocol.token import ReleaseClaims, VerificationContext, verify_token
from protocol.topics import DeviceTopics
from protocol.trust_root import load_trust_root
from tests.fixtures.broker import Broker, Inbox, publish, subscribe
from tests.fixtures.cloud import CloudServer, DeviceSigner, Principal
from tests.fixtures.reissue import Replay
from tests.fixtures.reissue import tokens as _tokens
from tests.fixtures.waiting import wait_until

pytestmark = pytest.mark.broker

APPROVE = "Warrant checked against the court docket; scope is one porch camera."
REISSUE = "The broker lost the first token; the device took a later one. Same warrant."


def device_verdict(cloud: CloudServer, device: DeviceSigner, token: Token,
                   replay: Replay | None) -> ReleaseClaims | str:
    """The claims when the device accepts the token, else its rejection code."""
    now = datetime.now(UTC)
    root = load_trust_root(cloud.deployment.layout.trust_root.read_bytes(), now=now)
    context = VerificationContext(device_id=device.device_id, now=now, clock_synchronized=True)
    try:
        return verify_token(token.jws.encode(), root=root, context=context, replay=replay)
    except TokenRejected as exc:
        return str(exc.code)


@dataclass
class Stale:
    """Request one's token A refused ``stale_seq`` after the device took B (request two)."""

    agency: Principal
    reviewer: Principal
    device: DeviceSigner
    client: Any
    inbox: Inbox
    topics: DeviceTopics
    request_id: str
    a: Token
    b: Token


def _request_status(cloud: CloudServer, request_id: str) -> str:
    with cloud.service.store.read() as session:
        row = session.get(Request, request_id)
        assert row is not None
        return row.status


def _audit_count(cloud: CloudServer) -> int:
    with cloud.service.store.read() as session:
        return int(session.execute(select(func.count()).select_from(AuditRow)).scalar_one())


def _reissued(cloud: CloudServer) -> list[dict[str, Any]]:
    with cloud.service.store.read() as session:
        return [dict(d) for d in session.execute(
            select(AuditRow.detail).where(AuditRow.action == "token.reissued")
            .order_by(AuditRow.seq)).scalars()]


def _approve(cloud: CloudServer, agency: Principal, reviewer: Principal,
             device: DeviceSigner, **fields: Any) -> str:
    world = cloud.world(agency, device.device_id)
    response = cloud.submit(agency, world.warrant(device_ids=[device.device_id], **fields))
    assert response.status_code == 201, response.text
    request_id = str(response.json()["id"])
    response = cloud.http.post(f"/v1/requests/{request_id}/approve", json={"reason": APPROVE},
                               headers=reviewer.headers)
    assert response.json()["status"] == "released", response.text
    wait_until("the token to be published",
               lambda: [t.status for t in _tokens(cloud, request_id)] == ["published"])
    return request_id


def _result(stale: Stale, jti: str, status: ResultStatus, reason: str = "") -> None:
    """The device's result for token `jti`, naming the sha256 of the bytes it judged."""
    judged = {t.jti: hashlib.sha256(t.jws.encode()).hexdigest() for t in (stale.a, stale.b)}
    publish(stale.client, stale.topics.result,
            ResultMessage(jti=jti, status=status, reason=reason,
                          token_sha256=judged.get(jti, "")).to_bytes())


def _make_stale(cloud: CloudServer, broker: Broker, reason: str = "stale_seq") -> Stale:
    agency = cloud.principal("agency", org="metro-pd")
    reviewer = cloud.principal("reviewer", org="legal")
    device = cloud.enroll()
    now = datetime.now(UTC)
    cloud.escrow_epoch(device.device_id, now - timedelta(hours=20), now - timedelta(hours=19))
    # token A is published while the device has no session: the broker drops it
    request_id = _approve(cloud, agency, reviewer, device)
    topics = DeviceTopics(device.device_id, cloud.deployment.prefix)
    inbox = Inbox()
    client = broker.client(device.device_id, inbox=inbox)
    subscribe(client, topics.release)
    other = _approve(cloud, agency, reviewer, device)  # token B reaches the device
    [b] = _tokens(cloud, other)
    assert inbox.get().payload == b.jws.encode()
    [a] = _tokens(cloud, request_id)
    assert a.seq < b.seq
    stale = Stale(agency, reviewer, device, client, inbox, topics, request_id, a, b)
    _result(stale, b.jti, ResultStatus.deferred, "clock_unsynchronized")  # B is held
    _result(stale, a.jti, ResultStatus.rejected, reason)  # A, re-published, comes too late
    wait_until("the token to be rejected",
               lambda: _tokens(cloud, request_id)[0].status == "rejected")
    assert _request_status(cloud, request_id) == "rejected"
    return stale


def _reissue(cloud: CloudServer, reviewer: Principal, request_id: str,
             reason: str = REISSUE) -> httpx.Response:
    return cloud.http.post(f"/v1/requests/{request_id}/reissue", json={"reason": reason},
                           headers=reviewer.headers)


def _refused(cloud: CloudServer, stale: Stale, response: httpx.Response, status: int,
             code: str) -> None:
    """The re-issue was refused with `code` and nothing changed."""
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code, response.text


def _snapshot(cloud: CloudServer, request_id: str) -> tuple[Any, ...]:
    return (_audit_count(cloud), _request_status(cloud, request_id),
            [(t.jti, t.seq, t.status, t.status_reason) for t in _tokens(cloud, request_id)])


def test_a_stale_seq_token_is_reissued_with_a_higher_seq_and_the_device_accepts_it(
    cloud: CloudServer, broker: Broker, link: CloudMqtt
) -> None:
    stale = _make_stale(cloud, broker)
    replay = Replay(stale.b)
    assert device_verdict(cloud, stale.device, stale.a, replay) == "stale_seq"  # the control
    other_org = cloud.principal("reviewer", org="ethics-board")

    response = _reissue(cloud, other_org, stale.request_id)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "released"
    old, new = _tokens(cloud, stale.request_id)
    assert old.jti == stale.a.jti
    assert old.status == "superseded"
    assert new.jti not in (stale.a.jti, stale.b.jti)
    assert new.seq > stale.b.seq
    assert (new.window_start, new.window_end, new.basis) == (
        stale.a.window_start, stale.a.window_end, stale.a.basis)
    assert new.expires_at - new.issued_at == stale.a.expires_at - stale.a.issued_at
    assert new.issued_at >= stale.a.issued_at
    assert new.status == "published"
    assert stale.inbox.get().payload == new.jws.encode()  # on the device's release topic

    claims = device_verdict(cloud, stale.device, new, replay)
    assert isinstance(claims, ReleaseClaims), claims
    first = device_verdict(cloud, stale.device, stale.a, None)  # A's claims, replay aside
    assert isinstance(first, ReleaseClaims), first
    assert (claims.case, claims.recipient, claims.window) == (
        first.case, first.recipient, first.window)
    assert claims.seq == new.seq
    assert claims.jti == new.jti

    [entry] = _reissued(cloud)
    assert entry["old_jti"] == stale.a.jti
    assert entry["new_jti"] == new.jti
    assert entry["reviewer"] == other_org.name
    assert entry["reason"] == REISSUE
    assert entry["refused"] == "stale_seq"
    assert cloud.service.core.audit.verify().entries > 0  # the chain holds (raises if not)

    # the device's outbox sends A's refusal again: the request waits on the new token
    _result(stale, stale.a.jti, ResultStatus.rejected, "stale_seq")
    _result(stale, new.jti, ResultStatus.deferred, "clock_unsynchronized")
    wait_until("the reissued token to be deferred",
               lambda: _tokens(cloud, stale.request_id)[1].status == "deferred")
    assert _tokens(cloud, stale.request_id)[0].status == "superseded"
    assert _request_status(cloud, stale.request_id) == "deferred"
    # the new token is not refused: nothing more to re-issue
    before = _snapshot(cloud, stale.request_id)
    _refused(cloud, stale, _reissue(cloud, other_org, stale.request_id), 409, "not_reissuable")
    assert _snapshot(cloud, stale.request_id) == before
    assert cloud.service.core.audit.verify().entries > 0


def test_an_expired_token_is_reissued_and_other_refusals_are_not(
    cloud: CloudServer, broker: Broker, link: CloudMqtt
) -> None:
    """``expired`` is re-issued like ``stale_seq``; ``bad_signature`` and an uploaded token
    are not (``not_reissuable``), and nor is a request that was never approved."""
    expired = _make_stale(cloud, broker, reason="expired")
    wrong = _make_stale(cloud, broker, reason="bad_signature")
    reviewer = cloud.principal("reviewer", org="ethics-board")

    before = _snapshot(cloud, wrong.request_id)
    response = _reissue(cloud, reviewer, wrong.request_id)
    _refused(cloud, wrong, response, 409, "not_reissuable")
    assert "rejected (bad_signature)" in response.json()["error"]["message"]
    assert _snapshot(cloud, wrong.request_id) == before

    # uploaded: the device served the request (its token B, request two's, here)
    _result(wrong, wrong.b.jti, ResultStatus.uploaded)
    wait_until("the token to be uploaded",
               lambda: _tokens(cloud, wrong.b.request_id)[0].status == "uploaded")
    before = _snapshot(cloud, wrong.b.request_id)
    _refused(cloud, wrong, _reissue(cloud, reviewer, wrong.b.request_id), 409,
             "not_reissuable")
    assert _snapshot(cloud, wrong.b.request_id) == before

    # never approved: no token at all
    world = cloud.world(wrong.agency, wrong.device.device_id)
    pending = str(cloud.submit(wrong.agency, world.warrant(
        device_ids=[wrong.device.device_id])).json()["id"])
    before = _snapshot(cloud, pending)
    _refused(cloud, wrong, _reissue(cloud, reviewer, pending), 409, "not_reissuable")
    assert _snapshot(cloud, pending) == before == (before[0], "pending_review", [])
    assert _reissued(cloud) == []

    # the positive control beside them
    response = _reissue(cloud, reviewer, expired.request_id)
    assert response.status_code == 200, response.text
    old, new = _tokens(cloud, expired.request_id)
    assert (old.status, new.status) == ("superseded", "published")
    assert new.seq > expired.b.seq
    [entry] = _reissued(cloud)
    assert entry["refused"] == "expired"
    assert entry["old_jti"] == expired.a.jti
    assert cloud.service.core.audit.verify().entries > 0


def test_the_reviewer_rules_and_the_legal_check_apply_as_at_approval(
    cloud: CloudServer, broker: Broker, link: CloudMqtt
) -> None:
    """A reviewer of the submitting organisation, an agency, no written reason, a warrant
    expired since and a revoked device are refused with their own codes and change
    nothing; the same request is then re-issued once the clock is back."""
    stale = _make_stale(cloud, broker)
    before = _snapshot(cloud, stale.request_id)
    same_org = cloud.principal("reviewer", org=stale.agency.org)
    _refused(cloud, stale, _reissue(cloud, same_org, stale.request_id), 403,
             "separation_of_duties")
    _refused(cloud, stale, _reissue(cloud, stale.agency, stale.request_id), 403, "forbidden")
    _refused(cloud, stale, _reissue(cloud, stale.reviewer, stale.request_id, reason="again"),
             400, "reason_required")
    # the warrant (valid 10 days from submission) has expired since
    real = cloud.service.core.clock
    cloud.service.core.clock = lambda: real() + timedelta(days=11)
    try:
        _refused(cloud, stale, _reissue(cloud, stale.reviewer, stale.request_id), 409,
                 "warrant_expired")
    finally:
        cloud.service.core.clock = real
    assert _snapshot(cloud, stale.request_id) == before
    assert _reissued(cloud) == []

    # the reviewer who approved it may re-issue it (another organisation than the agency's)
    response = _reissue(cloud, stale.reviewer, stale.request_id)
    assert response.status_code == 200, response.text
    assert [t.status for t in _tokens(cloud, stale.request_id)] == ["superseded", "published"]
    assert cloud.service.core.audit.verify().entries > 0


def test_a_revoked_device_gets_no_new_token(
    cloud: CloudServer, broker: Broker, link: CloudMqtt
) -> None:
    revoked = _make_stale(cloud, broker)
    control = _make_stale(cloud, broker)
    revoke_device(cloud.deployment.layout, revoked.device.device_id,
                  reason="Stolen from the porch; the owner reported it.", scope=Scope.DEVICE,
                  now=datetime.now(UTC))
    cloud.service.core.sync_devices()
    before = _snapshot(cloud, revoked.request_id)
    _refused(cloud, revoked, _reissue(cloud, revoked.reviewer, revoked.request_id), 409,
             "device_revoked")
    assert _snapshot(cloud, revoked.request_id) == before
    response = _reissue(cloud, control.reviewer, control.request_id)
    assert response.status_code == 200, response.text


def test_the_operator_command_reissues_as_a_named_reviewer(
    cloud: CloudServer, broker: Broker, link: CloudMqtt, tmp_path: Any,
    capsys: pytest.CaptureFixture[str]
) -> None:
    """`cloud-stub requests reissue` on the service's store: refused for a reviewer of the
    agency's organisation (exit 1, the code printed), then done; the token it signed is
    published by the running service's link like any token the broker did not take."""
    stale = _make_stale(cloud, broker)
    same_org = cloud.principal("reviewer", org=stale.agency.org)
    store = ["--deployment", str(cloud.deployment.layout.root),
             "--store-url", f"sqlite:///{tmp_path / 'cloud.sqlite3'}"]
    before = _snapshot(cloud, stale.request_id)
    capsys.readouterr()
    code = main(["requests", "reissue", stale.request_id, "--reviewer", same_org.name,
                 "--reason", REISSUE, *store])
    assert code == 1
    assert "[separation_of_duties]" in capsys.readouterr().err
    assert _snapshot(cloud, stale.request_id) == before

    code = main(["requests", "reissue", stale.request_id, "--reviewer", stale.reviewer.name,
                 "--reason", REISSUE, *store])
    out = capsys.readouterr().out
    assert code == 0, out
    assert f"request {stale.request_id} is now released" in out
    old, new = _tokens(cloud, stale.request_id)
    assert (old.status, new.status) == ("superseded", "issued")  # the CLI has no broker
    assert new.jti in out
    releaser = cloud.service.releaser
    releaser.publish(releaser.pending())
    assert stale.inbox.get().payload == new.jws.encode()
    assert _tokens(cloud, stale.request_id)[1].status == "published"
    [entry] = _reissued(cloud)
    assert entry["reviewer"] == stale.reviewer.name
    assert entry["new_jti"] == new.jti
    assert cloud.service.core.audit.verify().entries > 0
