"""The running agent from outside: `ring` and `status` over the control socket, and a
clean SIGTERM that seals the clip in progress instead of leaving it truncated."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest

from device.button.control import ControlServer, send_command
from device.button.errors import ControlError
from device.vault import ClipState
from tests.fixtures.agent import AgentEnv
from tests.fixtures.waiting import wait_until


@pytest.mark.slow
def test_ring_and_status_reach_a_running_agent_and_sigterm_seals_the_clip(
    agent_env: AgentEnv,
) -> None:
    # A long post-roll: the clip must still be open when `status` (a new process on a
    # busy machine) asks, and SIGTERM must be what ends it.
    agent_env.write_config(camera={"realtime": True}, recorder={"post_roll_s": 60.0})
    proc = subprocess.Popen(
        agent_env.cli_command("simulate", "--scene", "empty", "--duration", "120"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        sock = agent_env.state_dir / "agent.sock"
        wait_until(f"{sock} to appear", sock.exists)
        assert stat.S_IMODE(sock.stat().st_mode) == 0o600
        # The socket answers a moment before the button is started: a ring in between is
        # refused with that reason, and only that refusal is asked again.
        def ring_taken() -> subprocess.CompletedProcess[str] | None:
            ring = agent_env.cli("ring")
            return None if "not started yet" in ring.stderr else ring

        ring = wait_until("a ring the started button takes", ring_taken, timeout=30,
                          interval=0.1)
        assert ring.returncode == 0, ring.stderr
        assert ring.stdout.strip() == "ok ring"
        # The press is taken up by the camera loop at its next frame: ask until it has
        # been (a hang guard, not a time limit), then check what the agent reports.
        def pressed() -> dict[str, Any] | None:
            status = agent_env.cli("status", "--json")
            assert status.returncode == 0, status.stderr
            live: dict[str, Any] = json.loads(status.stdout)
            # (the count and the recorder are updated a moment apart in the loop)
            done = live["button_presses"] >= 1 and live["recording"] is True
            return live if done else None

        live = wait_until("the press in the agent's status", pressed, timeout=30,
                          interval=0.1)
        assert live["recording"] is True
        assert live["button_presses"] == 1
        assert live["clock"]["simulated"] is True
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not sock.exists()  # removed on a clean stop
    [clip] = agent_env.clips()
    assert clip.state is ClipState.SEALED  # finished and sealed, not truncated
    assert [e.kind for e in clip.events] == ["button"]
    final = json.loads((agent_env.state_dir / "status.json").read_text())
    assert final["state"] == "stopped"
    assert final["recording"] is False
    assert final["last_clip"]["id"] == clip.id
    # With the agent gone, `status` falls back to the last status file.
    after = agent_env.cli("status", "--json")
    assert after.returncode == 0
    assert json.loads(after.stdout)["state"] == "stopped"
    # For people, a table (doorbell-owner status has one too).
    table = agent_env.cli("status")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["device", "sim-doorbell"]
    assert any(line.startswith("state") and "stopped" in line for line in lines)
    assert any(line.startswith("clips") and "1 sealed" in line for line in lines)
    assert len(lines) < 15


def test_ring_without_a_running_agent_says_so(agent_env: AgentEnv) -> None:
    result = agent_env.cli("ring")
    assert result.returncode == 1
    assert "is the agent running?" in result.stderr


def test_control_socket_answers_unknown_commands_and_replaces_only_stale_sockets(
    tmp_path: Path,
) -> None:
    path = tmp_path / "agent.sock"
    server = ControlServer(path, {"ping": lambda: "pong", "boom": lambda: str(1 / 0)})
    server.start()
    try:
        assert send_command(path, "ping") == "pong"
        with pytest.raises(ControlError, match="unknown command 'dance'; known: boom, ping"):
            send_command(path, "dance")
        with pytest.raises(ControlError, match="division by zero"):
            send_command(path, "boom")
        assert send_command(path, "ping") == "pong"  # a failing handler did not stop it
        second = ControlServer(path, {})
        with pytest.raises(ControlError, match="another agent is listening"):
            second.start()
    finally:
        server.stop()
    # A socket file left by a killed agent is replaced.
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()
    server = ControlServer(path, {"ping": lambda: "pong"})
    server.start()
    try:
        assert send_command(path, "ping") == "pong"
    finally:
        server.stop()
    # A regular file in the way is not deleted.
    path.write_text("not a socket")
    with pytest.raises(ControlError, match="is not a socket"):
        ControlServer(path, {}).start()
    assert path.read_text() == "not a socket"
    os.unlink(path)
