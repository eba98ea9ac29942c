"""Home Assistant discovery against a real mosquitto (plain, loopback, started here).

The owner's Home Assistant broker is a local broker, not the deployment's TLS broker,
so the test starts its own plain, anonymous mosquitto on a free 127.0.0.1 port
(tests/fixtures/home_assistant.py; it moves to a fresh port when another process took
the chosen one first). TLS and passwords: test_homeassistant_tls.py. A second client
plays Home Assistant: it subscribes after the bridge has announced itself, so every
config it receives with the retain flag set proves the config was retained on the
broker. Every wait is a hang guard, never a measurement.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from device.config import HomeAssistantSettings
from device.errors import ConfigError
from device.homeassistant import HomeAssistantService
from device.homeassistant_bridge import HomeAssistantBridge
from device.homeassistant_messages import Entities, discovery_messages
from tests.fixtures.agent import AgentEnv
from tests.fixtures.home_assistant import (
    WAIT_S,
    HomeAssistantSide,
    Seen,
    running_home_assistant_broker,
)

pytestmark = pytest.mark.broker

@pytest.fixture
def broker(tmp_path: Path) -> Iterator[int]:
    """A plain, anonymous mosquitto on 127.0.0.1; yields its port."""
    with running_home_assistant_broker(tmp_path / "ha-broker") as instance:
        yield instance.port


def settings(port: int) -> HomeAssistantSettings:
    return HomeAssistantSettings(enabled=True, host="127.0.0.1", port=port)


def test_discovery_is_retained_then_states_follow(broker: int) -> None:
    bridge = HomeAssistantBridge(settings(broker), device_id="porch.1", sw_version="9.9.9")
    bridge.start()
    assert bridge.wait_announced(WAIT_S)
    ents = bridge.entities
    event_topic = "homeassistant/event/doorbell_porch_1/doorbell/config"
    motion_topic = "homeassistant/binary_sensor/doorbell_porch_1/motion/config"
    ha = HomeAssistantSide(broker, ["homeassistant/#", "sealed_doorbell/#"])
    try:
        retained = ha.retained(4)  # two configs, availability, motion state
        assert set(retained) == {
            event_topic,
            motion_topic,
            ents.availability_topic,
            ents.motion_topic,
        }

        event = json.loads(retained[event_topic].payload)
        assert event["unique_id"] == "doorbell_porch_1_doorbell"
        assert event["event_types"] == ["pressed"]
        assert event["device_class"] == "doorbell"
        assert event["state_topic"] == ents.press_topic
        motion = json.loads(retained[motion_topic].payload)
        assert motion["unique_id"] == "doorbell_porch_1_motion"
        assert motion["device_class"] == "motion"
        assert motion["state_topic"] == ents.motion_topic
        assert (motion["payload_on"], motion["payload_off"]) == ("ON", "OFF")
        for config in (event, motion):
            assert config["availability_topic"] == ents.availability_topic
            assert config["payload_available"] == "online"
            assert config["payload_not_available"] == "offline"
            assert config["device"] == {
                "identifiers": ["doorbell_porch_1"],
                "name": "Doorbell porch.1",
                "manufacturer": "sealed-doorbell",
                "model": "Raspberry Pi sealed doorbell",
                "sw_version": "9.9.9",
            }
        assert retained[ents.availability_topic].payload == b"online"
        assert retained[ents.motion_topic].payload == b"OFF"

        # Live states follow, in order.
        bridge.motion(True)
        bridge.motion(True)  # unchanged state is not sent twice
        at = datetime(2025, 5, 1, 18, 30, 5, tzinfo=UTC)
        bridge.pressed(at)
        bridge.motion(False)
        first, second, third = ha.next(), ha.next(), ha.next()
        assert (first.topic, first.payload) == (ents.motion_topic, b"ON")
        assert second.topic == ents.press_topic
        assert not second.retain
        assert json.loads(second.payload) == {
            "event_type": "pressed",
            "at": "2025-05-01T18:30:05Z",
        }
        assert (third.topic, third.payload) == (ents.motion_topic, b"OFF")

        # Home Assistant restarts and announces itself: the configs come again.
        ha.publish("homeassistant/status", "online")
        again = ha.until(event_topic)
        assert json.loads(again.payload) == event
        assert ha.until(ents.availability_topic).payload == b"online"

        bridge.stop()
        offline = ha.until(ents.availability_topic)
        assert offline.payload == b"offline"
    finally:
        bridge.stop()
        ha.close()


def test_dead_agent_is_marked_offline_by_the_last_will(broker: int) -> None:
    bridge = HomeAssistantBridge(settings(broker), device_id="porch")
    bridge.start()
    assert bridge.wait_connected(WAIT_S)
    ha = HomeAssistantSide(broker, [bridge.entities.availability_topic])
    try:
        assert ha.next().payload == b"online"
        # Cut the TCP connection without DISCONNECT, as a crash or power cut would.
        sock = bridge._session.socket()
        assert isinstance(sock, socket.socket)
        sock.shutdown(socket.SHUT_RDWR)
        assert ha.until(bridge.entities.availability_topic).payload == b"offline"
    finally:
        bridge.stop()
        ha.close()


def test_payloads_carry_no_video_keys_or_clip_ids() -> None:
    ents = Entities.for_device("porch", "homeassistant")
    for message in discovery_messages(ents, device_name="Doorbell porch", sw_version="1"):
        text = message.payload.lower()
        for word in ("age1", "age-secret", "clip", "key", "mp4", "token"):
            assert word not in text, (message.topic, word)


@pytest.mark.parametrize("prefix", ["", "home/#", "home/+/x", "has space"])
def test_a_wildcard_discovery_prefix_is_refused(prefix: str) -> None:
    with pytest.raises(ConfigError, match="discovery_prefix"):
        Entities.for_device("porch", prefix)


def test_the_service_turns_agent_status_into_states(broker: int) -> None:
    status: dict[str, Any] = {"button_presses": 0, "motion": {"active": False, "starts": 0}}
    at = datetime(2026, 5, 4, 9, 30, tzinfo=UTC)
    bridge = HomeAssistantBridge(settings(broker), device_id="porch")
    service = HomeAssistantService(bridge, lambda: dict(status), lambda: at, poll_s=0.05)
    service.start()
    assert bridge.wait_announced(WAIT_S)
    ents = bridge.entities
    ha = HomeAssistantSide(broker, [ents.press_topic, ents.motion_topic])
    try:
        assert ha.next().payload == b"OFF"  # the retained initial state
        status["motion"] = {"active": True, "starts": 1}
        assert ha.until(ents.motion_topic, b"ON").retain is False
        status["motion"] = {"active": False, "starts": 1}
        assert ha.until(ents.motion_topic, b"OFF").retain is False
        # A visit that began and ended between two looks still shows ON, then OFF.
        status["motion"] = {"active": False, "starts": 2}
        assert ha.until(ents.motion_topic).payload == b"ON"
        assert ha.until(ents.motion_topic).payload == b"OFF"
        status["button_presses"] = 2  # two presses since the last look: two events
        first, second = ha.until(ents.press_topic), ha.until(ents.press_topic)
        for seen in (first, second):
            assert json.loads(seen.payload) == {
                "event_type": "pressed",
                "at": "2026-05-04T09:30:00Z",
            }
        status["button_presses"] = 3
        service.stop()  # the last press is still published before going offline
        assert ha.until(ents.press_topic).topic == ents.press_topic
    finally:
        service.stop()
        ha.close()


@pytest.mark.slow
def test_the_agent_publishes_a_visitor_to_home_assistant(broker: int, agent_env: AgentEnv) -> None:
    agent_env.write_config(
        agent={"device_id": "porch"},
        home_assistant={"enabled": True, "host": "127.0.0.1", "port": broker},
    )
    ents = Entities.for_device("porch", "homeassistant")
    ha = HomeAssistantSide(broker, ["sealed_doorbell/#"])
    try:
        agent_env.run("visitor", 30.0)
        # The run has returned: the agent's stop published ``offline`` and waited for
        # the broker's acknowledgement, so everything before it is on its way. The
        # collection ends at that ``offline`` (a clean stop), or fails at the hang guard.
        seen: list[Seen] = [ha.next()]
        while (seen[-1].topic, seen[-1].payload) != (ents.availability_topic, b"offline"):
            seen.append(ha.next())
    finally:
        ha.close()
    by_topic = [(s.topic, s.payload) for s in seen]
    assert (ents.availability_topic, b"online") in by_topic
    assert (ents.motion_topic, b"ON") in by_topic
    assert any(topic == ents.press_topic for topic, _ in by_topic)


def test_a_press_while_the_broker_is_away_is_sent_on_connection(broker: int) -> None:
    mono = [100.0]
    bridge = HomeAssistantBridge(settings(broker), device_id="porch", monotonic=lambda: mono[0])
    ents = bridge.entities
    ha = HomeAssistantSide(broker, [ents.press_topic])
    try:
        bridge.pressed(datetime(2026, 5, 4, 9, 0, tzinfo=UTC))  # an hour-old press
        mono[0] += 3600
        bridge.pressed(datetime(2026, 5, 4, 10, 0, tzinfo=UTC))  # a recent one
        mono[0] += 5
        bridge.start()
        assert bridge.wait_announced(WAIT_S)
        # Held presses go out oldest first, on one connection, QoS 1 (in order): the
        # first press to arrive being the recent one shows the hour-old one was not sent.
        seen = ha.until(ents.press_topic)
        assert json.loads(seen.payload)["at"] == "2026-05-04T10:00:00Z"
    finally:
        bridge.stop()
        ha.close()
