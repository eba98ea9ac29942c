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

This broker is the owner's, not the deployment broker: plain MQTT on the LAN with an
optional user name and password. The bridge never blocks or crashes the agent: it
connects in the background and reconnects by itself. A press while the broker is away
waits up to a minute and is sent on reconnection; anything older is dropped (a doorbell
press from an hour ago is no news), as is a motion change (the state is re-sent with
the announcement).
"""

from __future__ import annotations

import json
import logging
import re
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

if TYPE_CHECKING:
    from device.agent import AgentContext

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


class HomeAssistantBridge:
    """Publishes discovery, availability and states to the owner's broker.

    `start()` connects in the background (raises TransportError only when the
    connection cannot even be attempted, e.g. an unresolvable host); `pressed()` and
    `motion()` never raise; `stop()` publishes ``offline`` and disconnects. The broker
    publishes the retained ``offline`` last will if the agent dies without `stop()`.
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
        if settings.username is not None:
            client.username_pw_set(settings.username, settings.password)
        client.will_set(self.entities.availability_topic, PAYLOAD_NOT_AVAILABLE, qos=1, retain=True)
        client.reconnect_delay_set(min_delay=1, max_delay=60)
        client.max_queued_messages_set(256)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        self._client = client

    def start(self) -> None:
        """Begin connecting (background thread, reconnects by itself).

        Raises TransportError when the broker address cannot be used at all.
        """
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

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: Any,
        reason: Any,
        properties: Any,
    ) -> None:
        if reason.is_failure:
            log.warning("home assistant broker refused the connection: %s", reason)
            return
        self._connected.set()
        client.subscribe(self.entities.status_topic, qos=1)
        self._announce()

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any
    ) -> None:
        self._connected.clear()
        self._announced.clear()

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
