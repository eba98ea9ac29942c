"""A camera that is missing or fails does not end the daemon: `doorbell-agent run`
reports the error in its status, keeps its control socket answering, reopens the camera
when it comes back, and still stops cleanly on SIGTERM."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.agent import AgentEnv
from tests.fixtures.waiting import wait_until


def read_status(path: Path) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data


@pytest.mark.slow
def test_the_daemon_survives_a_missing_camera_and_picks_it_up_when_it_appears(
    agent_env: AgentEnv, tmp_path: Path
) -> None:
    video = tmp_path / "camera.mp4"
    agent_env.write_config(camera={"source": "file", "file": str(video), "realtime": False})
    status_file = agent_env.state_dir / "status.json"
    proc = subprocess.Popen(
        agent_env.cli_command("run"), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        failed = wait_until(
            "the status to report a camera error",
            lambda: (s := read_status(status_file)) and s["camera"]["errors"] >= 1 and s
        )
        assert "cannot open video file" in failed["camera"]["state"]
        assert failed["state"] == "running"
        time.sleep(1.0)
        assert proc.poll() is None  # still alive
        live = agent_env.cli("status", "--json")
        assert live.returncode == 0
        assert json.loads(live.stdout)["camera"]["state"].startswith("error")
        # The camera comes back (here: the file appears); the agent reads it to its end.
        subprocess.run(
            [
                "ffmpeg",
                "-v",
                "error",
                "-f",
                "lavfi",
                "-i",
                "testsrc=size=320x240:rate=15:duration=2",
                "-pix_fmt",
                "yuv420p",
                str(video),
            ],
            check=True,
        )
        assert proc.wait(timeout=30) == 0  # a file camera's end of stream ends `run`
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
    final = read_status(status_file)
    assert final is not None
    assert final["camera"]["frames"] == 30
    assert final["state"] == "stopped"


@pytest.mark.slow
def test_sigterm_stops_a_daemon_waiting_for_its_camera(agent_env: AgentEnv) -> None:
    agent_env.write_config(camera={"source": "v4l2", "v4l2_device": "/dev/video-missing"})
    # The retry wait is made an hour long, so only an interrupted wait lets the agent end
    # within the hang guard below; no stopwatch on a busy machine decides the outcome.
    command = [
        sys.executable,
        "-c",
        "import sys, device.agent; device.agent.CAMERA_RETRY_S = 3600.0; "
        "from device.cli import main; sys.exit(main(sys.argv[1:]))",
        *agent_env.cli_command("run")[1:],
    ]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_until(
            "the status to report a camera error",
            lambda: (
                (s := read_status(agent_env.state_dir / "status.json"))
                and s["camera"]["errors"] >= 1
            )
        )
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            raise AssertionError("SIGTERM did not interrupt the camera retry wait") from None
        assert code == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    stderr = proc.stderr.read().decode() if proc.stderr else ""
    assert "/dev/video-missing does not exist" in stderr
    assert "Traceback" not in stderr
