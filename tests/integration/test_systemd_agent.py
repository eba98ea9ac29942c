"""The real `doorbell-agent run` talks to a real NOTIFY_SOCKET, as under systemd.

The test binds the datagram socket systemd would create, starts the agent (simulated
camera, real time) with NOTIFY_SOCKET and WATCHDOG_USEC set as systemd sets them for
`Type=notify` + `WatchdogSec=`, and reads: READY=1 with a status, WATCHDOG=1 at about
half the period while the camera loop runs, a status line that says whether release
tokens wait for the clock, and STOPPING=1 after SIGTERM.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.fixtures.agent import AgentEnv

WATCHDOG_USEC = 2_000_000  # WatchdogSec=2s: WATCHDOG=1 every second


def parse(data: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in data.split("\n"):
        key, _, value = line.partition("=")
        fields[key] = value
    return fields


@pytest.mark.slow
def test_ready_watchdog_status_and_stopping_reach_the_notify_socket(
    agent_env: AgentEnv, tmp_path: Path
) -> None:
    agent_env.write_config(
        camera={"source": "sim", "scene": "empty", "realtime": True},
        agent={"control_socket": str(tmp_path / "ctl.sock")},
    )
    address = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(address))
    sock.settimeout(0.5)
    env = {
        **os.environ,
        "NOTIFY_SOCKET": str(address),
        "WATCHDOG_USEC": str(WATCHDOG_USEC),
    }
    launched = time.monotonic()
    proc = subprocess.Popen(
        agent_env.cli_command("run"),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    messages: list[tuple[float, dict[str, str]]] = []
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                data = sock.recv(4096).decode("utf-8")
            except TimeoutError:
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                continue
            messages.append((time.monotonic(), parse(data)))
            if sum("WATCHDOG" in m for _, m in messages) >= 5:
                break
        proc.send_signal(signal.SIGTERM)
        stderr = proc.communicate(timeout=30)[1]
        while True:
            try:
                data = sock.recv(4096).decode("utf-8")
            except TimeoutError:
                break
            messages.append((time.monotonic(), parse(data)))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        sock.close()

    assert proc.returncode == 0, stderr
    fields = [m for _, m in messages]
    ready = [i for i, m in enumerate(fields) if m.get("READY") == "1"]
    dogs = [i for i, m in enumerate(fields) if m.get("WATCHDOG") == "1"]
    stopping = [i for i, m in enumerate(fields) if m.get("STOPPING") == "1"]
    assert len(ready) == 1
    assert len(dogs) >= 5
    assert ready[0] < dogs[0]
    assert stopping
    assert stopping[-1] > dogs[-1]
    # Fed at half the period, never faster (the loop itself runs at 30 fps). The gaps
    # between arrivals are not the agent's gaps (a late read of one message shortens the
    # next gap), so the bound is one no delay can break: all the WATCHDOG=1 before the
    # last one read were sent after launch, at least a half period apart. A loop that fed
    # at every frame would send them within a fraction of a second of its start.
    # (The exact spacing is proved on a fake clock in test_systemd_notify.py.)
    last_dog = messages[dogs[-1]][0]
    assert last_dog - launched >= (len(dogs) - 1) * WATCHDOG_USEC / 2e6
    statuses = [m["STATUS"] for m in fields if "STATUS" in m]
    assert any(
        "clock synchronized" in line or "waiting for time synchronization" in line
        for line in statuses
    ), statuses


@pytest.mark.slow
def test_the_watchdog_is_fed_while_the_agent_waits_for_a_missing_camera(
    agent_env: AgentEnv, tmp_path: Path
) -> None:
    # camera.source = "pi" on a machine without picamera2: every open fails with the
    # install hint, the loop retries, and systemd must not restart an agent that is
    # alive (tokens, escrow and the button do not need the camera).
    agent_env.write_config(
        camera={"source": "pi"}, agent={"control_socket": str(tmp_path / "ctl.sock")}
    )
    address = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(address))
    sock.settimeout(0.5)
    env = {**os.environ, "NOTIFY_SOCKET": str(address), "WATCHDOG_USEC": "30000000"}
    proc = subprocess.Popen(
        agent_env.cli_command("run"), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    dogs = 0
    try:
        deadline = time.monotonic() + 60
        while dogs < 2 and time.monotonic() < deadline:
            try:
                fields = parse(sock.recv(4096).decode("utf-8"))
            except TimeoutError:
                assert proc.poll() is None
                continue
            dogs += fields.get("WATCHDOG") == "1"
        proc.send_signal(signal.SIGTERM)
        stderr = proc.communicate(timeout=30)[1]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        sock.close()
    assert dogs >= 2
    assert proc.returncode == 0
    assert b"sudo apt install python3-picamera2" in stderr
