"""What the doorbell tells Home Assistant, as MQTT messages: pure, no I/O.

The discovery payloads use the field names of Home Assistant's MQTT integration
(``unique_id``, ``device`` with ``identifiers``/``name``/``manufacturer``/``model``/
``sw_version``, ``state_topic``, ``availability_topic``, ``payload_available``,
``payload_not_available``, ``event_types``, ``device_class``) and are published retained
on ``{discovery_prefix}/{component}/{node_id}/{object_id}/config``. What crosses is
metadata: that the bell was pressed and when, and whether motion is seen; never video,
thumbnails, clip ids or keys. The bridge that publishes them is `device.homeassistant`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from typing import Any

from device.errors import ConfigError

MANUFACTURER = "sealed-doorbell"
MODEL = "Raspberry Pi sealed doorbell"
STATE_ROOT = "sealed_doorbell"
PAYLOAD_AVAILABLE = "online"
PAYLOAD_NOT_AVAILABLE = "offline"
MOTION_ON = "ON"
MOTION_OFF = "OFF"
EVENT_PRESSED = "pressed"
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
