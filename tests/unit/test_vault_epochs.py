"""Epoch keys: rotation, escrow the cloud can open, nothing secret on disk, a durable outbox."""

from __future__ import annotations

import base64
import json
import logging
import subprocess
from pathlib import Path

import pytest

from device.vault.epochs import EpochKeeper
from device.vault.errors import InvalidAgeKey, OutboxError
from device.vault.index import ClipIndex
from device.vault.outbox import EscrowOutbox
from protocol.messages import parse_escrow
from protocol.timefmt import parse_time
from tests.fixtures.vault import SECRET_MARKER, VaultWorld, files_containing


def keeper(world: VaultWorld, epoch_s: int = 3600) -> EpochKeeper:
    world.root.mkdir(parents=True, exist_ok=True)
    return EpochKeeper(
        ClipIndex(world.root / "index.sqlite"),
        EscrowOutbox(world.root / "outbox"),
        world.escrow.recipient,
        epoch_s,
        world.clock,
        device_id="test-doorbell",
    )


def open_escrow(world: VaultWorld, payload: bytes) -> tuple[dict[str, object], str]:
    message = json.loads(payload)
    sealed = base64.b64decode(message["sealed"])
    secret = subprocess.run(
        ["age", "-d", "-i", str(world.escrow.path)], input=sealed, capture_output=True, check=True
    ).stdout.decode()
    return message, secret.strip()


def test_epoch_rotates_at_its_end_and_not_before(vault_world: VaultWorld) -> None:
    keys = keeper(vault_world, epoch_s=600)
    first = keys.current()
    assert first.start == vault_world.clock.now
    vault_world.clock.advance(599)
    assert keys.current() == first
    vault_world.clock.advance(1)
    second = keys.current()
    assert second.id != first.id
    assert second.recipient != first.recipient
    assert second.start == first.end
    start_s, rand = second.id.split("-")
    assert int(start_s) == int(second.start.timestamp())
    assert len(rand) == 8


def test_clock_jumping_back_starts_a_new_epoch(vault_world: VaultWorld) -> None:
    keys = keeper(vault_world)
    first = keys.current()
    vault_world.clock.advance(-7200)  # a Pi that synced its clock backwards
    assert keys.current().id != first.id


def test_escrow_message_opens_to_the_recorded_epoch_key(vault_world: VaultWorld) -> None:
    keys = keeper(vault_world, epoch_s=600)
    epochs = [keys.current()]
    vault_world.clock.advance(600)
    epochs.append(keys.current())
    pending = EscrowOutbox(vault_world.root / "outbox").pending()
    assert [p.epoch_id for p in pending] == [e.id for e in epochs]  # oldest first
    recorded = {e.id: e for e in ClipIndex(vault_world.root / "index.sqlite").epochs()}
    for item, epoch in zip(pending, epochs, strict=True):
        message, secret = open_escrow(vault_world, item.payload)
        assert parse_escrow(item.payload).epoch == epoch.id  # what the cloud will accept
        assert message["v"] == 1
        assert message["device"] == "test-doorbell"
        assert message["epoch"] == epoch.id
        assert parse_time(message["start"]) == epoch.start
        assert parse_time(message["end"]) == epoch.end
        assert message["recipient"] == recorded[epoch.id].recipient == epoch.recipient
        assert secret.startswith("AGE-SECRET-KEY-1")
        derived = subprocess.run(
            ["age-keygen", "-y"], input=secret, capture_output=True, text=True, check=True
        ).stdout.strip()
        assert derived == epoch.recipient


def test_no_secret_key_reaches_the_disk(vault_world: VaultWorld) -> None:
    keys = keeper(vault_world, epoch_s=60)
    for _ in range(3):
        keys.current()
        vault_world.clock.advance(60)
    assert files_containing(vault_world.root, (SECRET_MARKER,)) == []


def test_a_restart_starts_a_new_epoch(vault_world: VaultWorld) -> None:
    first = keeper(vault_world).current()
    second = keeper(vault_world).current()  # same clock, fresh process
    assert first.id != second.id
    ids = [e.id for e in ClipIndex(vault_world.root / "index.sqlite").epochs()]
    assert ids == [first.id, second.id]


def test_outbox_survives_restart_and_acknowledge_removes(vault_world: VaultWorld) -> None:
    keys = keeper(vault_world, epoch_s=60)
    ids = []
    for _ in range(3):
        ids.append(keys.current().id)
        vault_world.clock.advance(60)
    reopened = EscrowOutbox(vault_world.root / "outbox")
    assert [p.epoch_id for p in reopened.pending()] == ids
    assert reopened.acknowledge(ids[1]) is True
    assert reopened.acknowledge(ids[1]) is False  # a duplicate ack is harmless
    assert [p.epoch_id for p in EscrowOutbox(vault_world.root / "outbox").pending()] == [
        ids[0],
        ids[2],
    ]


def test_corrupt_outbox_files_are_quarantined_not_fatal(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    outbox = EscrowOutbox(tmp_path / "outbox")
    outbox.put("1700000000-0123abcd", b'{"v":1,"epoch":"1700000000-0123abcd","sealed":"x"}')
    (tmp_path / "outbox" / "00000000000000000001-1700000000-deadbeef.json").write_bytes(b"\x00{")
    (tmp_path / "outbox" / "stray.txt").write_text("hello")
    (tmp_path / "outbox" / ".tmp-interrupted").write_text("{")
    with caplog.at_level(logging.WARNING):
        pending = EscrowOutbox(tmp_path / "outbox").pending()
    assert [p.epoch_id for p in pending] == ["1700000000-0123abcd"]
    quarantined = sorted(p.name for p in (tmp_path / "outbox" / "quarantine").iterdir())
    assert "00000000000000000001-1700000000-deadbeef.json" in quarantined
    assert "stray.txt" in quarantined
    assert any(name.endswith(".reason") for name in quarantined)
    assert "not JSON" in caplog.text
    assert not (tmp_path / "outbox" / ".tmp-interrupted").exists()


def test_outbox_refuses_malformed_messages(tmp_path: Path) -> None:
    outbox = EscrowOutbox(tmp_path / "outbox")
    with pytest.raises(OutboxError, match="epoch id"):
        outbox.put("../../etc", b"{}")
    with pytest.raises(OutboxError, match="name its epoch"):
        outbox.put("1-0123abcd", b'{"epoch": "2-0123abcd"}')


def test_bad_escrow_recipient_fails_at_start(vault_world: VaultWorld) -> None:
    vault_world.root.mkdir()
    with pytest.raises(InvalidAgeKey):
        EpochKeeper(
            ClipIndex(vault_world.root / "index.sqlite"),
            EscrowOutbox(vault_world.root / "outbox"),
            "age1notakey",
            3600,
            vault_world.clock,
            device_id="d",
        )


def test_outbox_keeps_age_order_when_the_wall_clock_steps_back(tmp_path: Path) -> None:
    outbox = EscrowOutbox(tmp_path / "outbox")
    # a message queued under a clock far in the future (before an NTP correction)
    future = tmp_path / "outbox" / "09999999999999999999-1700000000-0123abcd.json"
    future.write_bytes(b'{"epoch":"1700000000-0123abcd"}')
    outbox.put("1700000060-0123abce", b'{"epoch":"1700000060-0123abce"}')
    assert [p.epoch_id for p in outbox.pending()] == ["1700000000-0123abcd", "1700000060-0123abce"]
