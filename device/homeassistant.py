"""Home Assistant MQTT discovery on the owner's local broker (opt-in, metadata only).

With ``[home_assistant] enabled = true`` the agent announces itself to Home Assistant
through MQTT discovery: a doorbell ``event`` entity (event type ``pressed``), a motion
``binary_sensor`` (device class ``motion``) and their shared availability topic. The
discovery payloads use the field names of Home Assistant's MQTT integration
(``unique_id``, ``device`` with ``identifiers``/``name``/``manufacturer``/``model``/
``sw_version``, ``state_topic``, ``availability_topic``, ``payload_available``,
``payload_not_available``, ``event_types``, ``device_class``), are published retained on
``{discovery_prefix}/{component}/{node_id}/{object_id}/config``, and are sent again
whenever Home Assistant announces itself online on ``{discovery_prefix}/status``.

What crosses to Home Assistant is metadata: that the bell was pressed and when, and
whether motion is seen. Never video, thumbnails, clip ids or keys: the owner's home
automation broker is outside the sealed store's protection.

This broker is the owner's, not the deployment broker: plain MQTT on the LAN by default
(Home Assistant's Mosquitto add-on listens so on 1883), or, recommended, MQTT over TLS
(``tls = true``, 8883 by default): TLS 1.2 at least, the broker's certificate checked
against ``ca_file`` (or the system trust store) and its name against ``host``, with no
switch to turn either check off, and an optional client certificate. The password is
best kept in ``password_file`` (0600); an inline ``password`` works but is warned
about. The bridge never blocks or crashes the agent: it connects in the background and
reconnects by itself with a backoff of 1 s doubling to 60 s; each failed attempt (TLS
refused, name mismatch, wrong password, broker away) is logged once, naming the broker
and the reason, and shows in the agent's status under ``services.home_assistant``.
A press while the broker is away waits up to a minute and is sent on reconnection;
anything older is dropped (a doorbell press from an hour ago is no news), as is a
motion change (the state is re-sent with the announcement).
"""

from __future__ import annotations

import json
import logging
import re
import ssl
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from device.config import HomeAssistantSettings
from device.errors import ConfigError, TransportError
from protocol.tls import TlsMaterialError, client_context

if TYPE_CHECKING:
    from device.service import AgentContext

log = logging.getLogger(__name__)

MANUFACTURER = "sealed-doorbell"
MODEL = "Raspberry Pi sealed doorbell"
STATE_ROOT = "sealed_doorbell"
PAYLOAD_AVAILABLE = "online"
PAYLOAD_NOT_AVAILABLE = "offline"
MOTION_ON = "ON"
MOTION_OFF = "OFF"
EVENT_PRESSED = "pressed"
PRESS_HOLD_S = 60.0  # a press older than this when the broker returns is dropped
PRESS_HOLD_COUNT = 16
_ID_CHARS = re.compile(r"[^a-zA-Z0-9_-]")
_PREFIX_OK = re.compile(r"^[^#+\s]+$")


@dataclass(frozen=True, slots=True)
class Message:
    """One MQTT publication: topic, UTF-8 payload, retain flag."""

    topic: str
    payload: str
    retain: bool


