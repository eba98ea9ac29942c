"""Escrows taken in batches (docs/architecture.md, "Escrows in batches").

The cloud's MQTT worker stores the escrows queued together in one transaction and
publishes their escrow-acks only after the commit. Against a real mosquitto with the
deployment's TLS and ACL: a burst from many devices is stored and acknowledged in full,
a bad escrow in the middle of it is refused alone, and when the store fails the batch no
device hears an ack (it would drop its only copy of the epoch key). The store's own
batch semantics are also checked without the broker, where the batch is certain.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from sqlalchemy import func, select, text

from cloud_stub.errors import HostileInputError, StoreError
from cloud_stub.mqtt import CloudMqtt
from cloud_stub.services.escrow import EpochEscrow
from cloud_stub.store.models import AuditRow, EscrowedEpoch
from protocol.messages import EscrowMessage
from protocol.topics import DeviceTopics
from tests.fixtures.broker import Broker, subscribe
from tests.fixtures.cloud import CloudServer, DeviceSigner
from tests.fixtures.waiting import wait_until
from tests.integration.test_cloud_mqtt import escrow_message

pytestmark = pytest.mark.broker

DEVICES = 8
EPOCHS_PER_DEVICE = 4
REFUSE_ESCROWS = ("CREATE TRIGGER refuse_escrows BEFORE INSERT ON escrowed_epochs "
                  "BEGIN SELECT RAISE(ABORT, 'escrow storage refused by the test'); END")


def stored(cloud: CloudServer, device_id: str, epoch: str) -> bool:
    with cloud.service.store.transaction() as session:
        return session.get(EscrowedEpoch, (device_id, epoch)) is not None


def audited_escrows(cloud: CloudServer) -> int:
    with cloud.service.store.transaction() as session:
        return int(session.execute(select(func.count()).select_from(AuditRow)
                                   .where(AuditRow.action == "escrow.stored")).scalar_one())


class AckWatch:
    """Every escrow-ack the devices receive, and whether its row was committed when the
    ack arrived (an ack before the commit would let a device drop its only copy)."""

    def __init__(self, cloud: CloudServer) -> None:
        self.cloud = cloud
        self.acked: set[tuple[str, str]] = set()
        self.before_commit: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def attach(self, client: mqtt.Client, device_id: str) -> None:
        def on_message(_c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
            epoch = str(json.loads(msg.payload)["epoch"])
            committed = stored(self.cloud, device_id, epoch)
            with self._lock:
                self.acked.add((device_id, epoch))
                if not committed:
                    self.before_commit.append((device_id, epoch))

        client.on_message = on_message

    def count(self) -> int:
        with self._lock:
            return len(self.acked)


def connect_devices(cloud: CloudServer, broker: Broker, watch: AckWatch,
                    count: int) -> list[tuple[DeviceSigner, mqtt.Client]]:
    out = []
    for _ in range(count):
        device = cloud.enroll()
        client = broker.client(device.device_id)
        watch.attach(client, device.device_id)
        subscribe(client, DeviceTopics(device.device_id, cloud.deployment.prefix).escrow_ack)
        out.append((device, client))
    return out


def burst(cloud: CloudServer, devices: list[tuple[DeviceSigner, mqtt.Client]],
          per_device: int) -> list[tuple[str, EscrowMessage]]:
    """Publish `per_device` escrows from every device at once, interleaved; wait for the
    broker to take them all."""
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=40)
    sent: list[tuple[str, EscrowMessage]] = []
    infos = []
    for n in range(per_device):
        for device, client in devices:
            message = escrow_message(cloud, device.device_id, start + timedelta(hours=n))
            topic = DeviceTopics(device.device_id, cloud.deployment.prefix).escrow
            infos.append(client.publish(topic, message.to_bytes(), qos=1))
            sent.append((device.device_id, message))
    for info in infos:
        info.wait_for_publish(timeout=10)
    return sent


def test_a_burst_from_many_devices_is_stored_and_acknowledged_in_full(
    cloud: CloudServer, broker: Broker, link: CloudMqtt
) -> None:
    watch = AckWatch(cloud)
    devices = connect_devices(cloud, broker, watch, DEVICES)
    sent = burst(cloud, devices, EPOCHS_PER_DEVICE)
    wait_until("every escrow to be acknowledged", lambda: watch.count() == len(sent),
               timeout=30)
    assert watch.acked == {(device_id, m.epoch) for device_id, m in sent}
    assert watch.before_commit == []
    assert all(stored(cloud, device_id, m.epoch) for device_id, m in sent)
    assert audited_escrows(cloud) == len(sent)


def test_a_bad_escrow_in_a_burst_is_refused_alone(
    cloud: CloudServer, broker: Broker, link: CloudMqtt, caplog: pytest.LogCaptureFixture
) -> None:
    watch = AckWatch(cloud)
    devices = connect_devices(cloud, broker, watch, DEVICES)
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=60)
    liar, liar_client = devices[DEVICES // 2]
    victim = devices[0][0].device_id
    liar_topic = DeviceTopics(liar.device_id, cloud.deployment.prefix).escrow
    forged = escrow_message(cloud, victim, start)  # parses, refused by the store's check
    infos = []
    good: list[tuple[str, EscrowMessage]] = []
    with caplog.at_level(logging.WARNING, logger="cloud_stub.mqtt"):
        for n, (device, client) in enumerate(devices):
            message = escrow_message(cloud, device.device_id, start + timedelta(hours=1))
            topic = DeviceTopics(device.device_id, cloud.deployment.prefix).escrow
            infos.append(client.publish(topic, message.to_bytes(), qos=1))
            good.append((device.device_id, message))
            if n == DEVICES // 2:  # in the middle of the burst: a forgery and garbage
                infos.append(liar_client.publish(liar_topic, forged.to_bytes(), qos=1))
                infos.append(liar_client.publish(liar_topic, b'{"v": 1, "epoch": 5}', qos=1))
        for info in infos:
            info.wait_for_publish(timeout=10)
        wait_until("every good escrow to be acknowledged",
                   lambda: watch.count() == len(good), timeout=30)
        wait_until("both bad escrows to be dropped", lambda: sum(
            "dropped message on" in r.getMessage() for r in caplog.records) == 2)
    assert watch.acked == {(device_id, m.epoch) for device_id, m in good}
    assert watch.before_commit == []
    assert not stored(cloud, victim, forged.epoch)
    assert audited_escrows(cloud) == len(good)
    assert any("another device" in r.getMessage() for r in caplog.records)


def test_no_ack_when_the_store_fails_the_batch(
    cloud: CloudServer, broker: Broker, link: CloudMqtt, caplog: pytest.LogCaptureFixture
) -> None:
    watch = AckWatch(cloud)
    devices = connect_devices(cloud, broker, watch, DEVICES)
    with cloud.service.store.transaction() as session:
        session.execute(text(REFUSE_ESCROWS))
    with caplog.at_level(logging.ERROR, logger="cloud_stub.mqtt"):
        sent = burst(cloud, devices, 2)
        wait_until("the link to fail storing the burst", lambda: sum(
            int(r.getMessage().split()[0]) for r in caplog.records
            if "escrows not stored" in r.getMessage()) == len(sent), timeout=30)
    with cloud.service.store.transaction() as session:
        session.execute(text("DROP TRIGGER refuse_escrows"))
    # A later escrow is stored and acknowledged: the worker went past the failed ones,
    # and none of them was acknowledged or written.
    device, client = devices[0]
    later = escrow_message(cloud, device.device_id, datetime.now(UTC) - timedelta(hours=2))
    client.publish(DeviceTopics(device.device_id, cloud.deployment.prefix).escrow,
                   later.to_bytes(), qos=1).wait_for_publish(timeout=10)
    wait_until("the later escrow's ack", lambda: watch.count() == 1, timeout=30)
    time.sleep(0.2)
    assert watch.acked == {(device.device_id, later.epoch)}
    assert not any(stored(cloud, device_id, m.epoch) for device_id, m in sent)
    assert audited_escrows(cloud) == 1


def test_the_store_refuses_one_escrow_of_a_batch_and_keeps_the_others(
    cloud: CloudServer,
) -> None:
    first, second = cloud.enroll(), cloud.enroll()
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=10)

    def item(device_id: str, hours: int, *, named: str | None = None) -> EpochEscrow:
        m = escrow_message(cloud, named or device_id, start + timedelta(hours=hours))
        return EpochEscrow(device_id=m.device, epoch_id=m.epoch, start=m.start, end=m.end,
                           recipient=m.recipient, sealed_b64=m.sealed)

    kept = item(first.device_id, 0)
    conflict = EpochEscrow(device_id=kept.device_id, epoch_id=kept.epoch_id, start=kept.start,
                           end=kept.end, recipient=kept.recipient,
                           sealed_b64=item(first.device_id, 0).sealed_b64)
    batch = [
        (first.device_id, kept),
        (second.device_id, item(first.device_id, 1)),  # names another device than its topic
        (first.device_id, conflict),  # the same epoch again with other content
        (second.device_id, item(second.device_id, 2)),
        (first.device_id, kept),  # a redelivery inside the batch: stored once
        ("cam-ghost-0", item("cam-ghost-0", 5)),  # never enrolled
    ]
    verdicts = cloud.service.events.escrows_received(batch)
    assert [v is None for v in verdicts] == [True, False, False, True, True, False]
    assert isinstance(verdicts[1], HostileInputError)
    assert verdicts[1].code == "device_mismatch"
    assert isinstance(verdicts[2], HostileInputError)
    assert verdicts[2].code == "escrow_conflict"
    assert isinstance(verdicts[5], HostileInputError)
    assert verdicts[5].code == "unknown_device"
    assert stored(cloud, first.device_id, kept.epoch_id)
    assert stored(cloud, second.device_id, batch[3][1].epoch_id)
    assert audited_escrows(cloud) == 2
    with cloud.service.store.transaction() as session:
        row = session.get(EscrowedEpoch, (first.device_id, kept.epoch_id))
        assert row is not None
        assert row.sealed == kept.sealed_b64

    with cloud.service.store.transaction() as session:
        session.execute(text(REFUSE_ESCROWS))
    with pytest.raises(StoreError):
        cloud.service.events.escrows_received([(second.device_id, item(second.device_id, 3)),
                                               (first.device_id, item(first.device_id, 4))])
    assert audited_escrows(cloud) == 2
