"""`make demo`'s demonstration, run whole as a user runs it (shorter scenes, small frames).

It starts its own mosquitto, cloud stub and agent as separate processes, so this test
proves the same outcomes the README promises: one voluntary refusal, one refusal of a
warrant without a court signature, one warrant with data produced through the witnessed
release log (its own `doorbell-log` and three `doorbell-witness` processes), playable
H.264 evidence opened with the agency's age key, and nothing left running afterwards.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from demo.checks import probe_video, scan_for_plaintext

pytestmark = [pytest.mark.slow, pytest.mark.broker]

ROOT = Path(__file__).resolve().parents[2]


def _children_of(pid: int) -> list[int]:
    """Every live process whose parent is `pid` (from /proc)."""
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            children.append(int(entry.name))
    return children


def test_demo_shows_the_whole_promise(tmp_path: Path) -> None:
    out = tmp_path / "demo-out"
    proc = subprocess.run(
        [sys.executable, "-m", "demo", "--out", str(out), "--short", "--resolution", "320x240"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=400,
        check=False,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for number in range(1, 8):
        assert f"step {number}/7" in proc.stdout

    report = json.loads((out / "report.json").read_text())
    assert report["counts"] == {
        "voluntary_refusals": 1,
        "unsigned_warrant_refusals": 1,
        "warrants_with_data_produced": 1,
    }
    assert report["voluntary"]["codes"] == ["voluntary_requests_discontinued"]
    # the cloud host's every secret forges nothing the doorbell accepts: without a proof
    # from the witnessed log the forgeries are refused before their signatures are read
    # (ADR 0014; behind that gate, ADR 0013's reviewer signature)
    assert report["attacker"] == {
        "codes": {"warrant": "not_logged", "emergency": "not_logged"},
        "uploads": 0,
    }
    assert report["attacker_token_rules"] == {"warrant": "review_signature_missing",
                                              "emergency": "review_signature_missing"}
    # the warrant entered the log, was cosigned by a quorum of the three witnesses, the
    # doorbell's checkpoint moved to it, the owner's monitor found it, the audit agrees
    log = report["release_log"]
    assert log["index"] == 0
    assert log["checkpoint_size"] == log["device_release_log_size"] == 1
    assert len(log["cosigned_by"]) >= 2
    assert set(log["cosigned_by"]) <= {"w1", "w2", "w3"}
    assert log["owner_monitor_entries"] == 1
    assert "the release log agrees (1 releases)" in log["verify_log"]
    assert report["transparency"]["owners_notified"] == 1

    mp4s = sorted((out / "evidence").glob("*.mp4"))
    assert len(mp4s) == 1, "exactly the visitor's clip lies in the warrant's window"
    info = probe_video(mp4s[0])
    assert (info.codec, info.width, info.height) == ("h264", 320, 240)
    assert info.duration_s > 10

    # The device's storage holds nothing readable, also after the release.
    scan = scan_for_plaintext(out / "device-state")
    assert scan.files > 0
    assert scan.hits == ()

    # Everything the demo started has been stopped.
    assert _children_of(os.getpid()) == []


def test_demo_names_the_failing_step(tmp_path: Path) -> None:
    """A demo that cannot do a step exits non-zero and names it: here the output
    directory holds someone else's files, which the demo refuses to delete."""
    out = tmp_path / "precious"
    out.mkdir()
    (out / "thesis.txt").write_text("not a demo's output")
    proc = subprocess.run(
        [sys.executable, "-m", "demo", "--out", str(out), "--short"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 1
    assert "is not a previous demo's output" in proc.stderr
    assert (out / "thesis.txt").read_text() == "not a demo's output"
