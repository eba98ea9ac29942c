"""Home Assistant discovery over TLS with a password file, against a real mosquitto.

The broker (tests/fixtures/home_assistant.py) is configured as the Mosquitto add-on
with ``certfile``/``keyfile``: a TLS listener whose certificate, from a test CA, names
``localhost`` only, password logins and no ACL, anonymous refused. Proved here:

- with ``tls``, ``ca_file`` and a 0600 ``password_file``, the discovery configs
  (retained) and a ring reach a Home Assistant stand-in;
- with another CA, or an address the certificate does not carry (127.0.0.1), nothing
  connects, a warning names the broker and the TLS reason, and a running agent keeps
  recording with its status showing the reason; each is paired with the same settings
  that do connect, so the failure is the certificate check's;
- with mutual TLS, a client certificate the broker's CA did not sign is refused and
  logged, one it signed connects; a wrong password is refused and logged.

Waits are hang guards (`WAIT_S`), never measurements.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from device.agent import Agent
from device.clock import ManualClock
from device.config import HomeAssistantSettings
from device.homeassistant_bridge import HomeAssistantBridge
from tests.fixtures.agent import T0, AgentEnv
from tests.fixtures.home_assistant import (
    WAIT_S,
    BrokerTls,
    HomeAssistantBroker,
    HomeAssistantSide,
    HomePki,
    LogWatch,
    client_context,
    running_home_assistant_broker,
    write_private,
)

pytestmark = pytest.mark.broker

USER, PASSWORD = "doorbell", "correct horse battery"
LOGGER = "device.homeassistant"


@dataclass(frozen=True)
class TlsSetup:
    broker: HomeAssistantBroker
    pki: HomePki
    other: HomePki  # a CA the broker's certificate does not come from
    password_file: Path

    def settings(self, host: str = "localhost", **changes: object) -> HomeAssistantSettings:
        values: dict[str, object] = {
            "enabled": True,
            "host": host,
            "port": self.broker.port,
            "tls": True,
            "ca_file": self.pki.ca,
            "username": USER,
            "password_file": self.password_file,
        }
        values.update(changes)
        return HomeAssistantSettings.model_validate(values)

    def home_assistant(self, topics: list[str]) -> HomeAssistantSide:
        return HomeAssistantSide(
            self.broker.port,
            topics,
            host="localhost",
            tls=client_context(self.pki.ca),
            login=(USER, PASSWORD),
        )


def _setup(tmp_path: Path, *, require_certificate: bool) -> Iterator[TlsSetup]:
    pki = HomePki(tmp_path / "pki", ("localhost",))
    other = HomePki(tmp_path / "other", ("localhost",), name="other")
    password_file = write_private(tmp_path / "ha-password", f"{PASSWORD}\n".encode())
    with running_home_assistant_broker(
        tmp_path / "ha-broker",
        tls=BrokerTls(pki, require_certificate=require_certificate),
        users={USER: PASSWORD},
    ) as broker:
        yield TlsSetup(broker, pki, other, password_file)


@pytest.fixture
def tls(tmp_path: Path) -> Iterator[TlsSetup]:
    yield from _setup(tmp_path, require_certificate=False)


@pytest.fixture
def mutual_tls(tmp_path: Path) -> Iterator[TlsSetup]:
    yield from _setup(tmp_path, require_certificate=True)


def test_discovery_and_a_ring_arrive_over_tls_with_a_password_file(tls: TlsSetup) -> None:
    bridge = HomeAssistantBridge(tls.settings(), device_id="porch", sw_version="9.9.9")
    ents = bridge.entities
    try:
        bridge.start()
        assert bridge.wait_announced(WAIT_S)
        ha = tls.home_assistant(["homeassistant/#", "sealed_doorbell/#"])
        try:
            retained = ha.retained(4)  # two configs, availability, motion state
            event = json.loads(retained[ents.config_topic("event", "doorbell")].payload)
            assert event["event_types"] == ["pressed"]
            assert event["state_topic"] == ents.press_topic
            motion = retained[ents.config_topic("binary_sensor", "motion")]
            assert json.loads(motion.payload)["device_class"] == "motion"
            assert retained[ents.availability_topic].payload == b"online"

            bridge.pressed(datetime(2026, 5, 4, 9, 30, tzinfo=UTC))
            ring = ha.until(ents.press_topic)
            assert json.loads(ring.payload) == {
                "event_type": "pressed",
                "at": "2026-05-04T09:30:00Z",
            }
        finally:
            ha.close()
    finally:
        bridge.stop()
    # The broker refuses anonymous clients: the connection above used the file's password.
    assert f"u'{USER}'" in tls.broker.log()


@pytest.mark.parametrize(
    ("host", "ca", "reason"),
    [
        ("localhost", "other", "certificate verification failed"),
        ("127.0.0.1", "pki", "IP address mismatch"),
    ],
    ids=["unknown-ca", "name-mismatch"],
)
def test_a_certificate_the_agent_cannot_verify_is_logged_and_nothing_connects(
    tls: TlsSetup, host: str, ca: str, reason: str
) -> None:
    ca_file = tls.other.ca if ca == "other" else tls.pki.ca
    broker = f"{host}:{tls.broker.port}"
    with LogWatch(LOGGER) as watch:
        bridge = HomeAssistantBridge(tls.settings(host, ca_file=ca_file), device_id="porch")
        try:
            bridge.start()
            [line] = watch.wait_for(f"home assistant broker {broker}: TLS")
            assert reason in line
            assert not bridge.connected
            assert bridge.last_error is not None
            assert reason in bridge.last_error
            # Retried with the backoff, and the next attempt is logged again.
            lines = watch.wait_for(f"home assistant broker {broker}: TLS", count=2)
            assert all(reason in m for m in lines)
            assert not bridge.connected
        finally:
            bridge.stop()
    assert "New client connected" not in tls.broker.log()

    # Control: the same settings with the broker's CA and a name it carries connect.
    good = HomeAssistantBridge(tls.settings("localhost"), device_id="porch")
    try:
        good.start()
        assert good.wait_connected(WAIT_S)
        assert good.last_error is None
    finally:
        good.stop()
    assert "New client connected" in tls.broker.log()


def test_the_agent_keeps_recording_while_tls_fails(tls: TlsSetup, agent_env: AgentEnv) -> None:
    """A broker whose certificate the agent cannot verify costs Home Assistant, not the
    recording: the agent runs, records a clip and reports the reason in its status."""
    agent_env.write_config(
        agent={"device_id": "porch"},
        home_assistant={
            "enabled": True,
            "host": "localhost",
            "port": tls.broker.port,
            "tls": True,
            "ca_file": str(tls.other.ca),
            "username": USER,
            "password_file": str(tls.password_file),
        },
    )
    config = agent_env.config()
    camera = config.camera.model_copy(update={"source": "sim", "scene": "visitor"})
    agent = Agent.from_config(
        config.model_copy(update={"camera": camera}), clock=ManualClock(T0), simulated=True
    )
    errors: list[BaseException] = []

    def run() -> None:
        try:
            agent.run(duration_s=600.0)
        except BaseException as exc:  # reported below
            errors.append(exc)

    with LogWatch(LOGGER) as watch:
        runner = threading.Thread(target=run, name="agent")
        runner.start()
        try:
            watch.wait_for(f"home assistant broker localhost:{tls.broker.port}: TLS")
            deadline = time.monotonic() + WAIT_S  # hang guard only
            status = agent.status()
            while status["clips_sealed"] < 1 and runner.is_alive():
                assert time.monotonic() < deadline, f"no clip within {WAIT_S} s: {status}"
                time.sleep(0.05)
                status = agent.status()
            report = status["services"]["home_assistant"]
        finally:
            agent.request_stop()
            runner.join(WAIT_S)
    assert not runner.is_alive()
    assert errors == []
    assert status["clips_sealed"] >= 1
    assert report["state"] == "connecting"
    assert report["broker"] == f"localhost:{tls.broker.port}"
    assert report["tls"] is True
    assert "certificate verification failed" in report["reason"]
    assert agent_env.clips()


def test_mutual_tls_refuses_a_client_certificate_from_another_ca(mutual_tls: TlsSetup) -> None:
    foreign = mutual_tls.other.client("doorbell")
    broker = f"localhost:{mutual_tls.broker.port}"
    with LogWatch(LOGGER) as watch:
        bridge = HomeAssistantBridge(
            mutual_tls.settings(client_cert=foreign.cert, client_key=foreign.key),
            device_id="porch",
        )
        try:
            bridge.start()
            [line] = watch.wait_for(f"home assistant broker {broker}:")
            assert "unknown ca" in line.lower()
            assert not bridge.connected
        finally:
            bridge.stop()

    own = mutual_tls.pki.client("doorbell")
    bridge = HomeAssistantBridge(
        mutual_tls.settings(client_cert=own.cert, client_key=own.key), device_id="porch"
    )
    try:
        bridge.start()
        assert bridge.wait_connected(WAIT_S)
    finally:
        bridge.stop()


def test_a_wrong_password_is_refused_and_logged(tls: TlsSetup, tmp_path: Path) -> None:
    wrong = write_private(tmp_path / "wrong-password", b"not it\n")
    broker = f"localhost:{tls.broker.port}"
    with LogWatch(LOGGER) as watch:
        bridge = HomeAssistantBridge(tls.settings(password_file=wrong), device_id="porch")
        try:
            bridge.start()
            [line] = watch.wait_for(f"home assistant broker {broker}: the broker refused")
            assert "Not authorized" in line or "Bad user name or password" in line
            assert not bridge.connected
        finally:
            bridge.stop()

