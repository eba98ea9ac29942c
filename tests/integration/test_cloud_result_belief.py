"""The cloud believes a device result only for the token bytes it issued (docs/protocol.md,
"Which token a result is about"), against a real mosquitto with the deployment's TLS and
ACL; the device side is an MQTT client presenting the device's certificate.

Not believed, and audited ``token.result_ignored``: a result naming the sha256 of other
bytes than the token issued under its jti; a rejection made before the signatures
verified (``bad_signature``) under a claimed jti from a device that names no sha256.
Believed (the controls): the same rejection under the issued bytes' own id
(``sha256-<32 hex>``), and a result naming the issued bytes' sha256.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from cloud_stub.mqtt import CloudMqtt
from cloud_stub.store.models import AuditRow, Token
from protocol.messages import ResultMessage, ResultStatus
from protocol.topics import DeviceTopics
from tests.fixtures.broker import Broker, publish
from tests.fixtures.cloud import CloudServer
from tests.fixtures.waiting import wait_until
from tests.integration.test_cloud_mqtt import approve_warrant, token_status

pytestmark = pytest.mark.broker


def _token(cloud: CloudServer, request_id: str) -> Token:
    with cloud.service.store.read() as session:
        return session.execute(select(Token).where(Token.request_id == request_id)).scalar_one()


def _ignored(cloud: CloudServer, jti: str) -> list[str]:
    with cloud.service.store.read() as session:
        return [str(d["why"]) for d in session.execute(
            select(AuditRow.detail).where(AuditRow.action == "token.result_ignored",
                                          AuditRow.subject == f"token:{jti}")
            .order_by(AuditRow.seq)).scalars()]


def test_a_result_is_believed_only_for_the_bytes_issued(
    cloud: CloudServer, broker: Broker, link: CloudMqtt
) -> None:
    device = cloud.enroll()
    now = datetime.now(UTC)
    cloud.escrow_epoch(device.device_id, now - timedelta(hours=20), now - timedelta(hours=19))
    topics = DeviceTopics(device.device_id, cloud.deployment.prefix)
    client = broker.client(device.device_id)
    agency = cloud.principal("agency", org="metro-pd")
    reviewer = cloud.principal("reviewer", org="legal")
    request_id = approve_warrant(cloud, agency, reviewer, device)
    wait_until("the token published", lambda: token_status(cloud, request_id) == "published",
               timeout=10)
    token = _token(cloud, request_id)
    issued = hashlib.sha256(token.jws.encode()).hexdigest()
    other = hashlib.sha256(b"forged bytes claiming the jti").hexdigest()

    def send(message: ResultMessage) -> None:
        publish(client, topics.result, message.to_bytes())

    send(ResultMessage(jti=token.jti, status=ResultStatus.rejected, reason="bad_signature",
                       token_sha256=other))
    wait_until("one ignored result", lambda: len(_ignored(cloud, token.jti)) == 1, timeout=10)
    send(ResultMessage(jti=token.jti, status=ResultStatus.rejected, reason="bad_signature"))
    wait_until("two ignored results", lambda: len(_ignored(cloud, token.jti)) == 2, timeout=10)
    assert token_status(cloud, request_id) == "published"
    first, second = _ignored(cloud, token.jti)
    assert "other bytes" in first
    assert "before the signatures verified" in second

    # the controls: the issued bytes' own id, and a result naming the issued bytes
    send(ResultMessage(jti=f"sha256-{issued[:32]}", status=ResultStatus.deferred,
                       reason="clock_unsynchronized", token_sha256=issued))
    wait_until("the token deferred", lambda: token_status(cloud, request_id) == "deferred",
               timeout=10)
    send(ResultMessage(jti=token.jti, status=ResultStatus.uploaded, token_sha256=issued))
    wait_until("the token uploaded", lambda: token_status(cloud, request_id) == "uploaded",
               timeout=10)
    assert len(_ignored(cloud, token.jti)) == 2
