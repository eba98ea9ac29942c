"""The owner's MQTT link behind a narrow seam: open, subscribe, receive, ack, close.

paho-mqtt 2.x (VERSION2 callbacks), MQTT v5, TLS with the owner's certificate. With
`persistent` the session is kept (``clean_start=False`` from the very first connection,
and a session expiry), so that the broker queues every QoS 1 notice published while
the owner is offline, once the owner has connected once. Messages are acknowledged by
hand (`ack`), only after the caller has stored them, so a crash never loses one.

`open` fails closed: it returns only after a successful CONNACK, and maps what went
wrong to `BrokerUnreachable` (nothing answers at host:port), `TlsFailure` (the broker's
certificate is not from the bundle's CA or not for that name) or `CertificateRefused`
(the broker refused our certificate or the connection). paho and ssl errors never
escape. The inbound queue is bounded; while it is full the network thread waits, so the
broker holds the rest (flow control also asks it to send no more than half the queue
unacknowledged).
"""

from __future__ import annotations

import contextlib
import queue
import ssl
import threading
from dataclasses import dataclass
from typing import Any, Final

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from owner_app.errors import BrokerUnreachable, CertificateRefused, TlsFailure, TransportError

REVOKED_HINT: Final = (
    "the owner certificate may have been revoked or replaced: ask the operator for a new "
    "owner bundle (`cloud-stub devices owner-cert <device> --replace`)"
)
# What OpenSSL says when the peer refused our certificate (TLS alerts, lower case).
_REFUSED_ALERTS: Final = ("certificate revoked", "certificate unknown", "bad certificate",
                          "certificate required", "unknown ca", "certificate expired",
                          "unsupported certificate", "access denied")


@dataclass(frozen=True, slots=True)
class Inbound:
    """One message from the broker."""

    topic: str
    payload: bytes
    mid: int
    qos: int
    retain: bool


@dataclass(frozen=True, slots=True)
class LinkSettings:
    """Times in seconds."""

    host: str
    port: int
    client_id: str
    tls: ssl.SSLContext
    persistent: bool
    session_expiry_s: int
    connect_timeout_s: float = 10.0
    keepalive_s: int = 30
    inbound_queue: int = 64
    reconnect_min_s: int = 1
    reconnect_max_s: int = 60


def _closed(text: str) -> bool:
    lowered = text.lower()
    return any(sign in lowered for sign in ("eof occurred", "connection reset",
                                             "broken pipe", "connection closed"))


def _refusal(text: str) -> bool:
    lowered = text.lower()
    return any(alert in lowered for alert in _REFUSED_ALERTS)


