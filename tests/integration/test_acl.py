"""The broker's TLS and ACL, as a deployment renders them, against a real mosquitto.

Every absence is proven with a positive control on the same connection: MQTT delivers
one publisher's messages in order, and each forbidden publish is acknowledged by the
broker before the control message is even sent, so once the control has arrived the
forbidden message can no longer be in flight.
"""

from __future__ import annotations

import datetime as dt
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from cloud_stub.provision.ca import CertificateAuthority
from cloud_stub.provision.deployment import BrokerPaths, InitOptions, init_deployment
from cloud_stub.provision.enroll import EnrollOptions, enroll_device
from cloud_stub.provision.keys import new_age_key, write_private, write_public
from protocol.topics import DeviceTopics, all_devices
from tests.fixtures.broker import (
    CONNACK_OK,
    CONNECT,
    RELOAD_LOG_LINE,
    WAIT_S,
    Broker,
    Inbox,
    free_port,
    publish,
    raw_connect,
    subscribe,
    tls_context,
)
from tests.fixtures.deployment import ClientCredentials, TestDeployment

pytestmark = pytest.mark.broker

NOW = dt.datetime.now(dt.UTC)
PROTOCOLS = [MQTTProtocolVersion.MQTTv5, MQTTProtocolVersion.MQTTv311]


def _topics(deployment: TestDeployment, device_id: str) -> DeviceTopics:
    return DeviceTopics(device_id, prefix=deployment.prefix)


def test_device_cannot_receive_another_devices_release(
    broker: Broker, deployment: TestDeployment
) -> None:
    """Attack: a compromised doorbell listens for its neighbour's release tokens."""
    a = deployment.enroll_device(deployment.new_device_id("a")).root.parent.name
    b = deployment.enroll_device(deployment.new_device_id("b")).root.parent.name
    a_topics, b_topics = _topics(deployment, a), _topics(deployment, b)

    cloud = broker.client("cloud")
    device_a = broker.client(a)
    inbox_a = Inbox(device_a)
    subscribe(device_a, b_topics.release)  # the neighbour's topic by name
    subscribe(device_a, all_devices(deployment.prefix, "release"))  # and by wildcard
    subscribe(device_a, f"{deployment.prefix}/#")
    subscribe(device_a, a_topics.release)
    device_b = broker.client(b)
    inbox_b = Inbox(device_b)
    subscribe(device_b, b_topics.release)

    publish(cloud, b_topics.release, b"token for b")
    publish(cloud, a_topics.release, b"token for a")

    assert inbox_b.get().payload == b"token for b"  # B's token really went out
    first = inbox_a.get()
    assert (first.topic, first.payload) == (a_topics.release, b"token for a")
    assert all(m.topic != b_topics.release for m in inbox_a.drain())


@pytest.mark.parametrize("protocol", PROTOCOLS, ids=["mqtt5", "mqtt311"])
def test_device_cannot_publish_to_its_own_release_topic(
    broker: Broker, deployment: TestDeployment, protocol: MQTTProtocolVersion
) -> None:
    """Attack: a device (or whoever holds its key) forges a release token for itself."""
    device_id = deployment.enroll_device(deployment.new_device_id("forger")).root.parent.name
    topics = _topics(deployment, device_id)
    cloud = broker.client("cloud")
    listener = broker.client(device_id)  # the only identity that may read this topic
    inbox = Inbox(listener)
    subscribe(listener, topics.release)

    forger = broker.client(device_id, protocol=protocol)
    reason = publish(forger, topics.release, b"forged token")
    if protocol == MQTTProtocolVersion.MQTTv5:
        assert reason is not None
        assert reason.getName() == "Not authorized"
    publish(forger, topics.escrow_ack, b'{"epoch": "forged"}')
    publish(cloud, topics.release, b"real token")

    message = inbox.get()
    assert message.payload == b"real token"
    assert inbox.drain() == []


