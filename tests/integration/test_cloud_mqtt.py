"""The cloud's MQTT link against a real mosquitto with the deployment's TLS and ACL.

The device side is a plain MQTT client presenting the device's certificate: it escrows
an epoch key and gets the acknowledgement, receives the release token after approval,
and reports results and owner notices, which update the request. A malformed payload is
dropped without stopping the link, and a token issued while the broker is down is
published when the link reconnects.
"""

from __future__ import annotations

import base64
import json
import secrets
from datetime import UTC, datetime, timedelta

import pyrage
import pytest
from sqlalchemy import select

from cloud_stub.mqtt import CloudMqtt
from cloud_stub.store.models import EscrowedEpoch, OwnerNotice, Token
from protocol.messages import EscrowMessage, NoticeMessage, ResultMessage, ResultStatus
from protocol.token import VerificationContext, verify_token
from protocol.topics import DeviceTopics
from protocol.trust_root import load_trust_root
from tests.fixtures.broker import Broker, Inbox, publish, subscribe
from tests.fixtures.cloud import CloudServer, DeviceSigner, Principal
from tests.fixtures.waiting import wait_until

pytestmark = pytest.mark.broker
REASON = "Warrant verified with the issuing court's clerk."


def escrow_message(cloud: CloudServer, device_id: str, start: datetime) -> EscrowMessage:
    identity = pyrage.x25519.Identity.generate()
    escrow = pyrage.x25519.Recipient.from_str(
        cloud.deployment.layout.escrow_recipient.read_text().strip())
    sealed = pyrage.encrypt(f"{identity}\n".encode(), [escrow])
    return EscrowMessage(
        device=device_id, epoch=f"{int(start.timestamp())}-{secrets.token_hex(4)}",
        start=start, end=start + timedelta(hours=1), recipient=str(identity.to_public()),
        sealed=base64.b64encode(sealed).decode())


def approve_warrant(cloud: CloudServer, agency: Principal, reviewer: Principal,
                    device: DeviceSigner) -> str:
    world = cloud.world(agency, device.device_id)
    request_id = str(cloud.submit(agency, world.warrant(device_ids=[device.device_id]))
                     .json()["id"])
    response = cloud.http.post(f"/v1/requests/{request_id}/approve", json={"reason": REASON},
                               headers=reviewer.headers)
    assert response.json()["status"] == "released", response.text
    return request_id


def token_status(cloud: CloudServer, request_id: str) -> str:
    with cloud.service.store.transaction() as session:
        return str(session.execute(select(Token.status).where(Token.request_id == request_id))
                   .scalar_one())


def test_escrow_release_result_and_notice(cloud: CloudServer, broker: Broker,
                                          link: CloudMqtt) -> None:
    device = cloud.enroll()
    topics = DeviceTopics(device.device_id, cloud.deployment.prefix)
    inbox = Inbox()
    client = broker.client(device.device_id, inbox=inbox)
    subscribe(client, topics.release)
    subscribe(client, topics.escrow_ack)

    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=20)
    message = escrow_message(cloud, device.device_id, start)
    publish(client, topics.escrow, message.to_bytes())
    ack = inbox.get()
    assert ack.topic == topics.escrow_ack
    assert json.loads(ack.payload)["epoch"] == message.epoch
    with cloud.service.store.transaction() as session:
        assert session.get(EscrowedEpoch, (device.device_id, message.epoch)) is not None

    agency = cloud.principal("agency", org="metro-pd")
    reviewer = cloud.principal("reviewer", org="legal")
    request_id = approve_warrant(cloud, agency, reviewer, device)
    release = inbox.get()
    assert release.topic == topics.release
    assert release.qos == 1
    root = load_trust_root(cloud.deployment.layout.trust_root.read_bytes(),
                           now=datetime.now(UTC))
    claims = verify_token(release.payload, root=root, replay=None, context=VerificationContext(
        device_id=device.device_id, now=datetime.now(UTC), clock_synchronized=True))
    assert claims.case.request_id == request_id
    wait_until("the token to be published", lambda: token_status(cloud, request_id) == "published")

    # A malformed result is dropped; the link keeps working.
    publish(client, topics.result, b'{"v": 1, "jti": 5}')
    publish(client, topics.result, ResultMessage(
        jti=claims.jti, status=ResultStatus.uploaded, clips=("c1", "c2")).to_bytes())
    wait_until("the token to be uploaded", lambda: token_status(cloud, request_id) == "uploaded")
    view = cloud.http.get(f"/v1/requests/{request_id}", headers=agency.headers).json()
    assert view["status"] == "uploaded"

    notice = NoticeMessage(jti=claims.jti, basis="warrant", case=claims.case,
                           window=claims.window, clips=("c1", "c2"),
                           released_at=datetime.now(UTC).replace(microsecond=0))
    publish(client, topics.notice, notice.to_bytes(), retain=True)

    def notified() -> bool:
        with cloud.service.store.transaction() as session:
            return session.execute(select(OwnerNotice).where(
                OwnerNotice.jti == claims.jti)).first() is not None

    wait_until("the owner notice", notified)
    assert cloud.http.get("/v1/transparency").json()["owners_notified"] == 1


