"""The owners' MQTT users, as `devices enroll` issues them, against a real mosquitto.

Each enrolment issues `owner.<id>` a certificate and renders the broker's ACL again from
the device registry; the owner reads that device's `notice` and `status` and nothing
else. The owners connect with the files of their owner bundle, and find their topics in
its owner.toml, as an owner's application would.

Every absence is proven with a positive control on the same subscriber: MQTT delivers
the messages routed to one client in order, and each forbidden publish is acknowledged
by the broker (after routing or dropping it) before the control is even sent, so once
the control has arrived the forbidden message can no longer be in flight.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from protocol.bundle import OwnerBundleLayout
from protocol.topics import DeviceTopics, all_devices
from tests.fixtures.broker import Broker, Inbox, Message, publish, running_broker, subscribe
from tests.fixtures.deployment import ClientCredentials, TestDeployment

pytestmark = pytest.mark.broker


def _owner_credentials(owner: OwnerBundleLayout) -> ClientCredentials:
    return ClientCredentials(owner.ca_cert, owner.mqtt_cert, owner.mqtt_key)


def _owner_topics(owner: OwnerBundleLayout) -> tuple[str, str]:
    """(notice, status) as the owner's application reads them from owner.toml."""
    topics = tomllib.loads(owner.config.read_text())["topics"]
    return topics["notice"], topics["status"]


def _owner(broker: Broker, deployment: TestDeployment, device_id: str,
           inbox: Inbox | None = None) -> mqtt.Client:
    """A client presenting the owner bundle of `device_id`."""
    owner = deployment.layout.owner_bundle(device_id)
    return broker.client(f"owner.{device_id}", credentials=_owner_credentials(owner),
                         inbox=inbox)


def _until(inbox: Inbox, payload: bytes) -> list[Message]:
    """Every message up to and including the first carrying `payload` (the control)."""
    seen = []
    while True:
        message = inbox.get()
        seen.append(message)
        if message.payload == payload:
            return seen


@dataclass(frozen=True, slots=True)
class Households:
    """Two enrolled devices, A and B, each with its owner, and a broker started after both
    enrolments (so the ACL it loaded names both owners)."""

    broker: Broker
    deployment: TestDeployment
    a: str
    b: str

    @property
    def a_topics(self) -> DeviceTopics:
        return DeviceTopics(self.a, prefix=self.deployment.prefix)

    @property
    def b_topics(self) -> DeviceTopics:
        return DeviceTopics(self.b, prefix=self.deployment.prefix)


@pytest.fixture
def households(deployment: TestDeployment, tmp_path: Path) -> Iterator[Households]:
    a = deployment.new_device_id("home-a")
    b = deployment.new_device_id("home-b")
    deployment.enroll_device(a)
    deployment.enroll_device(b)
    with running_broker(deployment, tmp_path / "broker") as broker:
        yield Households(broker=broker, deployment=deployment, a=a, b=b)


def test_owner_reads_its_devices_retained_notice_and_status(households: Households) -> None:
    """The owner's application, connecting after the fact, finds the device's last notice
    and health retained on the topics its owner.toml names."""
    h = households
    owner_bundle = h.deployment.layout.owner_bundle(h.a)
    notice, status = _owner_topics(owner_bundle)
    assert (notice, status) == (h.a_topics.notice, h.a_topics.status)
    device = h.broker.client(h.a)
    publish(device, notice, b'{"jti": "t-1"}', retain=True)
    publish(device, status, b'{"state": "online"}', retain=True)

    inbox = Inbox()
    owner = _owner(h.broker, h.deployment, h.a, inbox)
    subscribe(owner, notice)
    subscribe(owner, status)

    received = {(m.topic, m.payload, m.retain) for m in (inbox.get(), inbox.get())}
    assert received == {(notice, b'{"jti": "t-1"}', True), (status, b'{"state": "online"}', True)}


