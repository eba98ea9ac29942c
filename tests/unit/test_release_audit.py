"""The device audit log: the chain holds, and any edit, removal, reorder or torn write is
named at its first broken line (by the library and by `doorbell-agent audit verify`)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from device.cli import main
from device.release.audit import AuditLog, verify_log
from device.release.errors import AuditLogBroken


def _write(path: Path, n: int) -> None:
    log = AuditLog(path)
    for i in range(n):
        log.append("decision", {"jti": f"t-{i}", "code": "accepted"})
    log.close()


def test_chain_verifies_and_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    _write(path, 3)
    _write(path, 2)  # reopening continues the chain
    assert verify_log(path) == 5
    assert (path.stat().st_mode & 0o777) == 0o600


@pytest.mark.parametrize("line", [1, 3, 5])
def test_edited_line_is_named(tmp_path: Path, line: int) -> None:
    path = tmp_path / "audit.jsonl"
    _write(path, 5)
    lines = path.read_bytes().splitlines(keepends=True)
    record = json.loads(lines[line - 1])
    record["data"]["code"] = "uploaded"  # an attacker rewrites a decision
    lines[line - 1] = json.dumps(record, sort_keys=True, separators=(",", ":")).encode() + b"\n"
    path.write_bytes(b"".join(lines))
    with pytest.raises(AuditLogBroken) as caught:
        verify_log(path)
    assert caught.value.line == line


def test_removed_and_reordered_lines_are_named(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    _write(path, 4)
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(lines[0] + lines[2] + lines[3])  # line 2 removed
    with pytest.raises(AuditLogBroken) as caught:
        verify_log(path)
    assert caught.value.line == 2
    path.write_bytes(lines[1] + lines[0] + lines[2])
    with pytest.raises(AuditLogBroken) as caught:
        verify_log(path)
    assert caught.value.line == 1


def test_torn_tail_is_cut_and_recorded_on_reopen(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    _write(path, 2)
    with path.open("ab") as handle:
        handle.write(b'{"n":3,"at":"2026')  # power cut mid-write
    with pytest.raises(AuditLogBroken) as caught:
        verify_log(path)
    assert caught.value.line == 3
    log = AuditLog(path)
    log.append("decision", {"jti": "after"})
    log.close()
    assert verify_log(path) == 4
    events = [json.loads(raw)["event"] for raw in path.read_bytes().splitlines()]
    assert events == ["decision", "decision", "torn_tail", "decision"]


def test_cli_verify(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "audit.jsonl"
    _write(path, 3)
    assert main(["audit", "verify", "--log", str(path)]) == 0
    assert json.loads(capsys.readouterr().out) == {"ok": True, "log": str(path), "lines": 3}
    raw = path.read_bytes().replace(b"t-1", b"t-9")
    path.write_bytes(raw)
    assert main(["audit", "verify", "--log", str(path)]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is False
    assert report["line"] == 2


_CUT_SHORT = """
import resource, signal, sys
from pathlib import Path
from device.release.audit import AuditLog
from device.release.errors import ReleaseStateError

signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write returns short, then EFBIG
log = AuditLog(Path(sys.argv[1]))
soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[2]), hard))
try:
    log.append("decision", {"jti": "t-cut", "pad": "x" * 300})
except ReleaseStateError as exc:
    print("refused:", exc)
resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
log.append("decision", {"jti": "t-after", "code": "accepted"})
"""


def test_a_line_cut_short_by_a_full_file_leaves_no_fragment(tmp_path: Path) -> None:
    """A write that stops part-way (here a file size limit, as a full disk does) is cut
    back before `append` raises: the next line starts after the last whole one and the
    chain verifies. Run in a child, whose file size limit the kernel enforces."""
    path = tmp_path / "audit.jsonl"
    _write(path, 3)
    limit = path.stat().st_size + 60  # room for part of the next line only
    child = subprocess.run([sys.executable, "-c", _CUT_SHORT, str(path), str(limit)],
                           capture_output=True, text=True, timeout=60, check=False)
    assert child.returncode == 0, child.stderr
    assert "refused: cannot append to audit log: short write" in child.stdout
    assert verify_log(path) == 4
    last = json.loads(path.read_bytes().splitlines()[-1])
    assert (last["n"], last["data"]["jti"]) == (4, "t-after")
