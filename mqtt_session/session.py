"""One MQTT session behind a few methods: start, subscribe, publish, ack, stop.

paho-mqtt 2.x with VERSION2 callbacks. By default the session is MQTT v5 and persistent
(``clean_start=False`` and a session expiry), so the broker holds the QoS 1 messages
published to us while we are away, and acknowledgements are manual: the program calls
`ack` only once a message was handled, so a crash between receipt and outcome makes the
broker deliver it again. paho reconnects by itself with a bounded backoff; every
CONNACK subscribes again, at QoS 1, to every topic the session follows. Outbound
messages are QoS 1; `Delivery.wait` waits for the PUBACK with a timeout.

The session is not `connected()` until a successful CONNACK and, when it follows
topics, the SUBACK of the subscriptions sent with it: a message published to us after
that is either delivered or held for us, even by a broker that had forgotten the
session (docs/architecture.md, "One MQTT session"). Publishing and acknowledging work
from the CONNACK on. What happens to the
connection is told to a `Watcher` on the network thread (`ProblemLog` logs each new
cause once); what arrives goes to `deliver`, usually an `InboundQueue.put`. paho's
errors do not escape: publish and subscribe raise the program's own error, made by the
`error` factory given to the session. docs/architecture.md ("One MQTT session")
says which program uses what.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from mqtt_session.inbound import Inbound
from mqtt_session.watcher import Watcher

ErrorFactory = Callable[[str], Exception]
_ACCEPTED = (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_AGAIN)
_PAHO_ERRORS = (RuntimeError, ValueError, OSError)


@dataclass(frozen=True, slots=True)
class Will:
    """The last will: published at QoS 1 by the broker when the session dies unclosed."""

    topic: str
    payload: bytes | str
    retain: bool = True


@dataclass(frozen=True, slots=True)
class SessionSettings:
    """Times in seconds, sizes in bytes.

    `persistent` keeps the session at the broker for `session_expiry_s`; without it the
    broker forgets it at disconnection. `mqtt_v5` False speaks MQTT 3.1.1 with a clean
    session (for brokers we do not run). `receive_maximum` asks the broker to keep no
    more unacknowledged messages in flight to us (flow control). `max_payload_bytes`
    caps what is kept of an inbound payload (None: no cap).
    """

    host: str
    port: int
    client_id: str
    subscriptions: tuple[str, ...] = ()
    persistent: bool = True
    session_expiry_s: int = 7 * 86400
    mqtt_v5: bool = True
    manual_ack: bool = True
    keepalive_s: int = 30
    receive_maximum: int | None = None
    max_payload_bytes: int | None = None
    reconnect_min_s: int = 1
    reconnect_max_s: int = 60
    max_queued_messages: int = 0  # outbound messages paho holds (0: no limit)
    will: Will | None = None
    username: str | None = None
    password: str | None = None
    tcp_nodelay: bool = False  # no Nagle: "Small packets", docs/architecture.md

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


class Delivery:
    """A QoS 1 publish in flight."""

    def __init__(self, topic: str, info: mqtt.MQTTMessageInfo, error: ErrorFactory) -> None:
        self.topic = topic
        self._info = info
        self._error = error

    def done(self) -> bool:
        """True once the broker acknowledged it."""
        return self._info.is_published()

    def wait(self, timeout: float) -> None:
        """Wait for the PUBACK. Raises the session's error when it does not come in time."""
        try:
            self._info.wait_for_publish(timeout=timeout)
        except (RuntimeError, ValueError) as exc:
            raise self._error(f"publish to {self.topic} failed: {exc}") from exc
        if not self._info.is_published():
            raise self._error(f"the broker did not acknowledge {self.topic} in time")