def test_owner_cannot_read_another_households_notice_or_status(households: Households) -> None:
    """Attack: the owner of A reads B's releases and health, by name or by wildcard."""
    h = households
    a_device, b_device = h.broker.client(h.a), h.broker.client(h.b)
    publish(b_device, h.b_topics.notice, b"b retained notice", retain=True)
    publish(b_device, h.b_topics.status, b"b retained status", retain=True)
    publish(a_device, h.a_topics.notice, b"a retained notice", retain=True)

    inbox = Inbox()
    owner = _owner(h.broker, h.deployment, h.a, inbox)
    prefix = h.deployment.prefix
    for topic in (h.b_topics.notice, h.b_topics.status, all_devices(prefix, "notice"),
                  all_devices(prefix, "status"), f"{prefix}/+/#", f"{prefix}/#", "#"):
        subscribe(owner, topic)
    b_inbox = Inbox()  # B's own owner: B's messages really go out
    subscribe(_owner(h.broker, h.deployment, h.b, b_inbox), f"{prefix}/#")
    publish(b_device, h.b_topics.notice, b"b live notice")
    publish(b_device, h.b_topics.status, b"b live status")
    publish(a_device, h.a_topics.status, b"a live status")  # the control, last

    seen = _until(inbox, b"a live status")
    seen += inbox.drain()
    assert {m.topic for m in seen} == {h.a_topics.notice, h.a_topics.status}
    assert b"a retained notice" in {m.payload for m in seen}  # retained: A's only
    assert not [m for m in seen if h.b in m.topic]
    b_seen = [m.payload for m in _until(b_inbox, b"b live status")]
    assert {b"b retained notice", b"b retained status", b"b live notice"} <= set(b_seen)
    assert not [m for m in b_seen if m.startswith(b"a ")]


def test_owner_cannot_publish_to_its_devices_topics(households: Households) -> None:
    """Attack: whoever holds the owner's key forges the device's notice (to hide or fake
    a release), its result or health, a release token, or an escrow acknowledgement."""
    h = households
    t = h.a_topics
    device = h.broker.client(h.a)
    publish(device, t.notice, b"genuine notice", retain=True)
    publish(device, t.status, b"genuine status", retain=True)
    cloud = h.broker.client("cloud")
    cloud_inbox = Inbox(cloud)
    for topic in (t.notice, t.status, t.result, t.escrow):
        subscribe(cloud, topic)
    device_inbox = Inbox(device)
    subscribe(device, t.release)
    subscribe(device, t.escrow_ack)
    assert {cloud_inbox.get().payload, cloud_inbox.get().payload} == {
        b"genuine notice", b"genuine status"}  # the retained ones, on subscribing

    owner = _owner(h.broker, h.deployment, h.a)
    for topic in (t.notice, t.status):
        reason = publish(owner, topic, b"forged", retain=True)
        assert reason is not None
        assert reason.getName() == "Not authorized"
    for topic in (t.result, t.escrow, t.release, t.escrow_ack):
        reason = publish(owner, topic, b"forged")
        assert reason is not None
        assert reason.getName() == "Not authorized"
    publish(device, t.result, b"genuine result")
    publish(cloud, t.release, b"genuine token")

    assert cloud_inbox.get().payload == b"genuine result"
    assert cloud_inbox.drain() == []
    assert device_inbox.get().payload == b"genuine token"
    assert device_inbox.drain() == []
    # The retained notice and status are the device's still.
    fresh = Inbox()
    reader = h.broker.client("cloud", inbox=fresh)
    subscribe(reader, t.notice)
    subscribe(reader, t.status)
    assert {(m.payload, m.retain) for m in (fresh.get(), fresh.get())} == {
        (b"genuine notice", True), (b"genuine status", True)}


def test_owner_writes_nothing_under_its_own_name(households: Households) -> None:
    """Attack: the owner of A uses the ACL's device patterns, which substitute its own
    username, to publish a status or result as the "device" owner.<A> to the cloud.

    Control: a certificate the ACL does not name (CN owner.<not enrolled>) does get
    those pattern rights, so it is the owner stanza's deny that takes them away."""
    h = households
    prefix = h.deployment.prefix
    cloud = h.broker.client("cloud")
    inbox = Inbox(cloud)
    for leaf in ("result", "escrow", "status", "notice"):
        subscribe(cloud, all_devices(prefix, leaf))

    owner = _owner(h.broker, h.deployment, h.a)
    own = DeviceTopics(f"owner.{h.a}", prefix=prefix)
    for topic in (own.result, own.escrow, own.status, own.notice):
        reason = publish(owner, topic, b"forged")
        assert reason is not None
        assert reason.getName() == "Not authorized"
    stranger = f"owner.{h.deployment.new_device_id('never-enrolled')}"
    unnamed = h.broker.client(stranger)
    publish(unnamed, DeviceTopics(stranger, prefix=prefix).status, b"unnamed status")
    publish(h.broker.client(h.a), h.a_topics.status, b"genuine status")

    assert [(m.topic, m.payload) for m in _until(inbox, b"genuine status")] == [
        (DeviceTopics(stranger, prefix=prefix).status, b"unnamed status"),
        (h.a_topics.status, b"genuine status"),
    ]
    assert inbox.drain() == []