def test_device_cannot_write_as_another_device(broker: Broker, deployment: TestDeployment) -> None:
    """Attack: device B forges A's result, escrow and notice to mislead the cloud."""
    a = deployment.enroll_device(deployment.new_device_id("honest")).root.parent.name
    b = deployment.enroll_device(deployment.new_device_id("liar")).root.parent.name
    a_topics = _topics(deployment, a)
    cloud = broker.client("cloud")
    inbox = Inbox(cloud)
    for leaf in ("result", "escrow", "notice", "status"):
        subscribe(cloud, all_devices(deployment.prefix, leaf))

    liar = broker.client(b)
    for topic in (a_topics.result, a_topics.escrow, a_topics.notice, a_topics.status):
        publish(liar, topic, b"forged")
    honest = broker.client(a)
    publish(honest, a_topics.result, b"genuine")

    message = inbox.get()
    assert (message.topic, message.payload) == (a_topics.result, b"genuine")
    assert inbox.drain() == []


# The owners' users: tests/integration/test_owner_acl.py.


# --- TLS: who may connect at all -------------------------------------------------------


def test_client_without_certificate_is_refused(broker: Broker, deployment: TestDeployment) -> None:
    device_id = deployment.enroll_device(deployment.new_device_id("ok")).root.parent.name
    assert broker.raw_connect(tls_context(deployment.credentials(device_id), broker.ca)) == (
        CONNACK_OK
    )  # positive control: same routine, with a certificate
    assert broker.raw_connect(tls_context(None, broker.ca)) == b""


def test_client_with_certificate_from_another_ca_is_refused(
    broker: Broker, deployment: TestDeployment, tmp_path: Path
) -> None:
    """Attack: a self-made CA issues a certificate claiming an enrolled device's id."""
    victim = deployment.enroll_device(deployment.new_device_id("victim")).root.parent.name
    now = dt.datetime.now(dt.UTC)
    rogue_ca = CertificateAuthority.create(organization="sealed-doorbell", now=now)
    rogue = rogue_ca.issue_client(common_name=victim, now=now)
    write_private(tmp_path / "rogue.key", rogue.key_pem)
    write_public(tmp_path / "rogue.pem", rogue.cert_pem)
    creds = ClientCredentials(broker.ca, tmp_path / "rogue.pem", tmp_path / "rogue.key")

    assert broker.raw_connect(tls_context(deployment.credentials(victim), broker.ca)) == (
        CONNACK_OK
    )
    assert broker.raw_connect(tls_context(creds, broker.ca)) == b""


def test_plain_mqtt_is_refused(broker: Broker) -> None:
    with socket.create_connection((broker.host, broker.port), timeout=5) as raw:
        raw.sendall(CONNECT)
        try:
            answer = raw.recv(4)
        except ConnectionResetError:
            answer = b""
    assert not answer.startswith(b"\x20")


def test_restart_keeps_queued_messages(broker: Broker, deployment: TestDeployment) -> None:
    """The harness's restart keeps persistence: a token queued for an offline device
    survives a broker restart (what the release engineer's offline test relies on)."""
    device_id = deployment.enroll_device(deployment.new_device_id("sleepy")).root.parent.name
    topics = _topics(deployment, device_id)
    client_id = f"{device_id}-agent"
    # clean_start=False from the first connection: mosquitto 2.0.11 does not restore,
    # after a restart, a session that began with clean_start=True (even with an expiry).
    device = broker.client(device_id, client_id=client_id, clean_start=False, session_expiry_s=3600)
    subscribe(device, topics.release)
    device.disconnect()
    device.loop_stop()
    publish(broker.client("cloud"), topics.release, b"queued token")

    broker.restart()

    inbox = Inbox()
    broker.client(
        device_id, client_id=client_id, clean_start=False, session_expiry_s=3600, inbox=inbox
    )
    assert inbox.get().payload == b"queued token"


