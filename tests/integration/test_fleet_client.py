"""The fleet benchmark's light MQTT client (bench/fleet_client.py) on the real broker:
a device session with its own certificate and the cloud's session exchange a release
and a result through the deployment's TLS and ACL, and a certificate from another CA is
refused."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import pytest

from bench.fleet_client import FleetClientError, MessageHandler, MqttSession
from cloud_stub.provision.ca import CertificateAuthority
from protocol.tls import client_context
from protocol.topics import DeviceTopics, all_devices
from tests.fixtures.broker import Broker
from tests.fixtures.deployment import TestDeployment

WAIT_S = 10.0


def _inbox() -> tuple[asyncio.Queue[tuple[str, bytes]], MessageHandler]:
    queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()

    def on_message(_session: MqttSession, topic: str, payload: bytes) -> None:
        queue.put_nowait((topic, payload))

    return queue, on_message


def test_device_and_cloud_sessions_exchange_through_the_acl(
        deployment: TestDeployment, broker: Broker) -> None:
    device_id = deployment.new_device_id("fleet")
    bundle = deployment.enroll_device(device_id)
    topics = DeviceTopics(device_id, deployment.prefix)
    cloud = deployment.credentials("cloud")

    async def exchange() -> tuple[tuple[str, bytes], tuple[str, bytes]]:
        device_inbox, device_handler = _inbox()
        cloud_inbox, cloud_handler = _inbox()
        device = MqttSession(device_id, client_context(
            bundle.ca_cert, bundle.mqtt_cert, bundle.mqtt_key), device_handler)
        echo = MqttSession("fleet-test-cloud", client_context(
            cloud.ca_cert, cloud.cert, cloud.key), cloud_handler)
        try:
            await device.connect(broker.host, broker.port)
            await device.subscribe([topics.release])
            await echo.connect(broker.host, broker.port)
            await echo.subscribe([all_devices(deployment.prefix, "result")])
            await asyncio.wait_for(echo.publish(topics.release, b"token"), WAIT_S)
            received = await asyncio.wait_for(device_inbox.get(), WAIT_S)
            # Denied by the ACL (a device writes only its own leaves): dropped silently.
            await asyncio.wait_for(device.publish(f"{deployment.prefix}/other/result",
                                                  b"forged"), WAIT_S)
            await asyncio.wait_for(device.publish(topics.result, b"answer"), WAIT_S)
            answered = await asyncio.wait_for(cloud_inbox.get(), WAIT_S)
            assert cloud_inbox.empty()
            return received, answered
        finally:
            await device.close()
            await echo.close()

    received, answered = asyncio.run(exchange())
    assert received == (topics.release, b"token")
    assert answered == (topics.result, b"answer")


def test_a_certificate_from_another_ca_is_refused(
        deployment: TestDeployment, broker: Broker, tmp_path: Path) -> None:
    now = dt.datetime.now(dt.UTC)
    stranger = CertificateAuthority.create(organization="stranger", now=now)
    issued = stranger.issue_client(common_name=deployment.new_device_id("fleet"), now=now)
    (tmp_path / "c.pem").write_bytes(issued.cert_pem)
    (tmp_path / "c.key").write_bytes(issued.key_pem)
    _, handler = _inbox()
    session = MqttSession("stranger", client_context(
        deployment.layout.ca_cert, tmp_path / "c.pem", tmp_path / "c.key"), handler)

    async def connect() -> None:
        try:
            await session.connect(broker.host, broker.port, timeout_s=WAIT_S)
        finally:
            await session.close()

    with pytest.raises((FleetClientError, OSError)):
        asyncio.run(connect())