class Session:
    """One client connection. Not reusable after `stop`.

    `deliver` receives each inbound message on the network thread; `error` makes the
    program's transport error from a message.
    """

    def __init__(
        self,
        settings: SessionSettings,
        *,
        log: logging.Logger,
        error: ErrorFactory,
        deliver: Callable[[Inbound], object],
        watcher: Watcher | None = None,
    ) -> None:
        self.settings = settings
        self._log = log
        self._error = error
        self._deliver = deliver
        self.watcher = watcher or Watcher()
        self._online = threading.Event()  # CONNACK received: publish and ack work
        self._connected = threading.Event()  # and the subscriptions are confirmed
        self._stopping = False
        self._subscriptions = settings.subscriptions
        self._subacks = threading.Condition()
        self._suback_reasons: dict[int, list[ReasonCode]] = {}  # by the SUBSCRIBE's mid
        self._resubscribe: tuple[int, bool] | None = None  # (mid, session_present)
        s = settings
        if s.mqtt_v5:
            client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=s.client_id,
                                 protocol=MQTTProtocolVersion.MQTTv5, manual_ack=s.manual_ack)
        else:
            client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=s.client_id,
                                 protocol=MQTTProtocolVersion.MQTTv311, clean_session=True,
                                 manual_ack=s.manual_ack)
        if s.username is not None:
            client.username_pw_set(s.username, s.password)
        if s.will is not None:
            client.will_set(s.will.topic, s.will.payload, qos=1, retain=s.will.retain)
        client.reconnect_delay_set(s.reconnect_min_s, s.reconnect_max_s)
        if s.max_queued_messages:
            client.max_queued_messages_set(s.max_queued_messages)
        client.on_pre_connect = self._on_pre_connect
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        if type(self.watcher).paho_error is not Watcher.paho_error:
            # Only when wanted: with on_log set, paho formats a line for every packet.
            client.on_log = self._on_log
        self._client = client

    # --- lifecycle ----------------------------------------------------------------------

    def start(self, tls: ssl.SSLContext | None) -> None:
        """Connect in the background, retrying with backoff until `stop`. `tls` None is
        plain MQTT. Raises OSError or ValueError when the address cannot be used at all
        (the caller words it), the session's error when the network loop does not start."""
        self._prepare(tls)
        kwargs = self._connect_kwargs()
        self._client.connect_async(self.settings.host, self.settings.port, **kwargs)
        self._loop_start()

    def open(self, tls: ssl.SSLContext | None) -> None:
        """Connect now (TCP and TLS in this thread, so their errors reach the caller as
        OSError or ssl.SSLError), then run the network loop; the CONNACK is told to the
        watcher."""
        self._prepare(tls)
        self._client.connect(self.settings.host, self.settings.port, **self._connect_kwargs())
        self._loop_start()

    def stop(self, *, last_words: tuple[str, bytes | str] | None = None,
             wait_s: float = 2.0) -> None:
        """Publish `last_words` (topic, payload; retained, QoS 1, waiting up to `wait_s`
        for the PUBACK) while connected, then disconnect and stop. Never raises."""
        self._stopping = True
        if last_words is not None and self._online.is_set():
            topic, payload = last_words
            try:
                info = self._client.publish(topic, payload, qos=1, retain=True)
                info.wait_for_publish(wait_s)
            except _PAHO_ERRORS as exc:
                self._log.warning("could not publish %s before disconnecting: %s", topic, exc)
        with contextlib.suppress(*_PAHO_ERRORS):
            self._client.disconnect()
        self._client.loop_stop()
        self._online.clear()
        self._connected.clear()

    def connected(self) -> bool:
        return self._connected.is_set()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    @property
    def stopping(self) -> bool:
        return self._stopping

    def socket(self) -> object | None:
        """The connection's socket (None between connections), for socket options."""
        return self._client.socket()

    def _prepare(self, tls: ssl.SSLContext | None) -> None:
        if tls is not None:
            self._client.tls_set_context(tls)

    def _connect_kwargs(self) -> dict[str, Any]:
        s = self.settings
        if not s.mqtt_v5:
            return {"keepalive": s.keepalive_s}
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = s.session_expiry_s if s.persistent else 0
        if s.receive_maximum is not None:
            props.ReceiveMaximum = s.receive_maximum
        return {"keepalive": s.keepalive_s, "clean_start": not s.persistent,
                "properties": props}

    def _loop_start(self) -> None:
        if self._client.loop_start() != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise self._error(f"cannot start the MQTT network loop for {self.settings.address}")

    # --- messages -----------------------------------------------------------------------

    def subscribe(self, topic: str, timeout: float) -> None:
        """Follow `topic` at QoS 1 from now on (again at every reconnection) and wait for
        the SUBACK. Raises the session's error when it does not come or refuses."""
        address = self.settings.address
        self._subscriptions = (*self._subscriptions, topic)
        with self._subacks:  # held until waiting, so the SUBACK cannot come unseen
            result, mid = self._client.subscribe(topic, qos=1)
            if result != MQTTErrorCode.MQTT_ERR_SUCCESS or mid is None:
                raise self._error(f"subscribing to {topic} at {address} failed: "
                                  f"{mqtt.error_string(result)}")
            if not self._subacks.wait_for(lambda: mid in self._suback_reasons, timeout):
                raise self._error(f"the broker at {address} did not confirm the "
                                  f"subscription to {topic} within {timeout:g} s")
            reasons = self._suback_reasons.pop(mid)
        failed = [r for r in reasons if r.is_failure]
        if failed:
            raise self._error(f"the broker at {address} refused the subscription to {topic} "
                              f"({failed[0]})")

    def publish(self, topic: str, payload: bytes | str, *, qos: int = 1,
                retain: bool = False) -> Delivery:
        """Hand a message to the network thread and return at once (never waits on that
        thread, which may itself wait for room in an inbound queue). Raises the session's
        error when it is down or paho refuses the message."""
        if not self._online.is_set():
            raise self._error(f"the MQTT session with {self.settings.address} is down; "
                              f"cannot publish to {topic}")
        try:
            info = self._client.publish(topic, payload, qos=qos, retain=retain)
        except _PAHO_ERRORS as exc:
            raise self._error(f"publish to {topic} failed: {exc}") from exc
        if info.rc not in _ACCEPTED:
            raise self._error(f"publish to {topic} failed: {mqtt.error_string(info.rc)}")
        return Delivery(topic, info, self._error)

    def publish_and_wait(self, topic: str, payload: bytes | str, *, timeout: float,
                         retain: bool = False) -> None:
        """Publish at QoS 1 and wait for the PUBACK. Raises the session's error."""
        self.publish(topic, payload, retain=retain).wait(timeout)

    def ack(self, message: Inbound) -> None:
        """Acknowledge a QoS 1 message once it was handled. Nothing for QoS 0, nor while
        disconnected: the broker then delivers it again."""
        if message.qos == 0 or not self._online.is_set():
            return
        try:
            self._client.ack(message.mid, message.qos)
        except _PAHO_ERRORS as exc:
            self._log.warning("could not acknowledge message %d: %s", message.mid, exc)

    # --- callbacks (network thread) -----------------------------------------------------

    def _on_pre_connect(self, client: mqtt.Client, userdata: Any) -> None:
        self.watcher.attempt()

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        # paho calls this from inside its `except OSError` around the attempt (DNS,
        # refused, unreachable, TLS handshake), so the cause is the active exception.
        self.watcher.unreachable(sys.exc_info()[1])

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: mqtt.ConnectFlags,
                    reason: ReasonCode, properties: Properties | None) -> None:
        if reason.is_failure:
            self._online.clear()
            self._connected.clear()
            self.watcher.refused(reason)
            return
        if self.settings.tcp_nodelay:
            sock = client.socket()
            if isinstance(sock, socket.socket):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._online.set()
        session_present = bool(flags.session_present)
        if self._subscriptions:
            # Up once the broker confirmed them (`_on_subscribe`): a broker that lost
            # the session holds nothing for us until then.
            result, mid = client.subscribe([(topic, 1) for topic in self._subscriptions])
            if result == MQTTErrorCode.MQTT_ERR_SUCCESS and mid is not None:
                self._resubscribe = (mid, session_present)
                return
            self._log.warning("subscribing again at %s failed: %s", self.settings.address,
                              mqtt.error_string(result))
        self._up(session_present)

    def _up(self, session_present: bool) -> None:
        self._connected.set()
        self.watcher.up(session_present)

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: mqtt.DisconnectFlags,
                       reason: ReasonCode, properties: Properties | None) -> None:
        was_up = self._online.is_set()
        self._resubscribe = None
        self._online.clear()
        self._connected.clear()
        self.watcher.down(reason, was_up, self._stopping)

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int,
                      reasons: list[ReasonCode], properties: Properties | None) -> None:
        pending = self._resubscribe
        if pending is not None and pending[0] == mid:
            self._resubscribe = None
            refused = [topic for topic, r in zip(self._subscriptions, reasons, strict=False)
                       if r.is_failure]
            if refused:  # an ACL that forbids them: nothing will arrive there
                self._log.warning("the broker at %s refused the subscription to %s",
                                  self.settings.address, ", ".join(refused))
            self._up(pending[1])
            return
        with self._subacks:
            self._suback_reasons[mid] = list(reasons)
            self._subacks.notify_all()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        size, cap = len(msg.payload), self.settings.max_payload_bytes
        if cap is not None and size > cap:
            item = Inbound(msg.topic, b"", msg.mid, msg.qos, bool(msg.retain), oversized=size)
        else:
            item = Inbound(msg.topic, bytes(msg.payload), msg.mid, msg.qos, bool(msg.retain))
        self._deliver(item)

    def _on_log(self, client: mqtt.Client, userdata: Any, level: int, text: str) -> None:
        if level == mqtt.MQTT_LOG_ERR:
            self.watcher.paho_error(text)
