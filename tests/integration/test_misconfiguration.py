"""Misconfiguration is named, not silent: an agent pointed at a wrong MQTT port or host
says which host:port and why, in its log (once, not at every retry) and in its status;
`cloud-stub serve --port` different from the port of `api.url` warns at start-up."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from cloud_stub.cli.serve import api_url_mismatch
from cloud_stub.config import load_deployment
from demo.services import free_port
from device.agent import Agent
from device.clock import ManualClock
from device.config import AgentConfig
from tests.fixtures.deployment import TestDeployment
from tests.fixtures.release import rig_config
from tests.fixtures.waiting import wait_until

LINK_LOG = "device.link"
CAMERA = {"width": 320, "height": 240, "fps": 15, "lores_width": 160, "lores_height": 120,
          "source": "sim", "scene": "empty", "realtime": True}


@contextmanager
def _running(config: AgentConfig) -> Iterator[Agent]:
    agent = Agent.from_config(config, clock=ManualClock(datetime.now(UTC)), simulated=True)
    thread = threading.Thread(target=agent.run, kwargs={"duration_s": 600}, daemon=True)
    thread.start()
    try:
        yield agent
    finally:
        agent.request_stop()
        thread.join(timeout=60)


def _config(deployment: TestDeployment, state: Path, **mqtt: Any) -> AgentConfig:
    bundle = deployment.enroll_device(deployment.new_device_id("mis"))
    base = rig_config(bundle, state)
    return base.model_copy(update={
        "camera": base.camera.model_copy(update=CAMERA),
        "mqtt": base.mqtt.model_copy(update=mqtt),
    })


def _release(agent: Agent) -> dict[str, Any]:
    report: dict[str, Any] = agent.status()["services"]["release"]
    return report


def test_a_wrong_port_is_named_with_its_cause(
    deployment: TestDeployment, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()  # nothing listens there
    caplog.set_level(logging.WARNING, logger=LINK_LOG)
    config = _config(deployment, tmp_path / "state", port=port)
    with _running(config) as agent:
        wait_until("the link's problem in the status",
                   lambda: "link_problem" in _release(agent), timeout=30, interval=0.2)
        problem = _release(agent)["link_problem"]
        time.sleep(3)  # a few retries
    assert f"127.0.0.1:{port}" in problem
    assert "connection refused" in problem
    assert _release(agent)["connected"] is False
    logged = [r.getMessage() for r in caplog.records if r.name == LINK_LOG]
    assert any(f"127.0.0.1:{port}" in m and "connection refused" in m for m in logged), logged
    assert len([m for m in logged if "connection refused" in m]) == 1, logged
    assert not any("Unspecified error" in m for m in logged), logged


def test_a_wrong_host_is_named_with_its_cause(deployment: TestDeployment, tmp_path: Path) -> None:
    config = _config(deployment, tmp_path / "state", host="no-such-broker.invalid")
    with _running(config) as agent:
        wait_until("the link's problem in the status",
                   lambda: "link_problem" in _release(agent), timeout=30, interval=0.2)
        problem = _release(agent)["link_problem"]
    assert "no-such-broker.invalid:" in problem
    assert "does not resolve" in problem


def _serve_output(deployment: TestDeployment, tmp_path: Path, port: int,
                  *mqtt: str) -> str:
    """`cloud-stub serve --port PORT` as a process, until it answers; its log so far.
    Without `mqtt` options it runs with --no-mqtt. The keys `serve` refuses to hold go
    off the host first (ADR 0013)."""
    if deployment.layout.offline_root_dir.exists():
        deployment.move_keys_off_host()
    command = [str(Path(sys.executable).parent / "cloud-stub"), "serve", "--deployment",
               str(deployment.layout.root), "--store-url",
               f"sqlite:///{tmp_path / f'serve-{port}.sqlite3'}", "--port", str(port),
               *(mqtt or ("--no-mqtt",))]
    log_path = tmp_path / f"serve-{port}.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        try:
            wait_until("serve to answer", lambda: _answers(port) or process.poll() is not None,
                       timeout=30, interval=0.2)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=20)
    return log_path.read_text()


def _answers(port: int) -> bool:
    try:
        httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
    except httpx.TransportError:
        return False
    return True


def test_serve_warns_when_its_port_is_not_the_api_urls(
    fresh_deployment: TestDeployment, tmp_path: Path
) -> None:
    api_url = load_deployment(fresh_deployment.layout).api.url
    assert api_url_mismatch(api_url, urlsplit(api_url).port or 80) is None
    port = free_port()
    output = _serve_output(fresh_deployment, tmp_path, port)
    assert f"serve listens on port {port} but api.url in deployment.toml is {api_url}" in output
    assert "uploads will not reach this server" in output


def test_serve_names_a_broker_it_cannot_reach(
    fresh_deployment: TestDeployment, tmp_path: Path
) -> None:
    nobody = free_port()
    port = free_port()
    output = _serve_output(fresh_deployment, tmp_path, port, "--broker-host", "127.0.0.1",
                           "--broker-port", str(nobody))
    assert f"cannot reach the MQTT broker at 127.0.0.1:{nobody}: connection refused" in output


def test_serve_beside_a_readable_root_key_refuses_before_it_opens_the_store(
    fresh_deployment: TestDeployment, tmp_path: Path
) -> None:
    """The refusal names each key and is the first thing `serve` prints: no store is
    created or migrated on a host that should not be running the service at all."""
    store = tmp_path / "never.sqlite3"
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "cloud-stub"), "serve", "--deployment",
         str(fresh_deployment.layout.root), "--store-url", f"sqlite:///{store}",
         "--no-mqtt", "--port", "9"],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert proc.returncode == 1, proc
    lines = proc.stderr.strip().splitlines()
    assert lines, proc
    assert lines[0].startswith("cloud-stub serve: refusing to start: "), lines
    root_key = sorted(fresh_deployment.layout.offline_root_dir.glob("*.key"))[0]
    assert any(str(root_key) in line and "is a root key" in line for line in lines), lines
    assert "alembic" not in proc.stderr
    assert not store.exists()