def test_owner_cannot_read_its_devices_release_or_the_clouds_topics(
    households: Households,
) -> None:
    """Attack: the owner reads the release token (with its sealed epoch keys), the
    escrowed keys, or the device's result before the cloud has acted on them."""
    h = households
    t = h.a_topics
    inbox = Inbox()
    owner = _owner(h.broker, h.deployment, h.a, inbox)
    for topic in (t.release, t.escrow_ack, t.escrow, t.result, t.notice):
        subscribe(owner, topic)
    cloud, device = h.broker.client("cloud"), h.broker.client(h.a)
    publish(cloud, t.release, b"token")
    publish(cloud, t.escrow_ack, b"ack")
    publish(device, t.escrow, b"sealed epoch key")
    publish(device, t.result, b"result")
    publish(device, t.notice, b"notice")

    message = inbox.get()
    assert (message.topic, message.payload) == (t.notice, b"notice")
    assert inbox.drain() == []


def test_owner_of_a_device_that_is_not_enrolled_reads_nothing(households: Households) -> None:
    """Attack: a certificate from the deployment's CA whose CN names an owner of a device
    that was never enrolled (or was removed) reads nothing of any device.

    The control on the same connection is a message on the only topics such a name
    has: the device patterns' own subtree of `owner.<id>`, which no device uses."""
    h = households
    prefix = h.deployment.prefix
    ghost = f"owner.{h.deployment.new_device_id('ghost')}"
    device = h.broker.client(h.a)
    publish(device, h.a_topics.notice, b"retained notice", retain=True)

    inbox = Inbox()
    client = h.broker.client(ghost, inbox=inbox)
    for topic in (h.a_topics.notice, h.a_topics.status, all_devices(prefix, "notice"),
                  f"{prefix}/#", "#"):
        subscribe(client, topic)
    publish(device, h.a_topics.notice, b"live notice", retain=True)
    publish(device, h.a_topics.status, b"live status", retain=True)
    publish(h.broker.client("cloud"), DeviceTopics(ghost, prefix=prefix).release, b"control")

    assert [m.payload for m in _until(inbox, b"control")] == [b"control"]
    # Positive control: A's owner, subscribing the same way, gets A's retained messages.
    owner_inbox = Inbox()
    owner = _owner(h.broker, h.deployment, h.a, owner_inbox)
    subscribe(owner, f"{prefix}/#")
    assert {owner_inbox.get().payload, owner_inbox.get().payload} == {b"live notice",
                                                                     b"live status"}


def test_owner_enrolled_while_the_broker_runs_reads_after_a_reload(
    broker: Broker, deployment: TestDeployment
) -> None:
    """`devices enroll` rewrites the ACL; the running broker applies it on SIGHUP, also to
    an owner already connected. Before the reload the owner, though its certificate is
    valid, reads nothing."""
    device_id = deployment.new_device_id("late")
    deployment.enroll_device(device_id)
    notice, _status = _owner_topics(deployment.layout.owner_bundle(device_id))
    inbox = Inbox()
    owner = _owner(broker, deployment, device_id, inbox)  # connects: a CA certificate
    subscribe(owner, notice)
    device = broker.client(device_id)
    publish(device, notice, b"before the reload", retain=True)

    broker.reload()
    publish(device, notice, b"after the reload", retain=True)

    # In order: had the first been delivered, it would come first.
    assert inbox.get().payload == b"after the reload"
    assert inbox.drain() == []
    later = Inbox()
    subscribe(_owner(broker, deployment, device_id, later), notice)
    message = later.get()
    assert (message.payload, message.retain) == (b"after the reload", True)
