"""`doorbell-owner monitor` against the real log and three witness processes: it finds
this doorbell's entries and only those, picks up where it stopped, and refuses a log
whose history differs from the one it stored, keeping the evidence."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import httpx

from owner_app.cli import main as owner_main
from protocol.tlog.checkpoint import Checkpoint
from protocol.tlog.note import parse_skey, sign_note
from protocol.tlog.statement import ReleaseStatement
from tests.fixtures.tlog import LOG_ORIGIN, TlogNetwork

MINE = hashlib.sha256(b"my doorbell").hexdigest()
THEIRS = hashlib.sha256(b"a neighbour's doorbell").hexdigest()


def _statement(tag: str, seq: int) -> bytes:
    return ReleaseStatement(
        device_tag=tag,
        token_sha256=hashlib.sha256(b"%d" % seq).hexdigest(),
        basis="warrant",
        window_start="2026-06-01T09:00:00Z",
        window_end="2026-06-01T11:00:00Z",
        iat=1780315190,
        seq=seq,
        court="demo-district-court",
        docket_sha256="ef" * 32,
    ).encode()


def _bundle(network: TlogNetwork, directory: Path) -> Path:
    bundle = directory / "owner-bundle"
    (bundle / "release-log").mkdir(parents=True)
    policy = network.policy_path.read_text().replace(
        f"log {network.log_vkey}\n", f"log {network.log_vkey} {network.log.url}\n"
    )
    (bundle / "release-log" / "policy.txt").write_text(policy)
    (bundle / "release-log" / "device-tag").write_text(MINE + "\n")
    (bundle / "device-id").write_text("porch-1\n")
    return bundle


def _append(network: TlogNetwork, entries: list[bytes]) -> None:
    with httpx.Client(base_url=network.log.url, timeout=40) as client:
        index = -1
        for entry in entries:
            response = client.post("/add", content=entry)
            response.raise_for_status()
            index = int(response.text.split()[1])
        client.get("/proof", params={"index": index, "wait": 25}).raise_for_status()


def _monitor(bundle: Path, state: Path) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = owner_main(["--bundle", str(bundle), "monitor", "--state", str(state)], out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def test_the_monitor_reports_this_doorbells_entries_and_catches_a_fork(
    tlog_network: TlogNetwork, tmp_path: Path
) -> None:
    bundle, state = _bundle(tlog_network, tmp_path), tmp_path / "state"
    _append(tlog_network, [_statement(MINE, 1), _statement(THEIRS, 2), _statement(MINE, 3)])
    code, out, err = _monitor(bundle, state)
    assert code == 0, err
    assert out.count("entry ") == 2
    assert "entry 0: warrant court demo-district-court" in out
    assert "entry 2: warrant" in out
    assert "witnesses w1, w2, w3" in out

    _append(tlog_network, [_statement(THEIRS, 4), _statement(MINE, 5)])
    code, out, err = _monitor(bundle, state)
    assert code == 0, err
    assert out.count("entry ") == 1
    assert "entry 4: warrant" in out
    assert "2 new entries" in out
    assert (state / "log-entries.jsonl").read_text().count("\n") == 3

    # The stored checkpoint now names another tree at the same size, signed by the log's
    # key: the log (or whoever holds its key) has shown two histories.
    log = parse_skey((tlog_network.directory / "log" / "log.key").read_text().strip())
    forked = Checkpoint(LOG_ORIGIN, 5, hashlib.sha256(b"another history").digest())
    (state / "log-checkpoint").write_bytes(sign_note(forked.text, log))
    code, out, err = _monitor(bundle, state)
    assert code == 1
    assert "split view" in err
    assert "forked" in err
    evidence = sorted(p.name for p in state.glob("log-evidence-*"))
    assert any(name.endswith("-stored") for name in evidence)
    assert any(name.endswith("-log-checkpoint") for name in evidence)


def test_the_monitor_names_a_missing_bundle_file(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    code, _, err = _monitor(tmp_path / "b", tmp_path / "s")
    assert code == 1
    assert "policy.txt" in err