def _paho_client(port: int, creds: ClientCredentials, inbox: Inbox) -> mqtt.Client:
    """A connected MQTT 5 client of a broker the harness did not start."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"t-{os.urandom(4).hex()}",
                         protocol=MQTTProtocolVersion.MQTTv5)
    client.tls_set_context(tls_context(creds, creds.ca_cert))
    inbox.attach(client)
    connected = threading.Event()
    client.on_connect = lambda *_args: connected.set()
    client.connect("127.0.0.1", port)
    client.loop_start()
    assert connected.wait(WAIT_S)
    return client


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping privileges needs root")
def test_production_config_runs_as_the_mosquitto_user(tmp_path: Path) -> None:
    """The config exactly as `init` renders it (user mosquitto, broker/ handed to that
    user) starts, drops root, and serves an enrolled device; after an enrolment (as
    root) and SIGHUP, the broker, now the mosquitto user, re-reads the ACL and the new
    device's owner reads its notice."""
    try:
        mosquitto_user = pwd.getpwnam("mosquitto")
    except KeyError:
        pytest.skip("no mosquitto system user")
    # pytest's temporary tree is 0700 root; a production deployment directory is not.
    base = Path(tempfile.mkdtemp(prefix="doorbell-prod-"))
    try:
        base.chmod(0o755)
        port = free_port()
        layout = init_deployment(base / "deployment",
                                 InitOptions(prefix="prod/v1", broker_port=port), now=NOW)
        paths = BrokerPaths(layout)
        assert f"listener {port} 127.0.0.1\n" in paths.config.read_text()
        assert "user mosquitto\n" in paths.config.read_text()
        assert paths.directory.stat().st_uid == mosquitto_user.pw_uid
        owner = new_age_key().recipient
        enroll_device(layout, "porch", EnrollOptions(owner_recipient=owner), now=NOW)
        log_path = base / "mosquitto.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(["/usr/sbin/mosquitto", "-c", str(paths.config)],
                                       stdout=log, stderr=subprocess.STDOUT)
        clients: list[mqtt.Client] = []
        try:
            context = tls_context(
                ClientCredentials(layout.ca_cert, layout.device_bundle("porch").mqtt_cert,
                                  layout.device_bundle("porch").mqtt_key),
                layout.ca_cert,
            )
            deadline = time.monotonic() + 10
            answer = b""
            while time.monotonic() < deadline and process.poll() is None:
                try:
                    answer = raw_connect("127.0.0.1", port, context)
                    break
                except OSError:
                    time.sleep(0.05)
            assert answer == CONNACK_OK
            status = Path(f"/proc/{process.pid}/status").read_text()
            uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
            assert uid_line.split()[1:3] == [str(mosquitto_user.pw_uid)] * 2

            # Enrol while it runs, publish the new device's notice, reload.
            enroll_device(layout, "yard", EnrollOptions(owner_recipient=owner), now=NOW)
            yard = layout.device_bundle("yard")
            device = _paho_client(port, ClientCredentials(layout.ca_cert, yard.mqtt_cert,
                                                          yard.mqtt_key), Inbox())
            clients.append(device)
            publish(device, DeviceTopics("yard", prefix="prod/v1").notice, b"n", retain=True)
            process.send_signal(signal.SIGHUP)
            hang_guard = time.monotonic() + WAIT_S
            while RELOAD_LOG_LINE not in log_path.read_text(errors="replace"):
                assert process.poll() is None, log_path.read_text(errors="replace")
                assert time.monotonic() < hang_guard, "mosquitto did not reload"
                time.sleep(0.05)
            assert raw_connect("127.0.0.1", port, context) == CONNACK_OK
            owner_bundle = layout.owner_bundle("yard")
            inbox = Inbox()
            owner_client = _paho_client(
                port, ClientCredentials(owner_bundle.ca_cert, owner_bundle.mqtt_cert,
                                        owner_bundle.mqtt_key), inbox)
            clients.append(owner_client)
            subscribe(owner_client, DeviceTopics("yard", prefix="prod/v1").notice)
            assert inbox.get().payload == b"n"
        finally:
            for client in clients:
                client.disconnect()
                client.loop_stop()
            process.terminate()
            process.wait(timeout=10)
        output = log_path.read_text(errors="replace")
        assert process.returncode == 0, output
        assert (paths.data_dir / "mosquitto.db").is_file()  # written as mosquitto at exit
    finally:
        shutil.rmtree(base, ignore_errors=True)
