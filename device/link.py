"""The MQTT link behind a narrow seam: connect, publish, a bounded inbound queue, ack, close.

`PahoLink` speaks MQTT v5 over TLS with the device's client certificate (the broker maps
the certificate CN to the user name its ACL checks). The session is persistent
(`clean_start=False` and a session expiry), so QoS 1 tokens the cloud publishes while
the device is offline are held by the broker and delivered when it reconnects. Inbound
messages are acknowledged manually, only after the release handler has made its
decision durable (`ack`), so a token is never lost between receipt and decision: if the
agent dies in between, the broker delivers it again.

The inbound queue is bounded and applies backpressure (see `_on_message`). The link
fails closed: it is not `connected()` until a successful CONNACK. paho errors never
escape it: they become `TransportError`.
"""

from __future__ import annotations

import logging
import queue
import ssl
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from device.errors import TransportError
from protocol.connect_errors import describe_connection_error
from protocol.tls import client_context

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Inbound:
    """One message from the broker. `oversized` is the true size when the payload was
    above the cap (then `payload` is empty and the bytes were never kept)."""

    topic: str
    payload: bytes
    mid: int = 0
    qos: int = 0
    oversized: int = 0


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
    """The seam the release service talks to."""

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

    def ack(self, message: Inbound) -> None: ...

    def close(self, *, final_payload: bytes | None = None) -> None: ...


class _PahoDelivery:
    def __init__(self, info: mqtt.MQTTMessageInfo) -> None:
        self._info = info

    def done(self) -> bool:
        return self._info.is_published()


