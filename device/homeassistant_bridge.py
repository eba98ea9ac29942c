"""The Home Assistant bridge: the connection to the owner's broker (docs in
`device.homeassistant`; the payloads are `device.homeassistant_messages`).

This broker is the owner's, not the deployment broker: plain MQTT on the LAN by default
(Home Assistant's Mosquitto add-on listens so on 1883), or, recommended, MQTT over TLS
(``tls = true``, 8883 by default): TLS 1.2 at least, the broker's certificate checked
against ``ca_file`` (or the system trust store) and its name against ``host``, with no
switch to turn either check off, and an optional client certificate. The password is
best kept in ``password_file`` (0600); an inline ``password`` works but is warned
about. The bridge (an `mqtt_session.Session`: MQTT 3.1.1, clean session, automatic
acks) never blocks or crashes the agent: it connects in the background and reconnects
by itself with a backoff of 1 s doubling to 60 s; each failed attempt (TLS
refused, name mismatch, wrong password, broker away) is logged once, naming the broker
and the reason, and shows in the agent's status under ``services.home_assistant``.
A press while the broker is away waits up to a minute and is sent on reconnection;
anything older is dropped (a doorbell press from an hour ago is no news), as is a
motion change (the state is re-sent with the announcement).
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import datetime

from paho.mqtt.reasoncodes import ReasonCode

from device.config import HomeAssistantSettings
from device.errors import TransportError
from device.homeassistant_messages import (
    PAYLOAD_AVAILABLE,
    PAYLOAD_NOT_AVAILABLE,
    Entities,
    Message,
    discovery_messages,
    motion_message,
    press_message,
    software_version,
    withdrawal_messages,
)
from mqtt_session import Delivery, Inbound, Session, SessionSettings, Watcher, Will
from protocol.tls import TlsMaterialError, client_context

log = logging.getLogger("device.homeassistant")  # one logger for the whole bridge

PRESS_HOLD_S = 60.0  # a press older than this when the broker returns is dropped
PRESS_HOLD_COUNT = 16


def tls_context(settings: HomeAssistantSettings) -> ssl.SSLContext:
    """The client TLS context for the owner's broker: TLS 1.2 or later, the broker's
    certificate verified against `ca_file` (the system trust store when None) and its
    name against the host the bridge connects to, the client certificate when given.

    Raises TransportError naming the file when the material does not load.
    """
    try:
        return client_context(settings.ca_file, settings.client_cert, settings.client_key)
    except TlsMaterialError as exc:
        key = "ca_file" if exc.which == "ca" else "client_cert / client_key"
        raise TransportError(f"home_assistant.{key} {exc}") from exc
    except ValueError as exc:
        raise TransportError(f"home_assistant: {exc}") from exc


def describe_failure(exc: BaseException | None) -> str:
    """Why a connection attempt failed, in words for the owner's log."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate verification failed: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS handshake failed: {exc.reason or exc}"
    if isinstance(exc, OSError):
        return f"cannot connect: {exc.strerror or exc}"
    if exc is not None:
        return f"cannot connect: {exc}"
    return "cannot connect"


class _BridgeWatcher(Watcher):
    """The bridge's words for what happens to the connection (network thread)."""

    def __init__(self, bridge: HomeAssistantBridge) -> None:
        self._bridge = bridge

    def attempt(self) -> None:
        self._bridge._attempt_begins()

    def unreachable(self, cause: BaseException | None) -> None:
        self._bridge._failed(describe_failure(cause))

    def refused(self, reason: ReasonCode) -> None:
        self._bridge._failed(f"the broker refused the connection: {reason}")

    def up(self, session_present: bool) -> None:
        self._bridge._up()

    def down(self, reason: ReasonCode, was_up: bool, stopping: bool) -> None:
        self._bridge._down(reason, was_up, stopping)

    def paho_error(self, text: str) -> None:
        # A broker that refuses the client certificate under TLS 1.3 does so after the
        # handshake: paho only logs the alert as a read error, then disconnects.
        self._bridge._attempt_error = text


