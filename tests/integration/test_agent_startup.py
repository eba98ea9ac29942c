"""The daemon's start-up opens the store after the first frame
(docs/adr/0019-agent-memory-and-uplink-benchmarks.md, "Start-up"), without giving up
what the store's start-up guarantees: no clip is written before the store's crash
recovery has ended, no clip is lost to the start-up, and a store that cannot be
trusted still ends the agent.
"""

from __future__ import annotations

import threading
from datetime import datetime
from pathlib import Path

import pytest

from device import instance_lock
from device.agent import Agent
from device.clock import ManualClock
from device.config import AgentConfig
from device.errors import DoorbellError, StorageFull
from device.recorder import ClipWriter
from device.startup import StoreGate
from device.vault import ClipRecord, open_store
from device.vault.errors import VaultIndexError
from tests.fixtures.agent import T0, AgentEnv

BLOCKED_S = 0.3  # how long the test watches a clip that must still be waiting


def _files(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_size for p in root.rglob("*") if p.is_file()}


def test_a_clip_that_wants_to_open_during_start_up_waits_until_recovery_has_ended(
    agent_env: AgentEnv,
) -> None:
    config = agent_env.config()
    agent_env.state_dir.mkdir(parents=True)
    gate = StoreGate()
    go = threading.Event()

    def start_up() -> None:  # the agent's start-up, held until the test lets it run
        go.wait(30)
        gate.open_recovered(config, ManualClock(T0))

    gate.defer(start_up)
    opened: list[ClipWriter] = []
    failed: list[BaseException] = []

    def recorder() -> None:  # the camera loop's call: a trigger during start-up
        try:
            opened.append(gate.open_clip(T0))
        except BaseException as exc:
            failed.append(exc)

    before = _files(agent_env.state_dir)
    loop = threading.Thread(target=recorder)
    loop.start()
    loop.join(BLOCKED_S)
    assert loop.is_alive(), "the clip did not wait for the store's start-up"
    assert _files(agent_env.state_dir) == before  # nothing written while it waits
    assert not gate.settled
    assert gate.store is None
    go.set()
    loop.join(30)
    assert not failed, failed
    [writer] = opened
    assert gate.recovered  # the writer exists only after recovery ended
    writer.write(b"\x00\x00\x00\x18ftypisom")
    writer.finish(T0)
    gate.join()
    assert gate.store is not None
    [clip] = gate.store.list_clips()
    assert clip.state == "sealed"
    gate.store.close()


def _simulate(config: AgentConfig, *, store_later: bool) -> list[ClipRecord]:
    agent = Agent.from_config(
        config, clock=ManualClock(T0), simulated=True, store_later=store_later
    )
    agent.run(duration_s=30.0)
    store = open_store(config)
    try:
        return store.list_clips()
    finally:
        store.close()


def _clip_facts(clip: ClipRecord) -> tuple[datetime, datetime | None, list[str], str, bool]:
    return clip.start, clip.end, [e.kind for e in clip.events], clip.state, clip.complete


def test_the_store_opened_after_the_first_frame_records_the_same_clips(
    agent_env: AgentEnv, tmp_path: Path
) -> None:
    # The visitor scene faster than real time: its visit starts while (or right after)
    # the start-up thread opens the store; the clips must be those of an agent that
    # opened its store first, to the frame.
    config = agent_env.config()
    camera = config.camera.model_copy(update={"scene": "visitor"})
    first = config.model_copy(update={"camera": camera})
    agent = first.agent.model_copy(update={"state_dir": tmp_path / "later"})
    later = first.model_copy(update={"agent": agent})
    expected = [_clip_facts(c) for c in _simulate(first, store_later=False)]
    assert len(expected) == 1
    assert [_clip_facts(c) for c in _simulate(later, store_later=True)] == expected


def test_an_index_that_cannot_be_trusted_still_ends_the_agent(agent_env: AgentEnv) -> None:
    vault = agent_env.state_dir / "vault"
    vault.mkdir(parents=True)
    (vault / "index.sqlite").write_bytes(b"not a database" * 100)
    agent = Agent.from_config(
        agent_env.config(), clock=ManualClock(T0), simulated=True, store_later=True
    )
    assert agent.status()["storage"] == {
        "full": False, "reason": "start-up is opening the store"
    }
    with pytest.raises(VaultIndexError):
        agent.run(duration_s=30.0)
    with pytest.raises(DoorbellError, match="not open"):
        _ = agent.store
    instance_lock.acquire(agent_env.state_dir).release()  # the agent let go of its lock


def test_without_a_store_or_a_start_up_to_open_one_a_clip_is_refused_at_once() -> None:
    with pytest.raises(StorageFull, match="not been recovered"):
        StoreGate().open_clip(T0)
