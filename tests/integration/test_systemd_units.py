"""The shipped systemd units pass `systemd-analyze verify` and keep their hardening.

The units name their install paths (/opt/sealed-doorbell/venv/bin/...), which do not
exist on a development machine, and `verify` refuses an ExecStart that is not
executable. The test therefore copies each unit to a temporary directory with the
prefix /opt/sealed-doorbell/venv/bin pointed at this checkout's venv (where the same
console scripts are installed) and verifies the copy; nothing else in the unit changes.

`verify` exits 0 even when it ignores a line it cannot parse (it only prints a warning),
so the test also demands that it printed nothing.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UNITS = ROOT / "deploy" / "systemd"
INSTALL_BIN = "/opt/sealed-doorbell/venv/bin"
VENV_BIN = str(Path(sys.executable).parent)

# systemd-analyze comes with the `systemd` package that `make setup` installs.
assert shutil.which("systemd-analyze"), "systemd-analyze missing: run make setup"


def localized(unit: str, tmp_path: Path, edit: tuple[str, str] | None = None) -> Path:
    text = (UNITS / unit).read_text(encoding="utf-8")
    assert INSTALL_BIN in text, f"{unit} no longer starts from {INSTALL_BIN}"
    text = text.replace(INSTALL_BIN, VENV_BIN)
    if edit is not None:
        assert edit[0] in text
        text = text.replace(edit[0], edit[1])
    path = tmp_path / unit
    path.write_text(text, encoding="utf-8")
    return path


def verify(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def directives(unit: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for raw in (UNITS / unit).read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", "[")):
            continue
        key, _, value = line.partition("=")
        found.setdefault(key, []).append(value)
    return found


@pytest.mark.parametrize("unit", ["doorbell-agent.service", "cloud-stub.service"])
def test_verify_accepts_the_unit_without_a_single_warning(unit: str, tmp_path: Path) -> None:
    result = verify(localized(unit, tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stdout + result.stderr == ""


def test_verify_would_catch_a_mistyped_directive(tmp_path: Path) -> None:
    # The check above can fail: a typo in a hardening line is reported, not ignored.
    path = localized(
        "doorbell-agent.service", tmp_path, ("ProtectSystem=strict", "ProtectSystem=strikt")
    )
    result = verify(path)
    assert "ProtectSystem" in result.stderr or "protect system" in result.stderr.lower()


def test_agent_unit_is_a_hardened_notify_service_with_a_watchdog() -> None:
    d = directives("doorbell-agent.service")
    assert d["Type"] == ["notify"]
    assert d["WatchdogSec"] == ["30s"]
    assert d["Restart"] == ["on-failure"]
    assert d["User"] == ["doorbell"]
    assert d["ProtectSystem"] == ["strict"]
    assert d["ReadWritePaths"] == ["/var/lib/doorbell"]
    for key in ("NoNewPrivileges", "PrivateTmp", "ProtectHome"):
        assert d[key] == ["yes"], key
    assert d["CapabilityBoundingSet"] == [""]
    assert d["AmbientCapabilities"] == [""]
    assert d["DevicePolicy"] == ["closed"]
    allowed = {entry.split()[0] for entry in d["DeviceAllow"]}
    assert allowed == {
        "char-video4linux",
        "char-media",
        "char-dma_heap",
        "char-gpiochip",
        "/dev/vchiq",
    }
    assert "MemoryMax" in d
    assert d["LimitCORE"] == ["0"]  # a core dump would hold plaintext frames
    assert d["MemorySwapMax"] == ["0"]  # so would a swapped page
    # The kernel clock is read with ntp_adjtime(2): the syscall filter must allow it.
    assert any("adjtimex" in line for line in d["SystemCallFilter"])
    assert "ProtectClock" not in d


@pytest.mark.parametrize(
    ("unit", "ceiling"), [("doorbell-agent.service", 3.0), ("cloud-stub.service", 2.5)]
)
def test_offline_security_exposure_stays_low(unit: str, ceiling: float, tmp_path: Path) -> None:
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", str(localized(unit, tmp_path))],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    last = [line for line in result.stdout.splitlines() if "Overall exposure level" in line]
    assert last, result.stdout + result.stderr
    score = float(last[0].split(":")[1].split()[0])
    assert score <= ceiling, last[0]