class OwnerLink:
    """One connection to the broker. Not reusable after `close`."""

    def __init__(self, settings: LinkSettings) -> None:
        self._s = settings
        self._inbound: queue.Queue[Inbound] = queue.Queue(maxsize=settings.inbound_queue)
        self._connected = threading.Event()
        self._answered = threading.Event()  # a CONNACK or a failure before one
        self._refusal: ReasonCode | None = None
        self._last_error = ""
        self._subscriptions: list[str] = []
        self._suback = threading.Event()
        self._closing = False
        self.session_present = False
        self.losses = 0  # connections lost after the first CONNACK
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=settings.client_id,
            protocol=MQTTProtocolVersion.MQTTv5,
            manual_ack=True,
        )
        self._client.tls_set_context(settings.tls)
        self._client.reconnect_delay_set(settings.reconnect_min_s, settings.reconnect_max_s)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._client.on_subscribe = self._on_subscribe
        self._client.on_log = self._on_log

    @property
    def address(self) -> str:
        return f"{self._s.host}:{self._s.port}"

    # --- lifecycle ---------------------------------------------------------------------

    def open(self) -> None:
        """Connect and wait for the CONNACK. Raises BrokerUnreachable, TlsFailure,
        CertificateRefused or TransportError, each naming host:port."""
        s = self._s
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = s.session_expiry_s if s.persistent else 0
        props.ReceiveMaximum = max(1, s.inbound_queue // 2)
        try:
            self._client.connect(s.host, s.port, keepalive=s.keepalive_s,
                                 clean_start=not s.persistent, properties=props)
        except ssl.SSLCertVerificationError as exc:
            raise TlsFailure(
                f"TLS to the broker at {self.address} failed: its certificate is not "
                f"vouched for by the bundle's CA for that name ({exc.verify_message})"
            ) from None
        except ssl.SSLError as exc:
            if _refusal(str(exc)):
                raise CertificateRefused(
                    f"the broker at {self.address} refused the owner certificate "
                    f"({exc.reason or exc}); {REVOKED_HINT}"
                ) from None
            raise TlsFailure(f"TLS to the broker at {self.address} failed: {exc}") from None
        except TimeoutError as exc:
            raise BrokerUnreachable(f"broker {self.address} did not answer: {exc}") from None
        except OSError as exc:
            raise BrokerUnreachable(
                f"broker {self.address} is unreachable: {exc.strerror or exc}"
            ) from None
        self._client.loop_start()
        if not self._answered.wait(s.connect_timeout_s):
            self.close()
            raise BrokerUnreachable(
                f"broker {self.address} gave no MQTT answer within {s.connect_timeout_s:g} s"
            )
        if self._connected.is_set():
            return
        refusal, error = self._refusal, self._last_error
        self.close()
        if refusal is not None:
            raise CertificateRefused(
                f"the broker at {self.address} refused the connection ({refusal}); "
                f"{REVOKED_HINT}"
            )
        if _refusal(error):
            raise CertificateRefused(
                f"the broker at {self.address} refused the owner certificate ({error}); "
                f"{REVOKED_HINT}"
            )
        if not error or _closed(error):
            # TLS 1.3: the broker checks our certificate after our side of the handshake
            # is done, and mosquitto then just closes: the CONNACK never comes.
            raise CertificateRefused(
                f"the broker at {self.address} closed the connection before answering "
                f"({error or 'no reason given'}): it refused the owner certificate or this "
                f"client; {REVOKED_HINT}"
            )
        raise TransportError(f"connection to the broker at {self.address} failed: {error}")

    def subscribe(self, topic: str, timeout: float) -> None:
        """Subscribe at QoS 1 (again after every reconnection) and wait for the SUBACK.
        Raises TransportError when it does not come or refuses the subscription."""
        self._suback.clear()
        self._subscriptions.append(topic)
        result, _mid = self._client.subscribe(topic, qos=1)
        if result != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise TransportError(f"subscribing to {topic} at {self.address} failed: "
                                 f"{mqtt.error_string(result)}")
        if not self._suback.wait(timeout):
            raise TransportError(f"the broker at {self.address} did not confirm the "
                                 f"subscription to {topic} within {timeout:g} s")
        if self._refusal is not None:
            raise TransportError(f"the broker at {self.address} refused the subscription to "
                                 f"{topic} ({self._refusal})")

    def close(self) -> None:
        """Disconnect (the persistent session stays at the broker) and stop."""
        self._closing = True
        with contextlib.suppress(OSError, RuntimeError, ValueError):
            self._client.disconnect()
        self._client.loop_stop()
        self._connected.clear()

    # --- messages ----------------------------------------------------------------------

    def receive(self, timeout: float) -> Inbound | None:
        try:
            return self._inbound.get(timeout=timeout)
        except queue.Empty:
            return None

    def ack(self, message: Inbound) -> None:
        """Acknowledge a QoS 1 message once its outcome is stored (no-op for QoS 0 or
        while disconnected: the broker then delivers it again)."""
        if message.qos == 0 or not self._connected.is_set():
            return
        with contextlib.suppress(OSError, RuntimeError, ValueError):
            self._client.ack(message.mid, message.qos)

    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def last_error(self) -> str:
        return self._last_error

    # --- callbacks (network thread) ----------------------------------------------------

    def _on_connect(self, client: mqtt.Client, _u: Any, flags: mqtt.ConnectFlags,
                    reason: ReasonCode, _p: Properties | None) -> None:
        if reason.is_failure:
            self._refusal = reason
            self._answered.set()
            return
        self._refusal = None
        self._last_error = ""
        if not self._connected.is_set() and self._answered.is_set():
            # a reconnection: the broker may have lost the session; subscribe again
            for topic in self._subscriptions:
                client.subscribe(topic, qos=1)
        else:
            self.session_present = bool(flags.session_present)
        self._connected.set()
        self._answered.set()

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _f: mqtt.DisconnectFlags,
                       reason: ReasonCode, _p: Properties | None) -> None:
        if self._connected.is_set() and not self._closing:
            self.losses += 1
            if reason.is_failure and not self._last_error:
                self._last_error = str(reason)
        self._connected.clear()
        self._answered.set()

    def _on_subscribe(self, _c: mqtt.Client, _u: Any, _mid: int,
                      reasons: list[ReasonCode], _p: Properties | None) -> None:
        failed = [r for r in reasons if r.is_failure]
        self._refusal = failed[0] if failed else None
        self._suback.set()

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        # Waits while the queue is full: TCP stops reading and the broker holds the rest.
        # Once closing, the message is left unacknowledged: the broker delivers it again.
        item = Inbound(msg.topic, bytes(msg.payload), msg.mid, msg.qos, bool(msg.retain))
        while not self._closing:
            try:
                self._inbound.put(item, timeout=0.2)
                return
            except queue.Full:
                continue

    def _on_log(self, _c: mqtt.Client, _u: Any, level: int, text: str) -> None:
        # The first error since the last CONNACK is the cause; paho logs follow-ups
        # ("Client is not connected") while it retries.
        if level == mqtt.MQTT_LOG_ERR and not self._last_error:
            self._last_error = text
