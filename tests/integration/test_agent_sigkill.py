"""Power-cut safety: SIGKILL the agent at random moments while it records.

Each trial starts ``doorbell-agent simulate`` on the visitor scene (faster than real
time), waits until a clip is being written (a ``.part`` file exists), waits a random
further moment and kills it with SIGKILL. Then the store is opened and recovered as the
agent does at start-up, and must be consistent: every index row has its file, every
file its row, every sealed clip decrypts completely with the owner key and is an MP4
from its first byte, every truncated clip decrypts to a prefix that is one. The state
directory accumulates across trials, so recovery also meets its own earlier results,
and a final agent run on it must start and record normally.
"""

from __future__ import annotations

import random
import subprocess
import time
from pathlib import Path

import pytest

from device.vault import AgeStreamReader, ClipState, open_store
from device.vault.errors import TruncatedStream
from tests.fixtures.agent import AgentEnv

TRIALS = 20
PART_WAIT_S = 30.0


def decrypt(path: Path, identity: str) -> tuple[bytes, bool]:
    """(plaintext verified so far, whether the stream was complete)."""
    out = bytearray()
    with path.open("rb") as handle:
        reader = AgeStreamReader(handle, [identity])
        try:
            for chunk in reader:
                out += chunk
        except TruncatedStream:
            return bytes(out), False
    return bytes(out), True


def wait_for_part(state: Path, before: set[Path], proc: subprocess.Popen[bytes]) -> bool:
    deadline = time.monotonic() + PART_WAIT_S
    while time.monotonic() < deadline and proc.poll() is None:
        parts = set(state.rglob("*.age.part"))
        if parts - before:
            return True
        time.sleep(0.003)
    return False


def check_consistent(env: AgentEnv) -> tuple[int, int]:
    store = open_store(env.config())
    try:
        store.recover()
        rows = {r.id: r for r in store.list_clips()}
        files = {p.name.removesuffix(".age"): p for p in store.clips_dir.rglob("*.age")}
        leftovers = list(store.clips_dir.rglob("*.part"))
    finally:
        store.close()
    assert leftovers == []
    assert set(rows) == set(files), "index rows and clip files disagree"
    complete = truncated = 0
    for clip_id, record in rows.items():
        assert record.state in (ClipState.SEALED, ClipState.TRUNCATED)
        plain, whole = decrypt(files[clip_id], env.owner.identity)
        if record.state is ClipState.SEALED:
            assert whole, f"sealed clip {clip_id} does not decrypt completely"
            assert plain[4:8] == b"ftyp"
            complete += 1
        else:
            assert record.complete is False
            assert plain == b"" or plain[4:8] == b"ftyp", "a truncated clip's prefix is an MP4"
            truncated += 1
    return complete, truncated


@pytest.mark.slow
def test_sigkill_during_recording_always_leaves_a_consistent_store(agent_env: AgentEnv) -> None:
    rng = random.Random(20260504)
    agent_env.write_config(camera={"width": 320, "height": 240})
    command = agent_env.cli_command("simulate", "--scene", "visitor", "--duration", "600", "--fast")
    killed_while_recording = 0
    for _ in range(TRIALS):
        before = set(agent_env.state_dir.rglob("*.age.part"))
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            recording = wait_for_part(agent_env.state_dir, before, proc)
            time.sleep(rng.uniform(0.0, 0.4))
            if recording and proc.poll() is None:
                killed_while_recording += 1
        finally:
            proc.kill()
            proc.wait(timeout=10)
        check_consistent(agent_env)
    assert killed_while_recording == TRIALS
    complete, truncated = check_consistent(agent_env)
    assert truncated >= 1  # some kills did land mid-clip
    # The agent starts on what the kills left and records normally.
    result = agent_env.cli("simulate", "--scene", "visitor", "--duration", "30", "--fast")
    assert result.returncode == 0, result.stderr
    after_complete, _ = check_consistent(agent_env)
    assert after_complete == complete + 1
