"""Persistent MQTT sessions cannot be taken over by another holder of a CA certificate.

mosquitto hands an existing session to the newest connection with the same client id,
whatever certificate it presents, and the ACL is checked per user, not per client id.
A device that kept its session under its device id could be knocked off by any other
device or any owner (they all hold certificates from the deployment's CA), and the
release tokens queued for it would be dropped. The agent and the cloud stub therefore
keep their sessions under `protocol.keys.private_session_id`, derived from their own
private key file. Proved here over a real broker, with the takeover itself as the
control: the same attack with the real id does knock the device off.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from cloud_stub.mqtt import MqttOptions
from cloud_stub.services.cloud_service import CloudService
from device.release.service import link_settings
from protocol.keys import private_session_id
from protocol.topics import DeviceTopics
from tests.fixtures.broker import Broker, Inbox, publish, subscribe
from tests.fixtures.deployment import TestDeployment
from tests.fixtures.release import make_rig

WAIT_S = 10.0


def _watch_disconnects(client: mqtt.Client) -> threading.Event:
    dropped = threading.Event()

    def on_disconnect(_c: mqtt.Client, _u: Any, _f: Any, _reason: ReasonCode,
                      _p: Properties | None) -> None:
        dropped.set()

    client.on_disconnect = on_disconnect
    return dropped


def test_the_agent_and_the_cloud_keep_their_sessions_under_ids_only_their_keys_give(
    deployment: TestDeployment, tmp_path: Path
) -> None:
    rig = make_rig(deployment, tmp_path)
    topics = DeviceTopics(rig.device_id, deployment.prefix)
    settings = link_settings(rig.config, topics, lambda: b"")
    key_file = rig.config.mqtt.client_key
    assert key_file is not None
    assert settings.client_id == private_session_id(rig.device_id, key_file.read_bytes())
    assert settings.client_id.startswith(f"{rig.device_id}.")
    assert len(settings.client_id) == len(rig.device_id) + 33
    # stable across restarts (the session must survive them), different per key
    assert link_settings(rig.config, topics, lambda: b"").client_id == settings.client_id
    other = make_rig(deployment, tmp_path)
    assert link_settings(other.config, DeviceTopics(other.device_id, deployment.prefix),
                         lambda: b"").client_id.split(".")[1] != settings.client_id.split(".")[1]

    service = CloudService.open(deployment.layout.root, store_url=f"sqlite:///{tmp_path / 'c.db'}")
    try:
        options = MqttOptions.from_service(service)
        cloud_id = service.core.settings.cloud_id
    finally:
        service.close()
    assert options.client_id == private_session_id(
        cloud_id, deployment.layout.cloud_mqtt_key.read_bytes())


def test_another_certificate_holder_cannot_take_over_a_device_session(
    broker: Broker, deployment: TestDeployment, tmp_path: Path
) -> None:
    victim = make_rig(deployment, tmp_path)
    intruder = make_rig(deployment, tmp_path)
    topics = DeviceTopics(victim.device_id, deployment.prefix)
    real_id = link_settings(victim.config, topics, lambda: b"").client_id

    inbox = Inbox()
    device = broker.client(victim.device_id, client_id=real_id, clean_start=False,
                           session_expiry_s=3600, inbox=inbox)
    dropped = _watch_disconnects(device)
    subscribe(device, topics.release)
    cloud = broker.client("cloud")

    # the ids another holder could guess: the device id, and the device id with a tag
    for guess in (victim.device_id, f"{victim.device_id}.{'0' * 32}",
                  f"{victim.device_id}-agent"):
        broker.client(intruder.device_id, client_id=guess)
        publish(cloud, topics.release, f"token after {guess}".encode())
        assert inbox.get().payload == f"token after {guess}".encode()
        assert not dropped.is_set()

    # control: with the real id the same intruder does take the session over
    broker.client(intruder.device_id, client_id=real_id, clean_start=False,
                  session_expiry_s=3600)
    assert dropped.wait(WAIT_S)