@dataclass(frozen=True, slots=True)
class Entities:
    """The topics of one doorbell's Home Assistant entities."""

    node_id: str
    discovery_prefix: str

    @classmethod
    def for_device(cls, device_id: str, discovery_prefix: str) -> Entities:
        """Raises ConfigError for an empty device id or a discovery prefix with wildcards."""
        if not device_id.strip():
            raise ConfigError("home_assistant: agent.device_id is empty")
        prefix = discovery_prefix.strip("/")
        if not prefix or not _PREFIX_OK.match(prefix):
            raise ConfigError(
                f"home_assistant.discovery_prefix {discovery_prefix!r} is not a plain MQTT topic"
            )
        # Home Assistant accepts only [a-zA-Z0-9_-] in node and object ids.
        return cls(node_id="doorbell_" + _ID_CHARS.sub("_", device_id), discovery_prefix=prefix)

    @property
    def availability_topic(self) -> str:
        return f"{STATE_ROOT}/{self.node_id}/availability"

    @property
    def press_topic(self) -> str:
        return f"{STATE_ROOT}/{self.node_id}/doorbell"

    @property
    def motion_topic(self) -> str:
        return f"{STATE_ROOT}/{self.node_id}/motion"

    @property
    def status_topic(self) -> str:
        """Where Home Assistant announces its own birth (``online``) and will."""
        return f"{self.discovery_prefix}/status"

    def config_topic(self, component: str, object_id: str) -> str:
        return f"{self.discovery_prefix}/{component}/{self.node_id}/{object_id}/config"


def software_version() -> str:
    try:
        return metadata.version("sealed-doorbell")
    except metadata.PackageNotFoundError:
        return "unknown"


def discovery_messages(
    entities: Entities, *, device_name: str, sw_version: str
) -> tuple[Message, ...]:
    """The retained discovery configs for the doorbell event and the motion sensor."""
    device = {
        "identifiers": [entities.node_id],
        "name": device_name,
        "manufacturer": MANUFACTURER,
        "model": MODEL,
        "sw_version": sw_version,
    }
    origin = {"name": MANUFACTURER, "sw_version": sw_version}
    common: dict[str, Any] = {
        "availability_topic": entities.availability_topic,
        "payload_available": PAYLOAD_AVAILABLE,
        "payload_not_available": PAYLOAD_NOT_AVAILABLE,
        "device": device,
        "origin": origin,
        "qos": 1,
    }
    event = {
        "name": "Doorbell",
        "unique_id": f"{entities.node_id}_doorbell",
        "device_class": "doorbell",
        "event_types": [EVENT_PRESSED],
        "state_topic": entities.press_topic,
        **common,
    }
    motion = {
        "name": "Motion",
        "unique_id": f"{entities.node_id}_motion",
        "device_class": "motion",
        "state_topic": entities.motion_topic,
        "payload_on": MOTION_ON,
        "payload_off": MOTION_OFF,
        **common,
    }
    return (
        Message(entities.config_topic("event", "doorbell"), _json(event), retain=True),
        Message(entities.config_topic("binary_sensor", "motion"), _json(motion), retain=True),
    )


def withdrawal_messages(entities: Entities) -> tuple[Message, ...]:
    """Empty retained configs: Home Assistant removes the entities (owner opted out)."""
    return (
        Message(entities.config_topic("event", "doorbell"), "", retain=True),
        Message(entities.config_topic("binary_sensor", "motion"), "", retain=True),
        Message(entities.availability_topic, "", retain=True),
    )


def press_message(entities: Entities, at: datetime) -> Message:
    """A doorbell press: the event type and the time, nothing else. Not retained (an
    event replayed to a Home Assistant that restarts would ring the bell again)."""
    if at.tzinfo is None:
        raise ValueError("press time must be timezone-aware")
    stamp = at.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return Message(
        entities.press_topic, _json({"event_type": EVENT_PRESSED, "at": stamp}), retain=False
    )


def motion_message(entities: Entities, active: bool) -> Message:
    """The motion sensor's state, retained so a restarted Home Assistant sees it."""
    return Message(entities.motion_topic, MOTION_ON if active else MOTION_OFF, retain=True)


