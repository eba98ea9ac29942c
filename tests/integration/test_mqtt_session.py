"""The one MQTT session helper (mqtt_session/) against a real mosquitto.

The broker is the plain, anonymous one of tests/fixtures/home_assistant.py: the helper
is tested alone here, the links on it with the deployment's broker in their own tests.
Proved: a QoS 1 publish returns once the broker acknowledged it; a message not
acknowledged is delivered again when the persistent session resumes, one acknowledged
is not; the session subscribes again after the broker restarts; a publish while down
and a broker that is not there are named in the program's own words.

Waits are hang guards (`WAIT_S`), never measurements.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from mqtt_session import Inbound, InboundQueue, ProblemLog, Session, SessionSettings
from tests.fixtures.broker import free_port
from tests.fixtures.home_assistant import (
    WAIT_S,
    HomeAssistantBroker,
    running_home_assistant_broker,
)
from tests.fixtures.waiting import wait_until

pytestmark = pytest.mark.broker

LOG = logging.getLogger("tests.mqtt_session")


class LinkError(Exception):
    """Stands for a program's TransportError."""


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[HomeAssistantBroker]:
    with running_home_assistant_broker(tmp_path / "broker") as instance:
        yield instance


class Client:
    """A session with its inbound queue, as a link builds it."""

    def __init__(self, port: int, client_id: str, topics: tuple[str, ...] = (),
                 *, persistent: bool = True, watcher: ProblemLog | None = None) -> None:
        self.inbound = InboundQueue(8, wait_s=0, log=LOG)
        self.watcher = watcher or ProblemLog(LOG, f"127.0.0.1:{port}")
        self.session = Session(
            SessionSettings(host="127.0.0.1", port=port, client_id=client_id,
                            subscriptions=topics, persistent=persistent,
                            session_expiry_s=600, reconnect_min_s=1, reconnect_max_s=2),
            log=LOG, error=LinkError, deliver=self.inbound.put, watcher=self.watcher,
        )

    def __enter__(self) -> Client:
        self.session.start(None)
        assert self.session.wait_connected(WAIT_S)
        return self

    def __exit__(self, *_: object) -> None:
        self.session.stop()
        self.inbound.close()

    def next(self) -> Inbound:
        item = self.inbound.get(WAIT_S)
        assert item is not None, "nothing arrived"
        return item


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


def test_a_publish_waits_for_the_puback_and_reaches_a_subscriber(
    broker: HomeAssistantBroker,
) -> None:
    topic = unique("t") + "/a"
    with Client(broker.port, unique("rx"), (topic,)) as rx, \
            Client(broker.port, unique("tx")) as tx:
        delivery = tx.session.publish(topic, b"one")
        delivery.wait(WAIT_S)
        assert delivery.done()
        got = rx.next()
        assert (got.topic, got.payload, got.qos) == (topic, b"one", 1)


def test_an_unacknowledged_message_comes_again_when_the_session_resumes(
    broker: HomeAssistantBroker,
) -> None:
    topic, rx_id = unique("t") + "/a", unique("rx")
    with Client(broker.port, rx_id, (topic,)):
        pass  # the persistent session now exists at the broker
    with Client(broker.port, unique("tx")) as tx:
        tx.session.publish_and_wait(topic, b"kept while away", timeout=WAIT_S)
        tx.session.publish_and_wait(topic, b"second", timeout=WAIT_S)
    with Client(broker.port, rx_id) as rx:  # no subscription: it is the session's
        first, second = rx.next(), rx.next()
        assert (first.payload, second.payload) == (b"kept while away", b"second")
        rx.session.ack(first)  # handled; `second` is not
    with Client(broker.port, rx_id) as rx:
        again = rx.next()
        assert again.payload == b"second"
        rx.session.ack(again)
        assert rx.inbound.get(0.5) is None  # `first` was acknowledged: not again


def test_the_session_subscribes_again_after_a_broker_restart(
    broker: HomeAssistantBroker,
) -> None:
    topic = unique("t") + "/a"
    with Client(broker.port, unique("rx"), (topic,), persistent=False) as rx:
        broker.stop()
        wait_until("rx to see the broker go", lambda: not rx.session.connected(),
                   timeout=WAIT_S)
        broker.start()  # persistence off: the broker forgot every subscription
        assert rx.session.wait_connected(WAIT_S)
        with Client(broker.port, unique("tx")) as tx:
            tx.session.publish_and_wait(topic, b"after", timeout=WAIT_S)
        assert rx.next().payload == b"after"


class PublishWhenUp(ProblemLog):
    """Has `sender` publish to `topic` the moment the session says it is up, on the
    session's own network thread (which then sends nothing else until it returns)."""

    def __init__(self, port: int, sender: Client, topic: str) -> None:
        super().__init__(LOG, f"127.0.0.1:{port}")
        self.sender = sender
        self.topic = topic
        self.published = 0

    def up(self, session_present: bool) -> None:
        super().up(session_present)
        self.sender.session.publish_and_wait(self.topic, b"at once", timeout=WAIT_S)
        self.published += 1


def test_the_session_is_up_only_once_the_broker_confirmed_its_subscriptions(
    broker: HomeAssistantBroker,
) -> None:
    # A message published as soon as the session is up must reach it, also when the
    # broker holds no session for it (a first connection, or a broker that lost it):
    # up at the CONNACK, the SUBSCRIBE was not even sent yet and the message was lost.
    topic = unique("t") + "/a"
    with Client(broker.port, unique("tx")) as tx:
        watcher = PublishWhenUp(broker.port, tx, topic)
        with Client(broker.port, unique("rx"), (topic,), persistent=False,
                    watcher=watcher) as rx:
            assert rx.next().payload == b"at once"
            assert watcher.published == 1


def test_the_programs_error_names_a_publish_while_down_and_an_absent_broker(
    caplog: pytest.LogCaptureFixture,
) -> None:
    port = free_port()  # nothing listens there
    client = Client(port, unique("alone"))
    with caplog.at_level(logging.WARNING, logger=LOG.name):
        client.session.start(None)
        try:
            assert not client.session.wait_connected(3.5)  # a few retries
            with pytest.raises(LinkError, match="is down; cannot publish to x/y"):
                client.session.publish("x/y", b"")
        finally:
            client.session.stop()
    assert f"127.0.0.1:{port}" in client.watcher.problem
    assert "connection refused" in client.watcher.problem
    refused = [r for r in caplog.records if "connection refused" in r.getMessage()]
    assert len(refused) == 1  # one line per cause, not one per retry
