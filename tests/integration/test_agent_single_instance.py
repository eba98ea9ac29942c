"""A second agent started on the same state directory during a recording stops before
it touches the store, and the running agent's clip ends sealed and whole.

Both are real `doorbell-agent simulate` processes on the simulated camera (the visitor
scene, in real time so the clip is still open when the second one starts).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

from device.vault import ClipState
from tests.fixtures.agent import AgentEnv

PART_WAIT_S = 60.0


def _wait_for_part(state: Path, proc: subprocess.Popen[str]) -> bool:
    deadline = time.monotonic() + PART_WAIT_S
    while time.monotonic() < deadline and proc.poll() is None:
        if list(state.rglob("*.age.part")):
            return True
        time.sleep(0.05)
    return False


def test_a_second_agent_leaves_the_running_agents_clip_intact(agent_env: AgentEnv) -> None:
    agent_env.write_config(camera={"realtime": True})
    first = subprocess.Popen(
        agent_env.cli_command("simulate", "--scene", "visitor", "--duration", "26"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert _wait_for_part(agent_env.state_dir, first), "the first agent never opened a clip"
        part = next(agent_env.state_dir.rglob("*.age.part"))
        second = agent_env.cli("simulate", "--scene", "visitor", "--duration", "5", "--fast")
        assert second.returncode == 1, second.stderr
        assert "another agent" in second.stderr
        assert str(agent_env.state_dir) in second.stderr
        assert "Traceback" not in second.stderr
        assert part.exists(), "the second agent moved the live clip"
        out, err = first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert first.returncode == 0, err
    summary = json.loads(out)
    assert summary["clips_sealed"] == 1
    assert summary["clips_failed"] == 0
    assert "could not be renamed" not in err
    clips = agent_env.clips()
    assert [c.state for c in clips] == [ClipState.SEALED]
    assert clips[0].complete
    plain = agent_env.decrypt(agent_env.clip_path(clips[0].id), agent_env.root / "clip.mp4")
    assert plain.returncode == 0, plain.stderr
    assert (agent_env.root / "clip.mp4").read_bytes()[4:8] == b"ftyp"


def test_the_lock_is_released_when_the_agent_ends(agent_env: AgentEnv) -> None:
    first = agent_env.cli("simulate", "--scene", "empty", "--duration", "1", "--fast")
    assert first.returncode == 0, first.stderr
    again = agent_env.cli("simulate", "--scene", "empty", "--duration", "1", "--fast")
    assert again.returncode == 0, again.stderr


def test_a_state_directory_that_cannot_be_created_is_named(agent_env: AgentEnv) -> None:
    blocker = agent_env.root / "a-file"
    blocker.write_text("not a directory")
    agent_env.write_config(agent={"state_dir": str(blocker / "state")})
    result = agent_env.cli("simulate", "--scene", "empty", "--duration", "1", "--fast")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert f"cannot create the state directory {blocker / 'state'}" in result.stderr
