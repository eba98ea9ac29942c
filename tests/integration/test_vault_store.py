"""The sealed store on real files: sealing, no plaintext on disk, recovery rules, retention,
holds, and a real full disk (a small tmpfs)."""

from __future__ import annotations

import base64
import errno
import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from device.config import StorageSettings
from device.errors import StorageFull
from device.vault.agestream import CHUNK_SIZE, AgeStreamReader, decrypt_all
from device.vault.errors import ClipStateError, TruncatedStream, UnknownClip
from device.vault.index import ClipState
from device.vault.store import SealedStore
from device.vault.writer import ClipWriter
from tests.fixtures.disk import mounted_tmpfs
from tests.fixtures.vault import MP4_MARKERS, SECRET_MARKER, VaultWorld, files_containing

# Plaintext shaped like fragmented MP4: the box names must never appear on disk.
FRAGMENT = b"\x00\x00\x00\x18ftypisom" + b"\x00\x00\x10\x00moof" + b"\x00\x01\x00\x00mdat" * 50


def video(size: int) -> bytes:
    return (FRAGMENT * (size // len(FRAGMENT) + 1))[:size]


def write_clip(store: SealedStore, world: VaultWorld, data: bytes, seconds: float = 30) -> str:
    writer = store.open_clip(world.clock.now)
    for pos in range(0, len(data), 50_000):
        writer.write(data[pos : pos + 50_000])
    writer.add_event("button", world.clock.now + timedelta(seconds=2))
    record = writer.finish(world.clock.now + timedelta(seconds=seconds))
    return record.id


def collect(reader: AgeStreamReader, into: bytearray) -> None:
    for chunk in reader:
        into += chunk


def write_forever(writer: ClipWriter) -> None:
    """Write 64 KB pieces until the writer raises (the disk fills up)."""
    for _ in range(10_000):
        writer.write(video(64_000))
    raise AssertionError("the disk never filled up")


def open_and_write_forever(store: SealedStore, world: VaultWorld) -> None:
    write_forever(store.open_clip(world.clock.now))


def age_open(path: Path, key: Path) -> bytes:
    return subprocess.run(
        ["age", "-d", "-i", str(key), str(path)], capture_output=True, check=True
    ).stdout


def assert_consistent(store: SealedStore) -> None:
    """Every row has its file and every file its row; no .part outside a recording."""
    rows = {c.id: c for c in store.list_clips()}
    files = {p.name.split(".")[0]: p for p in store.clips_dir.rglob("*") if p.is_file()}
    assert set(rows) == set(files)
    for clip_id, record in rows.items():
        assert files[clip_id].name.endswith(".age")
        assert record.state is not ClipState.RECORDING
        assert files[clip_id].stat().st_size == record.bytes


def test_a_clip_opens_with_the_owner_key_and_the_escrowed_epoch_key(
    vault_world: VaultWorld,
) -> None:
    store = vault_world.make_store()
    data = video(300_000)
    clip_id = write_clip(store, vault_world, data)
    record = store.get(clip_id)
    path = store.sealed_path(clip_id)
    assert record.state is ClipState.SEALED
    assert record.bytes == path.stat().st_size
    assert record.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert [e.kind for e in record.events] == ["button"]
    assert age_open(path, vault_world.owner.path) == data
    # the cloud's view: open the escrow blob, then the clip with the epoch identity
    item = store.escrow_outbox.pending()[0]
    assert store.escrow_outbox.directory == store.root / "outbox"
    assert item.epoch_id == record.epoch_id
    sealed = base64.b64decode(json.loads(item.payload)["sealed"])
    epoch_key = subprocess.run(
        ["age", "-d", "-i", str(vault_world.escrow.path)],
        input=sealed,
        capture_output=True,
        check=True,
    ).stdout.decode()
    assert decrypt_all(path.open("rb"), [epoch_key]) == data
    assert oct(path.stat().st_mode & 0o777) == "0o600"


def test_no_plaintext_or_key_on_disk_while_recording_and_after(vault_world: VaultWorld) -> None:
    store = vault_world.make_store()
    writer = store.open_clip(vault_world.clock.now)
    writer.write(video(5 * CHUNK_SIZE + 123))
    writer.add_event("motion", vault_world.clock.now)
    # mid-clip: the .part, the index and its -wal/-shm hold no plaintext
    assert files_containing(store.root, (*MP4_MARKERS, SECRET_MARKER)) == []
    assert any(p.name.endswith(".part") for p in store.clips_dir.rglob("*"))
    writer.finish(vault_world.clock.now + timedelta(seconds=10))
    write_clip(store, vault_world, video(100_000))
    names = {p.name for p in store.root.iterdir()}
    assert "index.sqlite" in names
    assert files_containing(store.root, (*MP4_MARKERS, SECRET_MARKER)) == []


def test_recovery_of_every_crash_state(vault_world: VaultWorld) -> None:
    store = vault_world.make_store()
    data = video(3 * CHUNK_SIZE + 500)
    kept = write_clip(store, vault_world, data)
    # 1. crashed mid-clip with two whole chunks on disk
    crashed = store.open_clip(vault_world.clock.now)
    crashed.write(data)
    crashed_id = crashed.clip_id
    # 2. crashed before any payload: only the header
    empty_id = store.open_clip(vault_world.clock.now).clip_id
    # 3. sealed in the index but the rename never happened
    renamed = write_clip(store, vault_world, video(70_000))
    sealed = store.sealed_path(renamed)
    os.replace(sealed, sealed.with_name(sealed.name + ".part"))
    # 4. a row whose file is gone
    lost = write_clip(store, vault_world, video(1000))
    store.sealed_path(lost).unlink()
    # 5. a file without a row, inside a known epoch: adopted
    orphan_id = kept[:-8] + "0badf00d"
    shutil.copy(store.sealed_path(kept), store.sealed_path(kept).with_name(orphan_id + ".age"))
    # 6. junk no one can place
    (store.clips_dir / "notes.txt").write_text("junk")

    reopened = vault_world.make_store()  # the agent restarting
    report = reopened.recover()
    assert report.truncated == (crashed_id,)
    assert report.removed_empty == (empty_id,)
    assert report.completed == (renamed,)
    assert report.dropped_rows == (lost,)
    assert report.adopted == (orphan_id,)
    assert report.quarantined == ("notes.txt",)
    assert_consistent(reopened)

    truncated = reopened.get(crashed_id)
    assert truncated.state is ClipState.TRUNCATED
    path = reopened.sealed_path(crashed_id)
    assert truncated.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    got = bytearray()
    with pytest.raises(TruncatedStream) as caught:
        collect(AgeStreamReader(path.open("rb"), [vault_world.owner.identity]), got)
    assert bytes(got) == data[: 3 * CHUNK_SIZE]
    assert caught.value.verified_bytes == 3 * CHUNK_SIZE
    assert age_open(reopened.sealed_path(renamed), vault_world.owner.path) == video(70_000)
    assert reopened.recover().clean  # idempotent


def test_a_failed_write_never_leaves_a_half_clip(vault_world: VaultWorld) -> None:
    store = vault_world.make_store()
    writer = store.open_clip(vault_world.clock.now)
    writer.write(b"x" * 10)
    writer.abort()
    assert store.list_clips() == []
    assert list(store.clips_dir.rglob("*.age*")) == []
    with pytest.raises(ValueError, match="already finished"):
        writer.write(b"more")


def test_queries_holds_and_states(vault_world: VaultWorld) -> None:
    store = vault_world.make_store()
    first = write_clip(store, vault_world, video(1000))
    vault_world.clock.advance(3600)
    second = write_clip(store, vault_world, video(1000))
    t0 = store.get(first).start
    assert [c.id for c in store.list_clips(since=t0 + timedelta(minutes=30))] == [second]
    assert [c.id for c in store.list_clips(until=t0 + timedelta(minutes=30))] == [first]
    store.hold([first], vault_world.clock.now + timedelta(days=90))
    assert store.get(first).state is ClipState.HELD
    assert [c.id for c in store.list_clips(states=[ClipState.HELD])] == [first]
    store.mark_pending_upload([second])
    assert store.get(second).pending_upload
    store.clear_pending_upload([second])
    store.set_state([second], ClipState.RELEASED)
    assert store.get(second).state is ClipState.RELEASED
    with pytest.raises(UnknownClip):
        store.hold(["20260101T000000Z-00000000"], vault_world.clock.now)
    recording = store.open_clip(vault_world.clock.now)
    with pytest.raises(ClipStateError):
        store.sealed_path(recording.clip_id)
    with pytest.raises(ClipStateError):
        store.set_state([recording.clip_id], ClipState.RELEASED)
    # a preservation hold that arrives while the clip is still recording sticks
    store.hold([recording.clip_id], vault_world.clock.now + timedelta(days=1))
    recording.write(b"x")
    held = recording.finish(vault_world.clock.now + timedelta(seconds=5))
    assert held.state is ClipState.HELD
    assert held.complete
    vault_world.clock.advance(2 * 86400)
    store.enforce_retention()  # the hold ended: back to sealed
    assert store.get(held.id).state is ClipState.SEALED


def test_retention_by_age_keeps_held_and_pending(vault_world: VaultWorld) -> None:
    store = vault_world.make_store(limits=StorageSettings(max_age_days=30, min_free_bytes=0))
    old = write_clip(store, vault_world, video(1000))
    held = write_clip(store, vault_world, video(1000))
    pending = write_clip(store, vault_world, video(1000))
    store.hold([held], vault_world.clock.now + timedelta(days=60))
    store.mark_pending_upload([pending])
    vault_world.clock.advance(31 * 86400)
    young = write_clip(store, vault_world, video(1000))  # open_clip runs retention
    assert {c.id for c in store.list_clips()} == {held, pending, young}
    assert not store.sealed_path(held).with_name(f"{old}.age").exists()
    vault_world.clock.advance(30 * 86400)  # the hold ended, the upload is done
    store.clear_pending_upload([pending])
    store.enforce_retention()
    assert {c.id for c in store.list_clips()} == {young}
    assert_consistent(store)


def test_quota_removes_oldest_first(vault_world: VaultWorld) -> None:
    store = vault_world.make_store(limits=StorageSettings(quota_bytes=350_000, min_free_bytes=0))
    ids = []
    for _ in range(5):
        ids.append(write_clip(store, vault_world, video(100_000)))
        vault_world.clock.advance(60)
    store.enforce_retention()
    assert [c.id for c in store.list_clips()] == ids[2:]


def test_storage_full_refuses_then_resumes(vault_world: VaultWorld) -> None:
    free = {"bytes": 10**9}
    store = vault_world.make_store(
        limits=StorageSettings(min_free_bytes=100 * 1024**2),
        disk_free=lambda _path: free["bytes"],
    )
    held = write_clip(store, vault_world, video(1000))
    store.hold([held], vault_world.clock.now + timedelta(days=1))
    free["bytes"] = 1024
    with pytest.raises(StorageFull, match="storage full"):
        store.open_clip(vault_world.clock.now)
    assert store.health.storage_full
    assert "nothing more can be removed" in store.health.reason
    assert [c.id for c in store.list_clips()] == [held]  # the held clip survived
    free["bytes"] = 10**9
    store.open_clip(vault_world.clock.now).abort()
    assert not store.health.storage_full


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    with mounted_tmpfs(tmp_path / "tmpfs", "6m") as mount:
        yield mount


def fill(path: Path, leave: int) -> None:
    """Fill the file system holding `path` until only about `leave` bytes are free."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        block = b"\xff" * 65536
        while True:
            try:
                os.write(fd, block)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                break
        size = os.fstat(fd).st_size
        os.ftruncate(fd, max(0, size - leave))
    finally:
        os.close(fd)


def test_a_real_full_disk_truncates_the_clip_and_recording_resumes(
    vault_world: VaultWorld, small_tmpfs: Path
) -> None:
    root = small_tmpfs / "vault"
    store = vault_world.make_store(root, limits=StorageSettings(min_free_bytes=0))
    first = write_clip(store, vault_world, video(600_000))
    filler = small_tmpfs / "filler"
    fill(filler, leave=300_000)
    writer = store.open_clip(vault_world.clock.now)
    with pytest.raises(StorageFull, match="ended as truncated"):
        write_forever(writer)
    assert not writer.alive
    assert store.health.storage_full
    # the disk is still full: the store neither crashes nor loses the index
    assert store.get(first).state is ClipState.SEALED
    os.unlink(filler)  # space returns
    resumed = write_clip(store, vault_world, video(100_000))
    assert not store.health.storage_full
    assert store.health.unsettled == 0
    truncated = [c for c in store.list_clips() if c.state is ClipState.TRUNCATED]
    assert all(c.id == writer.clip_id for c in truncated)
    assert_consistent(store)
    reopened = vault_world.make_store(root, limits=StorageSettings(min_free_bytes=0))
    assert reopened.recover().clean
    assert age_open(reopened.sealed_path(resumed), vault_world.owner.path) == video(100_000)
    assert age_open(reopened.sealed_path(first), vault_world.owner.path) == video(600_000)


def test_a_full_disk_with_nothing_to_free_refuses_clips(
    vault_world: VaultWorld, small_tmpfs: Path
) -> None:
    root = small_tmpfs / "vault"
    store = vault_world.make_store(root, limits=StorageSettings(min_free_bytes=1024 * 1024))
    held = write_clip(store, vault_world, video(300_000))
    store.hold([held], vault_world.clock.now + timedelta(days=7))
    filler = small_tmpfs / "filler"
    fill(filler, leave=100_000)
    with pytest.raises(StorageFull):
        store.open_clip(vault_world.clock.now)
    assert store.health.storage_full
    os.unlink(filler)
    write_clip(store, vault_world, video(1000))
    assert not store.health.storage_full
    assert_consistent(store)


def test_a_completely_full_disk_refuses_and_resumes(
    vault_world: VaultWorld, small_tmpfs: Path
) -> None:
    root = small_tmpfs / "vault"
    store = vault_world.make_store(root, limits=StorageSettings(min_free_bytes=0))
    first = write_clip(store, vault_world, video(200_000))
    filler = small_tmpfs / "filler"
    fill(filler, leave=0)
    for _ in range(3):  # however often the recorder retries, nothing breaks
        with pytest.raises(StorageFull):
            open_and_write_forever(store, vault_world)
    assert store.health.storage_full
    assert store.get(first).state is ClipState.SEALED
    os.unlink(filler)
    write_clip(store, vault_world, video(1000))
    assert not store.health.storage_full
    assert store.health.unsettled == 0
    assert_consistent(store)
    assert age_open(store.sealed_path(first), vault_world.owner.path) == video(200_000)
