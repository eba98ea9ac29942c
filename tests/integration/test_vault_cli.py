"""`doorbell-agent clips list` and `clips export`, on a real store, opened with the real `age`."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from device.cli import main
from device.config import load_config
from device.vault.store import open_store
from tests.fixtures.vault import VaultWorld

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def setup_agent(world: VaultWorld, tmp_path: Path) -> tuple[Path, list[str], list[bytes]]:
    config_path = tmp_path / "agent.toml"
    config_path.write_text(
        f'[agent]\nstate_dir = "{tmp_path / "state"}"\n'
        f'[keys]\nowner_recipient = "{world.owner.recipient}"\n'
        f'escrow_recipient = "{world.escrow.recipient}"\n'
    )
    clock = {"now": T0}
    store = open_store(load_config(config_path), clock=lambda: clock["now"])
    ids, payloads = [], []
    for hour in range(3):
        clock["now"] = T0 + timedelta(hours=hour)
        data = f"clip {hour} ".encode() * 5000
        writer = store.open_clip(clock["now"])
        writer.write(data)
        writer.add_event("button", clock["now"])
        ids.append(writer.finish(clock["now"] + timedelta(seconds=20)).id)
        payloads.append(data)
    store.close()
    return config_path, ids, payloads


def test_list_json_and_table(
    vault_world: VaultWorld, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config, ids, _ = setup_agent(vault_world, tmp_path)
    assert main(["--config", str(config), "clips", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [c["id"] for c in listed] == ids
    assert listed[0]["state"] == "sealed"
    assert listed[0]["events"][0]["kind"] == "button"
    assert listed[0]["start"] == "2026-03-01T12:00:00Z"
    assert main(["--config", str(config), "clips", "list"]) == 0
    table = capsys.readouterr().out
    assert "3 clips" in table
    assert ids[1] in table
    assert "20.0s" in table


def test_export_a_window_opens_with_the_owner_key(
    vault_world: VaultWorld, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config, ids, payloads = setup_agent(vault_world, tmp_path)
    out = tmp_path / "export"
    argv = ["--config", str(config), "clips", "export",
            "--since", "2026-03-01T12:30:00Z", "--until", "2026-03-01T14:30:00Z", str(out)]
    assert main(argv) == 0
    listing = json.loads((out / "clips.json").read_text())
    assert [c["id"] for c in listing["clips"]] == ids[1:]
    for clip, data in zip(listing["clips"], payloads[1:], strict=True):
        opened = subprocess.run(
            ["age", "-d", "-i", str(vault_world.owner.path), str(out / clip["file"])],
            capture_output=True, check=True,
        ).stdout
        assert opened == data
    assert "exported 2 clips" in capsys.readouterr().out


def test_export_refuses_a_file_that_does_not_match_the_index(
    vault_world: VaultWorld, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config, ids, _ = setup_agent(vault_world, tmp_path)
    victim = next((tmp_path / "state" / "vault" / "clips").rglob(f"{ids[0]}.age"))
    data = bytearray(victim.read_bytes())
    data[-1] ^= 1  # bit rot or tampering on the card
    victim.write_bytes(bytes(data))
    out = tmp_path / "export"
    argv = ["--config", str(config), "clips", "export",
            "--since", "2026-03-01T00:00:00Z", "--until", "2026-03-02T00:00:00Z", str(out)]
    assert main(argv) == 1
    listing = json.loads((out / "clips.json").read_text())
    assert [p["id"] for p in listing["problems"]] == [ids[0]]
    assert not (out / f"{ids[0]}.age").exists()
    assert "does not match" in capsys.readouterr().err


def test_usage_errors(tmp_path: Path, vault_world: VaultWorld) -> None:
    config, _, _ = setup_agent(vault_world, tmp_path)
    with pytest.raises(SystemExit) as caught:
        main(["--config", str(config), "clips", "export", "--since", "yesterday",
              "--until", "2026-03-02T00:00:00Z", str(tmp_path / "x")])
    assert caught.value.code == 2
    argv = ["--config", str(config), "clips", "export", "--since", "2026-03-02T00:00:00Z",
            "--until", "2026-03-01T00:00:00Z", str(tmp_path / "x")]
    assert main(argv) == 2
