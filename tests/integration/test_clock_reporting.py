"""The clock, said the same way everywhere: a token deferred for an unsynchronized clock
is logged on the device, and under `release.clock = "unsafe-assume-synchronized"` the
agent's status says synchronized, as the release side judges (so the owner's status,
built from both, no longer shows "no" beside "yes")."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import tomli_w

from device.release.service import ReleaseService
from device.status_file import STATUS_FILE
from protocol.topics import DeviceTopics
from tests.fixtures.agent import AgentEnv
from tests.fixtures.broker import Broker, Inbox, subscribe
from tests.fixtures.deployment import TestDeployment
from tests.fixtures.evidence import EvidenceEndpoint
from tests.fixtures.release import DeviceRig, Minter


@pytest.fixture
def service(release_rig: DeviceRig) -> Iterator[ReleaseService]:
    service = release_rig.service()
    try:
        yield service
    finally:
        service.stop()


def test_a_deferred_token_is_logged_once(
    release_rig: DeviceRig, evidence: EvidenceEndpoint, service: ReleaseService,
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = release_rig.clock.now()
    release_rig.record(now - timedelta(minutes=30), 5)
    minter = Minter(release_rig, evidence.base)
    claims = minter.claims(now - timedelta(hours=1), now - timedelta(minutes=1))
    token = minter.sign(claims)
    release_rig.clock.set_synchronized(False)
    caplog.set_level(logging.INFO, logger="device.release.handler")
    assert service.handler.handle(token).status == "deferred"
    service.handler.handle(token)  # the cloud's redelivery of the same bytes
    logged = [r.getMessage() for r in caplog.records if "deferred" in r.getMessage()]
    assert len(logged) == 1, logged
    assert claims.jti in logged[0]
    assert "synchronized" in logged[0]


def test_the_agents_status_follows_the_clock_setting(agent_env: AgentEnv) -> None:
    agent_env.write_config(release={"clock": "unsafe-assume-synchronized"},
                           camera={"realtime": True})
    process = subprocess.Popen(agent_env.cli_command("run"), stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    status_path = agent_env.state_dir / STATUS_FILE
    try:
        deadline = time.monotonic() + 60
        status: dict[str, object] = {}
        while time.monotonic() < deadline and process.poll() is None:
            if status_path.exists():
                status = json.loads(status_path.read_text())
                if status.get("state") == "running":
                    break
            time.sleep(0.2)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
        _, err = process.communicate(timeout=60)
    assert status.get("state") == "running", err
    clock = status["clock"]
    assert isinstance(clock, dict)
    assert clock["synchronized"] is True


@pytest.mark.broker
def test_the_retained_status_says_one_thing_about_the_clock(
    deployment: TestDeployment, broker: Broker, tmp_path: Path
) -> None:
    """What the owner's `doorbell-owner status` shows: the agent's clock and the release
    side's clock, from a real `doorbell-agent run` under the clock override."""
    bundle = deployment.enroll_device(deployment.new_device_id("clk"))
    raw = tomllib.loads(bundle.config.read_text())
    raw["agent"]["state_dir"] = str(tmp_path / "state")
    raw["mqtt"].update(host=broker.host, port=broker.port)
    raw["release"]["clock"] = "unsafe-assume-synchronized"
    raw["camera"] = {"width": 320, "height": 240, "fps": 10, "lores_width": 160,
                     "lores_height": 120, "scene": "empty"}
    config = tmp_path / "agent.toml"
    config.write_text(tomli_w.dumps(raw))
    device_id = bundle.device_id_file.read_text().strip()
    inbox = Inbox()
    client = broker.client("cloud", inbox=inbox)
    subscribe(client, DeviceTopics(device_id, deployment.prefix).status)
    agent = subprocess.Popen([str(Path(sys.executable).parent / "doorbell-agent"), "--config",
                              str(config), "run"], stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        health: dict[str, object] = {}
        deadline = time.monotonic() + 60
        while "release_clock_synchronized" not in health and time.monotonic() < deadline:
            try:
                message = json.loads(inbox.get(timeout=5).payload)
            except AssertionError:
                continue
            health = message
    finally:
        os.killpg(agent.pid, signal.SIGTERM)
        _, err = agent.communicate(timeout=60)
    assert "release_clock_synchronized" in health, err
    assert health["clock_synchronized"] is True, health
    assert health["release_clock_synchronized"] is True, health
