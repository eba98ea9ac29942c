"""The MQTT link behind a narrow seam: connect, publish, a bounded inbound queue, ack, close.

`PahoLink` speaks MQTT v5 over TLS with the device's client certificate (the broker maps
the certificate CN to the user name its ACL checks). The session is persistent
(`clean_start=False` and a session expiry), so QoS 1 tokens the cloud publishes while
the device is offline are held by the broker and delivered when it reconnects. Inbound
messages are acknowledged manually, only after the release handler has made its
decision durable (`ack`), so a token is never lost between receipt and decision: if the
agent dies in between, the broker delivers it again.

The session itself is `mqtt_session.Session`; the inbound queue is bounded and applies
backpressure (see `PahoLink.__init__`). The link fails closed: it is not `connected()`
until a successful CONNACK. paho errors never escape it: they become `TransportError`.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from device.errors import TransportError
from mqtt_session import Inbound, InboundQueue, ProblemLog, Session, SessionSettings, Will
from protocol.tls import client_context

__all__ = ["Delivery", "Inbound", "LinkSettings", "MqttLink", "PahoLink"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LinkSettings:
    """Everything the link needs; times in seconds, sizes in bytes."""

    host: str
    port: int
    client_id: str
    ca_cert: Path
    client_cert: Path
    client_key: Path
    subscriptions: tuple[str, ...]
    will_topic: str
    will_payload: bytes
    keepalive_s: int = 30
    session_expiry_s: int = 7 * 86400
    max_payload_bytes: int = 256 * 1024
    inbound_queue: int = 64
    enqueue_timeout_s: float = 30.0
    reconnect_min_s: int = 1
    reconnect_max_s: int = 60
    online_payload: Callable[[], bytes] | None = field(default=None, compare=False)


class Delivery(Protocol):
    """A publish in flight: `done()` turns True when the broker acknowledged it."""

    def done(self) -> bool: ...


class MqttLink(Protocol):
    """The seam the release service talks to; `Inbound` is `mqtt_session.Inbound`."""

    def connect(self) -> None: ...

    def connected(self) -> bool: ...

    def wait_connected(self, timeout: float) -> bool: ...

    def problem(self) -> str:
        """Why the link is down, naming the broker's host:port and the cause ("" when
        it is up or has not tried yet)."""
        ...

    def publish(
        self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False
    ) -> Delivery: ...

    def receive(self, timeout: float) -> Inbound | None: ...

    def wake(self) -> None:
        """Make a `receive` in progress return None now (the worker is being stopped, or
        has work that is not a message: a new escrow blob, a finished job)."""
        ...

    def ack(self, message: Inbound) -> None: ...

    def close(self, *, final_payload: bytes | None = None) -> None: ...


class _LinkWatcher(ProblemLog):
    """Names why the link is down (logged once per cause), and on every connection wakes
    the worker and publishes the online status."""

    def __init__(self, settings: LinkSettings, session: Callable[[], Session],
                 on_up: Callable[[], None]) -> None:
        super().__init__(log, f"{settings.host}:{settings.port}")
        self._settings = settings
        self._session = session
        self._on_up = on_up

    def up(self, session_present: bool) -> None:
        super().up(session_present)
        log.info("MQTT link up (session present: %s)", session_present)
        self._on_up()  # the worker's chores run now (escrow is sent again), not at its next pass
        make_payload = self._settings.online_payload
        if make_payload is None:
            return
        try:
            payload = make_payload()
        except Exception:  # the health reporter must not take the link down
            log.exception("health reporter failed; publishing a bare online status")
            payload = b'{"state":"online","v":1}'
        try:
            self._session().publish(self._settings.will_topic, payload, retain=True)
        except TransportError as exc:
            log.warning("could not publish the online status: %s", exc)


class PahoLink:
    """paho-mqtt 2.x through `mqtt_session`, MQTT v5, TLS client certificate.

    Raises TransportError from `connect` when the TLS material cannot be loaded, from
    `publish` when the link is down.
    """

    def __init__(self, settings: LinkSettings) -> None:
        self._settings = settings
        # Backpressure: while the queue is full the network thread waits, TCP stops
        # reading and the broker holds the rest. Nothing that drains the queue ever waits
        # on this thread (publishes are not awaited, see `publish`). Only a worker stuck
        # for longer than `enqueue_timeout_s` makes us drop one, unacknowledged: the
        # broker delivers it again when the session resumes.
        self._inbound = InboundQueue(
            settings.inbound_queue, wait_s=settings.enqueue_timeout_s, log=log
        )
        self._watcher = _LinkWatcher(settings, lambda: self._session, self._inbound.wake)
        self._started = False
        self._session = Session(
            SessionSettings(
                host=settings.host,
                port=settings.port,
                client_id=settings.client_id,
                subscriptions=settings.subscriptions,
                session_expiry_s=settings.session_expiry_s,
                keepalive_s=settings.keepalive_s,
                # Flow control: ask the broker to keep fewer unacknowledged messages in
                # flight to us than the inbound queue holds.
                receive_maximum=max(1, settings.inbound_queue // 2),
                max_payload_bytes=settings.max_payload_bytes,
                reconnect_min_s=settings.reconnect_min_s,
                reconnect_max_s=settings.reconnect_max_s,
                will=Will(settings.will_topic, settings.will_payload),
            ),
            log=log,
            error=TransportError,
            deliver=self._inbound.put,
            watcher=self._watcher,
        )

    @property
    def dropped(self) -> int:
        """Messages dropped because the inbound queue was full."""
        return self._inbound.dropped

    def connect(self) -> None:
        """Start connecting in the background (retrying with backoff until `close`); a
        second call does nothing. Raises TransportError when the TLS files do not load."""
        if self._started:
            return
        s = self._settings
        try:
            self._session.start(client_context(s.ca_cert, s.client_cert, s.client_key))
        except (OSError, ValueError, ssl.SSLError) as exc:
            raise TransportError(
                f"cannot start the MQTT link to {s.host}:{s.port} with ca_cert {s.ca_cert}, "
                f"client_cert {s.client_cert}, client_key {s.client_key}: {exc}"
            ) from exc
        self._started = True

    def connected(self) -> bool:
        return self._session.connected()

    def wait_connected(self, timeout: float) -> bool:
        return self._session.wait_connected(timeout)

    def problem(self) -> str:
        return "" if self._session.connected() else self._watcher.problem

    def publish(
        self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False
    ) -> Delivery:
        """Queue a publish and return at once; the returned `Delivery` reports the
        broker's acknowledgement. Never waits on the network thread (which may itself be
        waiting for room in the inbound queue), so callers cannot deadlock with it.

        Raises TransportError when the link is down or paho refuses the message.
        """
        return self._session.publish(topic, payload, qos=qos, retain=retain)

    def receive(self, timeout: float) -> Inbound | None:
        return self._inbound.get(timeout)

    def wake(self) -> None:
        self._inbound.wake()

    def ack(self, message: Inbound) -> None:
        """Acknowledge a QoS 1 message once its outcome is durable (no-op for QoS 0)."""
        self._session.ack(message)

    def close(self, *, final_payload: bytes | None = None) -> None:
        """Publish `final_payload` on the status topic (if given), disconnect, stop."""
        last_words = None if final_payload is None else (self._settings.will_topic, final_payload)
        self._session.stop(last_words=last_words, wait_s=2.0)
        self._inbound.close()