def test_a_rejection_carries_the_device_code(cloud: CloudServer, broker: Broker,
                                             link: CloudMqtt) -> None:
    device = cloud.enroll()
    topics = DeviceTopics(device.device_id, cloud.deployment.prefix)
    inbox = Inbox()
    client = broker.client(device.device_id, inbox=inbox)
    subscribe(client, topics.release)
    cloud.escrow_epoch(device.device_id, datetime.now(UTC) - timedelta(hours=20),
                       datetime.now(UTC) - timedelta(hours=19))
    request_id = approve_warrant(cloud, cloud.principal("agency", org="pd"),
                                 cloud.principal("reviewer", org="legal"), device)
    token = json.loads(base64.urlsafe_b64decode(
        json.loads(inbox.get().payload)["payload"] + "=="))
    publish(client, topics.result, ResultMessage(
        jti=token["jti"], status=ResultStatus.rejected, reason="expired").to_bytes())
    wait_until("the token to be rejected", lambda: token_status(cloud, request_id) == "rejected")
    with cloud.service.store.transaction() as session:
        row = session.execute(select(Token).where(Token.request_id == request_id)).scalar_one()
        assert row.status_reason == "expired"


def test_a_device_cannot_report_on_another_devices_token(cloud: CloudServer, broker: Broker,
                                                         link: CloudMqtt) -> None:
    victim, other = cloud.enroll(), cloud.enroll()
    inbox = Inbox()
    victim_client = broker.client(victim.device_id, inbox=inbox)
    subscribe(victim_client, DeviceTopics(victim.device_id, cloud.deployment.prefix).release)
    cloud.escrow_epoch(victim.device_id, datetime.now(UTC) - timedelta(hours=20),
                       datetime.now(UTC) - timedelta(hours=19))
    request_id = approve_warrant(cloud, cloud.principal("agency", org="pd"),
                                 cloud.principal("reviewer", org="legal"), victim)
    token = json.loads(base64.urlsafe_b64decode(
        json.loads(inbox.get().payload)["payload"] + "=="))
    wait_until("the token to be published", lambda: token_status(cloud, request_id) == "published")
    other_client = broker.client(other.device_id)
    publish(other_client, DeviceTopics(other.device_id, cloud.deployment.prefix).result,
            ResultMessage(jti=token["jti"], status=ResultStatus.uploaded).to_bytes())
    # A later, legitimate message is handled, so the forged one had its turn and was dropped.
    publish(victim_client, DeviceTopics(victim.device_id, cloud.deployment.prefix).result,
            ResultMessage(jti=token["jti"], status=ResultStatus.deferred,
                          reason="clock_unsynchronized").to_bytes())
    wait_until("the token to be deferred", lambda: token_status(cloud, request_id) == "deferred")


@pytest.mark.slow
def test_a_token_issued_while_the_broker_is_down_is_published_on_reconnect(
    cloud: CloudServer, broker: Broker, link: CloudMqtt
) -> None:
    device = cloud.enroll()
    topics = DeviceTopics(device.device_id, cloud.deployment.prefix)
    inbox = Inbox()
    client = broker.client(device.device_id, inbox=inbox, client_id=f"{device.device_id}-a",
                           clean_start=False, session_expiry_s=3600)
    subscribe(client, topics.release)
    cloud.escrow_epoch(device.device_id, datetime.now(UTC) - timedelta(hours=20),
                       datetime.now(UTC) - timedelta(hours=19))
    broker.stop()
    wait_until("the link to see the broker gone", lambda: not link.connected)
    request_id = approve_warrant(cloud, cloud.principal("agency", org="pd"),
                                 cloud.principal("reviewer", org="legal"), device)
    assert token_status(cloud, request_id) == "issued"
    broker.start()
    wait_until("the link to reconnect", lambda: link.connected, timeout=40)
    wait_until("the token to be published",
               lambda: token_status(cloud, request_id) == "published", timeout=20)
    reconnected = broker.client(device.device_id, inbox=inbox,
                                client_id=f"{device.device_id}-a", clean_start=False,
                                session_expiry_s=3600)
    assert reconnected is not None
    message = inbox.get(timeout=20)
    assert message.topic == topics.release