class HomeAssistantBridge:
    """Publishes discovery, availability and states to the owner's broker.

    `start()` connects in the background (raises TransportError only when the
    connection cannot even be attempted, e.g. an unresolvable host or TLS material that
    does not load); `pressed()` and `motion()` never raise; `stop()` publishes
    ``offline`` and disconnects. The broker publishes the retained ``offline`` last will
    if the agent dies without `stop()`. The constructor raises ConfigError when the
    password file cannot be used.
    """

    def __init__(
        self,
        settings: HomeAssistantSettings,
        *,
        device_id: str,
        sw_version: str | None = None,
        connect_timeout_s: float = 10.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self.entities = Entities.for_device(device_id, settings.discovery_prefix)
        self._device_name = f"Doorbell {device_id}"
        self._sw_version = sw_version or software_version()
        self._last_motion: bool | None = None
        self._lock = threading.Lock()
        self._connect_timeout_s = connect_timeout_s
        self._announced = threading.Event()
        self._announcement: list[Delivery] = []
        self._held: deque[tuple[float, Message]] = deque(maxlen=PRESS_HOLD_COUNT)
        self._monotonic = monotonic
        self._broker = f"{settings.host}:{settings.port}"
        self._last_error: str | None = None
        self._attempt_reported = False
        self._attempt_error: str | None = None
        if settings.password is not None:
            log.warning(
                "home_assistant.password is in clear in agent.toml: move it to a file "
                "(install -m 0600) named by home_assistant.password_file"
            )
        username = settings.username
        self._session = Session(
            SessionSettings(
                host=settings.host,
                port=settings.port,
                client_id=f"{self.entities.node_id}-ha",
                subscriptions=(self.entities.status_topic,),
                mqtt_v5=False,  # the owner's broker: 3.1.1, a clean session, auto acks
                manual_ack=False,
                reconnect_min_s=1,
                reconnect_max_s=60,
                max_queued_messages=256,
                will=Will(self.entities.availability_topic, PAYLOAD_NOT_AVAILABLE),
                username=username,
                password=settings.broker_password() if username is not None else None,
            ),
            log=log,
            error=TransportError,
            deliver=self._on_message,
            watcher=_BridgeWatcher(self),
        )

    def start(self) -> None:
        """Begin connecting (background thread, reconnects by itself).

        Raises TransportError when the broker address cannot be used at all or the TLS
        material does not load.
        """
        tls = tls_context(self._settings) if self._settings.tls else None
        try:
            self._session.start(tls)
        except (OSError, ValueError) as exc:
            raise TransportError(
                f"home assistant broker {self._settings.host}:{self._settings.port}: {exc}"
            ) from exc

    def wait_connected(self, timeout: float) -> bool:
        return self._session.wait_connected(timeout)

    @property
    def connected(self) -> bool:
        return self._session.connected()

    @property
    def tls(self) -> bool:
        return self._settings.tls

    @property
    def broker(self) -> str:
        """``host:port`` of the owner's broker."""
        return self._broker

    @property
    def last_error(self) -> str | None:
        """Why the latest connection attempt failed (None once connected)."""
        with self._lock:
            return self._last_error

    def pressed(self, at: datetime) -> None:
        """The bell was pressed at `at` (timezone-aware). While the broker is away the
        press waits (at most `PRESS_HOLD_S`, the last `PRESS_HOLD_COUNT`) and is sent on
        reconnection; an older press is no news and is dropped."""
        message = press_message(self.entities, at)
        with self._lock:
            if not self._session.connected():
                self._held.append((self._monotonic(), message))
                return
        self._send(message)

    def motion(self, active: bool) -> None:
        """Motion started (True) or ended (False); repeated states are not re-sent."""
        with self._lock:
            if self._last_motion is active:
                return
            self._last_motion = active
        self._send(motion_message(self.entities, active))

    def withdraw(self) -> None:
        """Remove the entities from Home Assistant (empty retained configs)."""
        for message in withdrawal_messages(self.entities):
            self._send(message)

    def stop(self) -> None:
        """Publish ``offline`` (retained) and disconnect. Idempotent, never raises."""
        self._session.stop(
            last_words=(self.entities.availability_topic, PAYLOAD_NOT_AVAILABLE),
            wait_s=self._connect_timeout_s,
        )

    def wait_announced(self, timeout: float) -> bool:
        """Block until the broker has acknowledged the discovery configs, availability
        and motion state of the latest announcement (so they are retained there)."""
        if not self._announced.wait(timeout):
            return False
        with self._lock:
            deliveries = list(self._announcement)
        try:
            for delivery in deliveries:
                delivery.wait(timeout)
        except TransportError:
            return False
        return True

    def _announce(self) -> None:
        messages = [
            *discovery_messages(
                self.entities, device_name=self._device_name, sw_version=self._sw_version
            ),
            Message(self.entities.availability_topic, PAYLOAD_AVAILABLE, retain=True),
        ]
        with self._lock:
            last = self._last_motion
        messages.append(motion_message(self.entities, bool(last)))
        deliveries = [d for d in map(self._send, messages) if d is not None]
        with self._lock:
            self._announcement = deliveries
        self._announced.set()
        with self._lock:
            held, now = list(self._held), self._monotonic()
            self._held.clear()
        for since, message in held:
            if now - since <= PRESS_HOLD_S:
                self._send(message)

    def _send(self, message: Message) -> Delivery | None:
        if not self._session.connected():
            log.info("home assistant: not connected, dropped %s", message.topic)
            return None
        try:
            return self._session.publish(message.topic, message.payload, retain=message.retain)
        except TransportError as exc:
            log.warning("home assistant: %s", exc)
            return None

    # --- the session's news (network thread, through _BridgeWatcher) ---------------------

    def _failed(self, reason: str) -> None:
        """One warning per connection attempt, naming the broker and the reason."""
        with self._lock:
            self._last_error = reason
            if self._attempt_reported:
                return
            self._attempt_reported = True
        log.warning(
            "home assistant broker %s: %s (retrying with backoff)", self._broker, reason
        )

    def _attempt_begins(self) -> None:
        with self._lock:
            self._attempt_reported = False
            self._attempt_error = None

    def _up(self) -> None:
        with self._lock:
            self._last_error = None
        log.info("home assistant broker %s: connected", self._broker)
        self._announce()

    def _down(self, reason: ReasonCode, was_up: bool, stopping: bool) -> None:
        self._announced.clear()
        if stopping:
            return
        if was_up:
            if reason.is_failure:
                log.warning(
                    "home assistant broker %s: connection lost: %s (reconnecting)",
                    self._broker,
                    reason,
                )
            return
        with self._lock:
            detail = self._attempt_error
        self._failed(f"the connection closed before the broker accepted it: {detail or reason}")

    def _on_message(self, message: Inbound) -> None:
        # Home Assistant's birth message: it (re)started and needs the configs again.
        if message.topic == self.entities.status_topic and message.payload == b"online":
            self._announce()
