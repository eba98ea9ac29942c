"""Small packets leave at once on the cloud's MQTT link (docs/architecture.md, "Small
packets"): the broker's config turns Nagle's algorithm off for its clients, and the
cloud stub's link sets TCP_NODELAY on its socket, again after every reconnect."""

from __future__ import annotations

import socket

from cloud_stub.mqtt import CloudMqtt
from tests.fixtures.broker import Broker
from tests.fixtures.waiting import wait_until

WAIT_S = 15.0


def _nodelay(link: CloudMqtt) -> bool:
    sock = link._session.socket()  # the link's one socket; no public accessor on the link
    assert isinstance(sock, socket.socket), "the link has no socket"
    return bool(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))


def test_the_broker_turns_nagle_off(broker: Broker) -> None:
    assert "set_tcp_nodelay true" in broker.config_path.read_text().splitlines()


def test_the_cloud_link_turns_nagle_off_and_again_after_a_reconnect(
        link: CloudMqtt, broker: Broker) -> None:
    assert _nodelay(link)
    first = link._session.socket()
    broker.restart()
    # A new socket means the old one's disconnect was handled (`connected` cleared), so
    # `connected` again means the new connection's on_connect has run.
    wait_until("the link to reconnect",
               lambda: link._session.socket() not in (None, first) and link.connected,
               timeout=WAIT_S)
    assert _nodelay(link)
