"""Nothing plaintext reaches the device's disk (docs/threat-model.md).

After a full agent run (the CLI, the real store, a visitor who rings), every file under
the state directory (clips, SQLite database with its WAL and SHM files, the escrow
outbox, temp files, the status file) is scanned for MP4 box names and age secret keys.
The same scan finds them in the decrypted clip, so it is able to fail.
"""

from __future__ import annotations

from pathlib import Path

from tests.fixtures.agent import AgentEnv
from tests.fixtures.vault import MP4_MARKERS, SECRET_MARKER

MARKERS = (*MP4_MARKERS, SECRET_MARKER)


def plaintext_markers(path: Path) -> list[bytes]:
    data = path.read_bytes()
    return [marker for marker in MARKERS if marker in data]


def test_a_full_agent_run_leaves_no_plaintext_under_the_state_dir(
    agent_env: AgentEnv, tmp_path: Path
) -> None:
    result = agent_env.cli("simulate", "--scene", "visitor", "--duration", "30", "--fast")
    assert result.returncode == 0, result.stderr
    files = [p for p in agent_env.state_dir.rglob("*") if p.is_file()]
    names = {p.name for p in files}
    assert "index.sqlite" in names
    assert "status.json" in names
    sealed = [p for p in files if p.name.endswith(".age")]
    assert len(sealed) == 1
    assert any("outbox" in p.parts for p in files)  # the escrowed epoch key, sealed
    for path in files:
        assert plaintext_markers(path) == [], f"plaintext marker in {path}"
    # The scan is not blind: the same clip, decrypted by the owner, is an MP4.
    plain = tmp_path / "clip.mp4"
    assert agent_env.decrypt(sealed[0], plain).returncode == 0
    assert set(plaintext_markers(plain)) == set(MP4_MARKERS)
    # And the owner key that opens it lives outside the state directory.
    assert SECRET_MARKER in agent_env.owner.path.read_bytes()
    assert not agent_env.owner.path.is_relative_to(agent_env.state_dir)