def _json(value: dict[str, Any]) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


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
        self._connected = threading.Event()
        self._last_motion: bool | None = None
        self._lock = threading.Lock()
        self._connect_timeout_s = connect_timeout_s
        self._announced = threading.Event()
        self._announcement: list[mqtt.MQTTMessageInfo] = []
        self._held: deque[tuple[float, Message]] = deque(maxlen=PRESS_HOLD_COUNT)
        self._monotonic = monotonic
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=f"{self.entities.node_id}-ha",
            protocol=mqtt.MQTTv311,
            clean_session=True,
        )
        self._broker = f"{settings.host}:{settings.port}"
        self._last_error: str | None = None
        self._attempt_reported = False
        self._attempt_error: str | None = None
        self._stopping = False
        if settings.password is not None:
            log.warning(
                "home_assistant.password is in clear in agent.toml: move it to a file "
                "(install -m 0600) named by home_assistant.password_file"
            )
        if settings.username is not None:
            client.username_pw_set(settings.username, settings.broker_password())
        client.will_set(self.entities.availability_topic, PAYLOAD_NOT_AVAILABLE, qos=1, retain=True)
        client.reconnect_delay_set(min_delay=1, max_delay=60)
        client.max_queued_messages_set(256)
        client.on_pre_connect = self._on_pre_connect
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_log = self._on_log
        self._client = client

    def start(self) -> None:
        """Begin connecting (background thread, reconnects by itself).

        Raises TransportError when the broker address cannot be used at all or the TLS
        material does not load.
        """
        if self._settings.tls:
            self._client.tls_set_context(tls_context(self._settings))
        try:
            self._client.connect_async(self._settings.host, self._settings.port, keepalive=30)
        except (OSError, ValueError) as exc:
            raise TransportError(
                f"home assistant broker {self._settings.host}:{self._settings.port}: {exc}"
            ) from exc
        if self._client.loop_start() != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise TransportError("home assistant bridge: cannot start the MQTT network loop")

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

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
            if not self._connected.is_set():
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
        self._stopping = True
        if self._connected.is_set():
            info = self._client.publish(
                self.entities.availability_topic, PAYLOAD_NOT_AVAILABLE, qos=1, retain=True
            )
            try:
                info.wait_for_publish(timeout=self._connect_timeout_s)
            except (RuntimeError, ValueError) as exc:
                log.warning("home assistant: offline not confirmed: %s", exc)
        self._client.disconnect()
        self._client.loop_stop()
        self._connected.clear()

    def wait_announced(self, timeout: float) -> bool:
        """Block until the broker has acknowledged the discovery configs, availability
        and motion state of the latest announcement (so they are retained there)."""
        if not self._announced.wait(timeout):
            return False
        with self._lock:
            infos = list(self._announcement)
        try:
            for info in infos:
                info.wait_for_publish(timeout)
        except (RuntimeError, ValueError):
            return False
        return all(info.is_published() for info in infos)

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
        infos = [info for info in map(self._send, messages) if info is not None]
        with self._lock:
            self._announcement = infos
        self._announced.set()
        with self._lock:
            held, now = list(self._held), self._monotonic()
            self._held.clear()
        for since, message in held:
            if now - since <= PRESS_HOLD_S:
                self._send(message)

    def _send(self, message: Message) -> mqtt.MQTTMessageInfo | None:
        if not self._connected.is_set():
            log.info("home assistant: not connected, dropped %s", message.topic)
            return None
        info = self._client.publish(message.topic, message.payload, qos=1, retain=message.retain)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            log.warning("home assistant: publish to %s failed: %s", message.topic, info.rc)
            return None
        return info

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

    def _on_pre_connect(self, client: mqtt.Client, userdata: Any) -> None:
        with self._lock:
            self._attempt_reported = False
            self._attempt_error = None

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        # paho calls this from inside its `except OSError:` around the connection
        # attempt (TCP connect and TLS handshake), so the exception is the current one.
        self._failed(describe_failure(sys.exc_info()[1]))

    def _on_log(self, client: mqtt.Client, userdata: Any, level: int, buf: str) -> None:
        # A broker that refuses the client certificate under TLS 1.3 does so after the
        # handshake: paho only logs the alert as a read error, then disconnects.
        if level == mqtt.MQTT_LOG_ERR:
            with self._lock:
                self._attempt_error = buf

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: Any,
        reason: Any,
        properties: Any,
    ) -> None:
        if reason.is_failure:
            self._failed(f"the broker refused the connection: {reason}")
            return
        with self._lock:
            self._last_error = None
        log.info("home assistant broker %s: connected", self._broker)
        self._connected.set()
        client.subscribe(self.entities.status_topic, qos=1)
        self._announce()

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any
    ) -> None:
        was_connected = self._connected.is_set()
        self._connected.clear()
        self._announced.clear()
        if self._stopping:
            return
        if was_connected:
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

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        # Home Assistant's birth message: it (re)started and needs the configs again.
        if msg.topic == self.entities.status_topic and msg.payload == b"online":
            self._announce()


