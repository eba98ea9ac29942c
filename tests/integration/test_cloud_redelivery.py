"""The cloud publishes a token again while no device result answers it (ADR 0011), and a
repeated result changes nothing, against a real mosquitto with the deployment's TLS and
ACL and the real cloud service.

The device is a plain MQTT client presenting the device's certificate. The first
publish of the token reaches the broker while the device has no session, so the broker
acknowledges it and drops it: exactly the loss the re-publish exists for. The
redelivery pass is driven with the clock passed in (`Publisher.redeliver(now)`), so no
test waits for a backoff to elapse.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from cloud_stub.mqtt import CloudMqtt
from cloud_stub.store.models import AuditRow, OwnerNotice, Request, Token
from protocol.messages import NoticeMessage, ResultMessage, ResultStatus
from protocol.token import CaseRef, Window
from protocol.topics import DeviceTopics
from tests.fixtures.broker import Broker, Inbox, publish, subscribe
from tests.fixtures.cloud import CloudServer, DeviceSigner
from tests.fixtures.waiting import wait_until
from tests.integration.test_cloud_mqtt import approve_warrant, token_status

pytestmark = pytest.mark.broker


def _audit(cloud: CloudServer, jti: str) -> list[tuple[str, dict[str, Any]]]:
    with cloud.service.store.read() as session:
        rows = session.execute(
            select(AuditRow.action, AuditRow.detail)
            .where(AuditRow.subject == f"token:{jti}").order_by(AuditRow.seq)
        ).all()
    return [(str(action), dict(detail)) for action, detail in rows]


def _token(cloud: CloudServer, request_id: str) -> Token:
    with cloud.service.store.read() as session:
        return session.execute(select(Token).where(Token.request_id == request_id)).scalar_one()


def _published_while_nobody_listens(cloud: CloudServer) -> tuple[DeviceSigner, str, Token]:
    device = cloud.enroll()
    now = datetime.now(UTC)
    cloud.escrow_epoch(device.device_id, now - timedelta(hours=20), now - timedelta(hours=19))
    request_id = approve_warrant(cloud, cloud.principal("agency", org="pd"),
                                 cloud.principal("reviewer", org="legal"), device)
    wait_until("the token to be published", lambda: token_status(cloud, request_id) == "published")
    return device, request_id, _token(cloud, request_id)


def test_a_token_no_result_answered_is_published_again_with_backoff_until_a_result(
    cloud: CloudServer, broker: Broker, link: CloudMqtt
) -> None:
    releaser = cloud.service.releaser
    assert (releaser.redelivery.initial_s, releaser.redelivery.max_s) == (60, 3600)
    device, request_id, token = _published_while_nobody_listens(cloud)
    base = datetime.now(UTC)
    assert token.expires_at > base + timedelta(minutes=20)  # every probe below is before exp
    topics = DeviceTopics(device.device_id, cloud.deployment.prefix)
    inbox = Inbox()
    client = broker.client(device.device_id, inbox=inbox)
    subscribe(client, topics.release)

    assert releaser.redeliver(base + timedelta(seconds=30)) == []  # not due yet
    assert releaser.redeliver(base + timedelta(seconds=61)) == [token.jti]
    message = inbox.get()
    assert (message.topic, message.payload) == (topics.release, token.jws.encode())
    assert releaser.redeliver(base + timedelta(seconds=61)) == []  # next one waits 120 s
    assert releaser.redeliver(token.expires_at) == []  # never at or after exp
    assert releaser.redeliver(base + timedelta(seconds=200)) == [token.jti]
    assert inbox.get().payload == token.jws.encode()
    republished = [d for a, d in _audit(cloud, token.jti) if a == "token.republished"]
    assert [d["attempt"] for d in republished] == [1, 2]
    assert all(d["device"] == device.device_id for d in republished)
    assert cloud.service.core.audit.verify().entries > 0  # the chain holds (raises if not)

    # the device holds it now (deferred): a result, so re-publishing ends
    publish(client, topics.result, ResultMessage(
        jti=token.jti, status=ResultStatus.deferred, reason="clock_unsynchronized").to_bytes())
    wait_until("the token to be deferred", lambda: token_status(cloud, request_id) == "deferred")
    assert releaser.redeliver(base + timedelta(minutes=15)) == []
    assert [a for a, _ in _audit(cloud, token.jti)].count("token.republished") == 2


def test_the_history_survives_a_restart_of_the_cloud(
    cloud: CloudServer, broker: Broker, link: CloudMqtt
) -> None:
    """The backoff is read back from the audit log, not only kept in memory."""
    _, _, token = _published_while_nobody_listens(cloud)
    base = datetime.now(UTC)
    releaser = cloud.service.releaser
    assert releaser.redeliver(base + timedelta(seconds=61)) == [token.jti]
    releaser._history.clear()  # what a restarted process starts with
    [waiting] = [t for t in releaser.awaiting_result(base) if t.jti == token.jti]
    assert waiting.republished == 1
    assert releaser.redeliver(base + timedelta(seconds=100)) == []
    assert releaser.redeliver(base + timedelta(seconds=200)) == [token.jti]


def test_a_repeated_result_changes_nothing_and_a_late_deferred_moves_nothing_back(
    cloud: CloudServer, broker: Broker, link: CloudMqtt
) -> None:
    device, request_id, token = _published_while_nobody_listens(cloud)
    topics = DeviceTopics(device.device_id, cloud.deployment.prefix)
    client = broker.client(device.device_id)
    uploaded = ResultMessage(jti=token.jti, status=ResultStatus.uploaded, clips=("c1",))
    publish(client, topics.result, uploaded.to_bytes())
    wait_until("the token to be uploaded", lambda: token_status(cloud, request_id) == "uploaded")
    publish(client, topics.result, uploaded.to_bytes())  # the device answers a re-publish
    publish(client, topics.result, ResultMessage(   # an old one its outbox sent again
        jti=token.jti, status=ResultStatus.deferred, reason="clock_unsynchronized").to_bytes())
    notice = NoticeMessage(
        jti=token.jti, basis="warrant",
        case=CaseRef(request_id=request_id, docket="d", authority="a",
                     document_sha256="ab" * 32),
        window=Window(token.window_start, token.window_end), clips=("c1",),
        released_at=datetime.now(UTC).replace(microsecond=0))
    publish(client, topics.notice, notice.to_bytes())

    def notified() -> bool:  # one worker, in order: every result before it was handled
        with cloud.service.store.read() as session:
            return session.execute(select(OwnerNotice).where(
                OwnerNotice.jti == token.jti)).first() is not None

    wait_until("the owner notice", notified)
    assert token_status(cloud, request_id) == "uploaded"
    with cloud.service.store.read() as session:
        request = session.get(Request, request_id)
        assert request is not None
        assert request.status == "uploaded"
    actions = [a for a, _ in _audit(cloud, token.jti)]
    assert actions.count("token.uploaded") == 1
    [late] = [d for a, d in _audit(cloud, token.jti) if a == "token.deferred"]
    assert late["state_kept"] == "uploaded"
    assert cloud.service.core.audit.verify().entries > 0  # the chain holds (raises if not)
