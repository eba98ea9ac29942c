"""Crash consistency of the store: a writer process killed with SIGKILL at random moments.

Each trial starts a child that recovers the store (as the agent does at start-up) and
then writes clips whose plaintext is a deterministic function of the clip id, in
uneven pieces; the parent kills it at a random instant (sometimes during start-up or
recovery, mostly mid-clip), and after all trials recovers once more and checks: every
row has its file and every file its row, complete clips decrypt with the owner key to
exactly what was written, truncated ones to a prefix of it.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from device.vault.agestream import AgeStreamReader
from device.vault.errors import TruncatedStream
from device.vault.index import ClipState
from tests.fixtures.vault import VaultWorld

TRIALS = 24

CHILD = r"""
import random, sys, time
from datetime import UTC, datetime
from pathlib import Path
from device.config import StorageSettings
from device.vault.epochs import EpochKeeper
from device.vault.index import ClipIndex
from device.vault.outbox import EscrowOutbox
from device.vault.store import SealedStore

def content(clip_id):
    rng = random.Random(clip_id)
    return b"ftyp" + rng.randbytes(rng.randrange(1, 400_000))

root, owner, escrow = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
root.mkdir(parents=True, exist_ok=True)
clock = lambda: datetime.now(UTC)
index = ClipIndex(root / "index.sqlite")
keeper = EpochKeeper(index, EscrowOutbox(root / "outbox"), escrow, 3600, clock, device_id="d")
store = SealedStore(root=root, owner_recipient=owner, epochs=keeper, clock=clock,
                    limits=StorageSettings(min_free_bytes=0), index=index)
store.recover()
print("ready", flush=True)
while True:
    writer = store.open_clip(clock())
    data = content(writer.clip_id)
    rng = random.Random(writer.clip_id + "pieces")
    pos = 0
    while pos < len(data):
        step = rng.randrange(1, 40_000)
        writer.write(data[pos:pos + step])
        pos += step
        if rng.random() < 0.05:
            time.sleep(0.001)
    if rng.random() < 0.3:
        writer.add_event("button", clock())
    writer.finish(clock())
"""


def expected(clip_id: str) -> bytes:
    rng = random.Random(clip_id)
    return b"ftyp" + rng.randbytes(rng.randrange(1, 400_000))


def run_and_kill(world: VaultWorld, root: Path, rng: random.Random) -> None:
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(root), world.owner.recipient, world.escrow.recipient],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        if rng.random() < 0.2:
            time.sleep(rng.uniform(0.05, 0.6))  # kill during start-up or recovery
        else:
            assert child.stdout is not None
            line = child.stdout.readline()
            assert line == b"ready\n", child.stderr.read() if child.stderr else b""
            time.sleep(rng.uniform(0.0, 0.5))
        assert child.poll() is None, child.stderr.read() if child.stderr else b""
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
        for stream in (child.stdout, child.stderr):
            if stream is not None:
                stream.close()


@pytest.mark.slow
def test_sigkill_at_random_moments_leaves_a_consistent_store(vault_world: VaultWorld) -> None:
    rng = random.Random(20260301)
    root = vault_world.root
    for _ in range(TRIALS):
        run_and_kill(vault_world, root, rng)

    store = vault_world.make_store(root)
    store.recover()
    clips = store.list_clips()
    rows = {c.id for c in clips}
    on_disk = {p.name.split(".")[0] for p in store.clips_dir.rglob("*") if p.is_file()}
    assert rows == on_disk
    assert not list(store.clips_dir.rglob("*.part"))
    assert len(clips) >= TRIALS  # the children did write clips
    states = {c.state for c in clips}
    assert states <= {ClipState.SEALED, ClipState.TRUNCATED}
    assert ClipState.SEALED in states
    for clip in clips:
        path = store.sealed_path(clip.id)
        assert path.stat().st_size == clip.bytes
        want = expected(clip.id)
        got = bytearray()
        try:
            for chunk in AgeStreamReader(path.open("rb"), [vault_world.owner.identity]):
                got += chunk
        except TruncatedStream:
            assert clip.state is ClipState.TRUNCATED, clip.id
            assert want.startswith(bytes(got)), clip.id
        else:
            if clip.state is ClipState.SEALED:
                assert bytes(got) == want, clip.id
            else:  # a final chunk written just before the kill: complete after all
                assert bytes(got) == want, clip.id