class HomeAssistantService:
    """The agent's Home Assistant service: the bridge plus a watcher of the agent's
    status that turns new button presses and motion changes into states.

    It reads only the agent's status (press counter, motion flag and count of motion
    starts): it cannot see footage or keys, by construction.
    """

    service_name = "home_assistant"

    def __init__(
        self,
        bridge: HomeAssistantBridge,
        status: Callable[[], dict[str, Any]],
        now: Callable[[], datetime],
        *,
        poll_s: float = 0.5,
    ) -> None:
        self.bridge = bridge
        self._status = status
        self._now = now
        self._poll_s = poll_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._presses: int | None = None
        self._motion_starts: int | None = None

    def start(self) -> None:
        """Connect in the background and start watching. Raises TransportError only for
        a broker address that cannot be used at all."""
        # The baseline is taken now, before the agent's loop runs, so that a press in
        # the first half second is not mistaken for the starting count.
        self._presses = 0
        self._motion_starts = 0
        self.poll()
        self.bridge.start()
        self._stop.clear()
        self._thread = threading.Thread(target=self._watch, name="home-assistant", daemon=True)
        self._thread.start()

    def service_report(self) -> dict[str, Any]:
        """For the agent's status: ``connected`` or ``connecting`` (with the reason the
        latest attempt failed), the broker and whether TLS is used."""
        bridge = self.bridge
        report: dict[str, Any] = {
            "state": "connected" if bridge.connected else "connecting",
            "broker": bridge.broker,
            "tls": bridge.tls,
        }
        error = bridge.last_error
        if error is not None and not bridge.connected:
            report["reason"] = error
        return report

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self.poll()  # a press in the last half second still reaches Home Assistant
        self.bridge.stop()

    def poll(self) -> None:
        """Publish what changed since the last look. Never raises."""
        try:
            status = self._status()
        except Exception as exc:
            log.warning("home assistant: agent status unavailable: %s", exc)
            return
        presses = status.get("button_presses")
        if isinstance(presses, int):
            if self._presses is not None and presses > self._presses:
                for _ in range(presses - self._presses):
                    self.bridge.pressed(self._now())
            self._presses = presses
        motion = status.get("motion")
        if not isinstance(motion, dict) or not isinstance(motion.get("active"), bool):
            return
        starts = motion.get("starts")
        if isinstance(starts, int):
            # A visit shorter than the poll interval still shows as ON, then OFF.
            if self._motion_starts is not None and starts > self._motion_starts:
                self.bridge.motion(True)
            self._motion_starts = starts
        self.bridge.motion(motion["active"])

    def _watch(self) -> None:
        while not self._stop.wait(self._poll_s):
            self.poll()


def make_service(context: AgentContext) -> HomeAssistantService | None:
    """The agent's hook (`device.agent.SERVICE_MODULES`): the Home Assistant service
    when ``[home_assistant] enabled``, else None. Raises ConfigError for a bad prefix."""
    settings = context.config.home_assistant
    if not settings.enabled:
        return None
    bridge = HomeAssistantBridge(settings, device_id=context.config.agent.device_id)
    return HomeAssistantService(bridge, context.status, context.clock.now)
