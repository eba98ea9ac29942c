"""`doorbell-agent token verify` as an operator runs it: a real subprocess, real files."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow  # each case starts the agent CLI in a subprocess

HERE = Path(__file__).resolve().parent
VECTORS_DIR = HERE.parent / "vectors"
VECTORS = json.loads((VECTORS_DIR / "vectors.json").read_text(encoding="utf-8"))
ROOT = VECTORS_DIR / VECTORS["trust_root"]
AGENT = Path(sys.executable).parent / "doorbell-agent"
BY_NAME = {v["name"]: v for v in VECTORS["tokens"]}


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(AGENT), "token", "verify", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def token_file(tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"{name}.json"
    path.write_bytes(base64.b64decode(BY_NAME[name]["token_b64"]))
    return path


def verdict(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(proc.stdout)
    assert set(out) == {"accepted", "code", "detail"}
    return out


def test_accepted_token_exits_0(tmp_path: Path) -> None:
    vector = BY_NAME["valid-warrant"]
    proc = run(
        token_file(tmp_path, "valid-warrant"),
        "--trust-root",
        ROOT,
        "--device",
        vector["context"]["device_id"],
        "--now",
        vector["context"]["now"],
    )
    assert proc.returncode == 0, proc.stderr
    out = verdict(proc)
    assert out["accepted"] is True
    assert out["code"] is None
    assert "vec-warrant-1" in out["detail"]


@pytest.mark.parametrize(
    ("name", "device", "extra", "code"),
    [
        ("valid-warrant", "porch-2", [], "wrong_device"),
        ("valid-warrant", "porch-1", ["--unsynchronized"], "clock_unsynchronized"),
        ("below-threshold-one-signature", "porch-1", [], "below_threshold"),
        ("bad-signature-forged-kid", "porch-1", [], "bad_signature"),
        ("oversized", "porch-1", [], "oversized"),
        ("malformed-not-json", "porch-1", [], "malformed"),
    ],
)
def test_rejected_token_exits_1_with_its_code(
    tmp_path: Path, name: str, device: str, extra: list[str], code: str
) -> None:
    now = BY_NAME[name]["context"]["now"]
    proc = run(
        token_file(tmp_path, name), "--trust-root", ROOT, "--device", device, "--now", now, *extra
    )
    assert proc.returncode == 1, proc.stderr
    out = verdict(proc)
    assert (out["accepted"], out["code"]) == (False, code)
    assert out["detail"]


def test_expired_token_judged_at_a_later_now(tmp_path: Path) -> None:
    proc = run(
        token_file(tmp_path, "valid-warrant"),
        "--trust-root",
        ROOT,
        "--device",
        "porch-1",
        "--now",
        "2026-06-02T12:00:00Z",
    )
    assert proc.returncode == 1
    assert verdict(proc)["code"] == "expired"


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    token = token_file(tmp_path, "valid-warrant")
    bad_now = run(token, "--trust-root", ROOT, "--device", "porch-1", "--now", "yesterday")
    assert bad_now.returncode == 2
    assert "--now" in bad_now.stderr
    missing = run(tmp_path / "nope.json", "--trust-root", ROOT, "--device", "porch-1")
    assert missing.returncode == 2
    assert "nope.json" in missing.stderr
    garbage_root = tmp_path / "root.json"
    garbage_root.write_text("{}")
    refused = run(token, "--trust-root", garbage_root, "--device", "porch-1")
    assert refused.returncode == 2
    assert "malformed" in refused.stderr
    expired_root = run(
        token, "--trust-root", ROOT, "--device", "porch-1", "--now", "2030-01-01T00:00:00Z"
    )
    assert expired_root.returncode == 2
    assert "root_expired" in expired_root.stderr
    no_device = run(token, "--trust-root", ROOT)
    assert no_device.returncode == 2
    assert "--device" in no_device.stderr
