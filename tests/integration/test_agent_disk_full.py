"""A full disk does not crash the agent (docs/adr/0005-storage-layout.md, "Retention and a
full disk"): on a 2 MiB tmpfs the visitor scene fills the disk mid-clip, the agent keeps
running to the end of the simulation, reports the condition, and leaves a store that
recovery finds consistent."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from device.vault import open_store
from tests.fixtures.agent import AgentEnv
from tests.fixtures.disk import mounted_tmpfs


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    with mounted_tmpfs(tmp_path / "disk", "2m") as mount:
        yield mount


@pytest.mark.slow
def test_the_agent_survives_a_full_disk_and_reports_it(
    agent_env: AgentEnv, tiny_disk: Path
) -> None:
    agent_env.state_dir = tiny_disk / "state"
    # ~1.3 MB per visit at 640x360: the second visit cannot fit in 2 MiB.
    agent_env.write_config(
        camera={"width": 640, "height": 360},
        recorder={"bitrate": 2_000_000},
        storage={"min_free_bytes": 0, "quota_bytes": 10**9},
    )
    result = agent_env.cli("simulate", "--scene", "visitor", "--duration", "100", "--fast")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    assert "disk full while writing clip" in result.stderr, result.stderr[-2000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["clips_sealed"] >= 1
    assert summary["clips_failed"] >= 1
    assert summary["storage"]["full"] is True
    assert summary["camera"]["frames"] >= 100 * 15  # it ran to the end of the scene
    # Restarting on the still-full disk: recovery cannot write the index yet; the
    # agent runs anyway, records nothing, and says why.
    again = agent_env.cli("simulate", "--scene", "empty", "--duration", "5", "--fast")
    assert again.returncode == 0, again.stderr[-2000:]
    assert "Traceback" not in again.stderr, again.stderr[-2000:]
    stuck = json.loads(again.stdout.strip().splitlines()[-1])
    assert stuck["storage"]["full"] is True
    assert "recovery waits for space" in stuck["storage"]["reason"]
    # Space returns: the next start recovers and the store is consistent.
    subprocess.run(["mount", "-o", "remount,size=16m", str(tiny_disk)], check=True)
    healed = agent_env.cli("simulate", "--scene", "visitor", "--duration", "30", "--fast")
    assert healed.returncode == 0, healed.stderr[-2000:]
    assert json.loads(healed.stdout.strip().splitlines()[-1])["clips_sealed"] == 1
    store = open_store(agent_env.config())
    try:
        assert store.recover().clean
        rows = {r.id for r in store.list_clips()}
        files = {p.name.removesuffix(".age") for p in store.clips_dir.rglob("*.age")}
        assert rows == files
        assert len(rows) >= 3  # the first visit, the truncated one, the one after
        assert not list(store.clips_dir.rglob("*.part"))
    finally:
        store.close()