class PahoLink:
    """paho-mqtt 2.x (VERSION2 callbacks), MQTT v5, TLS client certificate.

    Raises TransportError from `connect` when the TLS material cannot be loaded, from
    `publish` when the link is down.
    """

    def __init__(self, settings: LinkSettings) -> None:
        self._settings = settings
        self._inbound: queue.Queue[Inbound] = queue.Queue(maxsize=settings.inbound_queue)
        self._connected = threading.Event()
        self._problem = ""
        self._closed = False
        self._started = False
        self.dropped = 0  # messages dropped because the inbound queue was full
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=settings.client_id,
            protocol=MQTTProtocolVersion.MQTTv5,
            manual_ack=True,
        )
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_connect_fail = self._on_connect_fail
        self._client.on_message = self._on_message
        self._client.reconnect_delay_set(settings.reconnect_min_s, settings.reconnect_max_s)
        self._client.will_set(settings.will_topic, settings.will_payload, qos=1, retain=True)

    def connect(self) -> None:
        """Start connecting in the background (retrying with backoff until `close`); a
        second call does nothing. Raises TransportError when the TLS files do not load."""
        if self._started:
            return
        s = self._settings
        try:
            self._client.tls_set_context(client_context(s.ca_cert, s.client_cert, s.client_key))
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = s.session_expiry_s
            # Flow control: ask the broker to keep fewer unacknowledged messages in
            # flight to us than the inbound queue holds.
            props.ReceiveMaximum = max(1, s.inbound_queue // 2)
            self._client.connect_async(
                s.host, s.port, keepalive=s.keepalive_s, clean_start=False, properties=props
            )
            self._client.loop_start()
        except (OSError, ValueError, ssl.SSLError) as exc:
            raise TransportError(
                f"cannot start the MQTT link to {s.host}:{s.port} with ca_cert {s.ca_cert}, "
                f"client_cert {s.client_cert}, client_key {s.client_key}: {exc}"
            ) from exc
        self._started = True

    def connected(self) -> bool:
        return self._connected.is_set()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def problem(self) -> str:
        return "" if self._connected.is_set() else self._problem

    def _set_problem(self, problem: str) -> None:
        """Record and log why the link is down; the same cause is logged once, not at
        every retry."""
        if problem != self._problem:
            log.warning("%s; retrying with backoff", problem)
        self._problem = problem

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        # paho calls this from inside its `except OSError` around the connection attempt
        # (DNS, refused, unreachable, TLS handshake), so the cause is the active exception.
        exc = sys.exc_info()[1]
        s = self._settings
        cause = describe_connection_error(exc) if exc is not None else "the connection failed"
        self._set_problem(f"cannot reach the MQTT broker at {s.host}:{s.port}: {cause}")

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason.is_failure:
            s = self._settings
            self._connected.clear()
            self._set_problem(
                f"the MQTT broker at {s.host}:{s.port} refused the connection: {reason}"
            )
            return
        self._problem = ""
        for topic in self._settings.subscriptions:
            client.subscribe(topic, qos=1)
        self._connected.set()
        log.info("MQTT link up (session present: %s)", flags.session_present)
        if self._settings.online_payload is not None:
            try:
                payload = self._settings.online_payload()
            except Exception:  # the health reporter must not take the link down
                log.exception("health reporter failed; publishing a bare online status")
                payload = b'{"state":"online","v":1}'
            client.publish(self._settings.will_topic, payload, qos=1, retain=True)

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self._connected.clear()
        if not self._closed:
            s = self._settings
            self._set_problem(f"MQTT link to {s.host}:{s.port} down ({reason})")

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        size = len(msg.payload)
        if size > self._settings.max_payload_bytes:
            item = Inbound(msg.topic, b"", msg.mid, msg.qos, oversized=size)
        else:
            item = Inbound(msg.topic, bytes(msg.payload), msg.mid, msg.qos)
        try:
            # Backpressure: while the queue is full the network thread waits, TCP stops
            # reading and the broker holds the rest. Nothing that drains the queue ever
            # waits on this thread (publishes are not awaited, see `publish`). Only a
            # worker stuck for longer than `enqueue_timeout_s` makes us drop one,
            # unacknowledged: the broker delivers it again when the session resumes.
            self._inbound.put(item, timeout=self._settings.enqueue_timeout_s)
        except queue.Full:
            self.dropped += 1
            log.error("inbound queue full; dropped a message on %s unacknowledged", msg.topic)

    def publish(
        self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False
    ) -> Delivery:
        """Queue a publish and return at once; the returned `Delivery` reports the
        broker's acknowledgement. Never waits on the network thread (which may itself be
        waiting for room in the inbound queue), so callers cannot deadlock with it.

        Raises TransportError when the link is down or paho refuses the message.
        """
        if not self._connected.is_set():
            raise TransportError(f"MQTT link is down; cannot publish to {topic}")
        try:
            info = self._client.publish(topic, payload, qos=qos, retain=retain)
        except (RuntimeError, ValueError, OSError) as exc:
            raise TransportError(f"publish to {topic} failed: {exc}") from exc
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_AGAIN):
            raise TransportError(f"publish to {topic} failed: {mqtt.error_string(info.rc)}")
        return _PahoDelivery(info)

    def receive(self, timeout: float) -> Inbound | None:
        try:
            return self._inbound.get(timeout=timeout)
        except queue.Empty:
            return None

    def ack(self, message: Inbound) -> None:
        """Acknowledge a QoS 1 message once its outcome is durable (no-op for QoS 0)."""
        if message.qos == 0 or not self._connected.is_set():
            return
        try:
            self._client.ack(message.mid, message.qos)
        except (RuntimeError, ValueError, OSError) as exc:
            log.warning("could not acknowledge message %d: %s", message.mid, exc)

    def close(self, *, final_payload: bytes | None = None) -> None:
        """Publish `final_payload` on the status topic (if given), disconnect, stop."""
        self._closed = True
        if final_payload is not None and self._connected.is_set():
            try:
                info = self._client.publish(
                    self._settings.will_topic, final_payload, qos=1, retain=True
                )
                info.wait_for_publish(2.0)
            except (RuntimeError, ValueError, OSError):
                log.warning("could not publish the final status")
        self._client.disconnect()
        self._client.loop_stop()
        self._connected.clear()
