"""deploy/raspberry-pi/install.sh: shellcheck-clean, and it checks before it changes.

The script cannot run to the end here (no Raspberry Pi OS, no camera): these tests
prove that it is shellcheck-clean, parses, and refuses bad input and a wrong platform
with a message naming the problem before it touches the system. The install steps
themselves are verified only by reading (see docs/raspberry-pi.md, "What was verified").
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "deploy" / "raspberry-pi" / "install.sh"
PRIVATE = ("identity.key", "transport.key", "mqtt.key")
PUBLIC = (
    "device-id",
    "identity.pub",
    "transport.pub",
    "mqtt.pem",
    "ca.pem",
    "trust-root.json",
    "escrow.pub",
    "owner.pub",
    "agent.toml",
)


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )


def _dpkg_architecture() -> str:
    dpkg = shutil.which("dpkg")
    if dpkg is None:
        return "unknown"
    out = subprocess.run([dpkg, "--print-architecture"], capture_output=True, text=True)
    return out.stdout.strip()


ARCH = _dpkg_architecture()


def shims(directory: Path, **commands: str) -> dict[str, str]:
    """An environment whose PATH puts one-line stand-in commands first."""
    directory.mkdir()
    for name, output in commands.items():
        path = directory / name
        path.write_text(f"#!/bin/sh\nprintf '%s\\n' '{output}'\n", encoding="utf-8")
        path.chmod(0o755)
    return {**os.environ, "PATH": f"{directory}:{os.environ['PATH']}"}


def fake_bundle(root: Path, device: str = "porch") -> Path:
    bundle = root / device
    bundle.mkdir(mode=0o700)
    for name in PRIVATE + PUBLIC:
        (bundle / name).write_text("public\n", encoding="utf-8")
    (bundle / "device-id").write_text(f"{device}\n", encoding="utf-8")
    (bundle / "identity.key").write_text(
        "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n-----END PRIVATE KEY-----\n",
        encoding="utf-8",
    )
    (bundle / "transport.key").write_text("AGE-SECRET-KEY-1QQQ\n", encoding="utf-8")
    return bundle


@pytest.mark.parametrize("script", ["install.sh", "pi-check.sh", "pi-root.sh"])
def test_shellcheck_is_clean(script: str) -> None:
    assert shutil.which("shellcheck"), "shellcheck missing: run make setup"
    result = subprocess.run(
        ["shellcheck", "--severity=style", str(SCRIPT.parent / script)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""


def test_strict_mode_and_syntax() -> None:
    text = SCRIPT.read_text(encoding="utf-8")
    assert "set -euo pipefail" in text
    assert subprocess.run(["bash", "-n", str(SCRIPT)], check=False).returncode == 0


def test_help_names_every_option() -> None:
    result = run("--help")
    assert result.returncode == 0
    for option in ("--bundle", "--source", "--replace-bundle", "--no-start"):
        assert option in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "--bundle is required for the first install"),
        (("--bundle",), "--bundle needs a path"),
        (("--bundle", "/nonexistent/porch.tar"), "does not exist"),
        (("--bundle", "x", "--colour"), "unknown argument: --colour"),
    ],
)
def test_bad_arguments_are_named(args: tuple[str, ...], message: str) -> None:
    result = run(*args)
    assert result.returncode != 0
    assert message in result.stderr


@pytest.mark.parametrize("missing", ["identity.key", "transport.key", "trust-root.json"])
def test_an_incomplete_bundle_names_the_missing_file(tmp_path: Path, missing: str) -> None:
    bundle = fake_bundle(tmp_path)
    (bundle / missing).unlink()
    result = run("--bundle", str(bundle))
    assert result.returncode == 1
    assert f"lacks {missing}" in result.stderr


def test_a_bundle_with_a_wrong_key_is_refused(tmp_path: Path) -> None:
    bundle = fake_bundle(tmp_path)
    (bundle / "transport.key").write_text("not a key\n", encoding="utf-8")
    result = run("--bundle", str(bundle))
    assert "transport.key is not an age identity" in result.stderr


def test_a_tarball_with_two_top_directories_is_refused(tmp_path: Path) -> None:
    one, two = fake_bundle(tmp_path, "one"), fake_bundle(tmp_path, "two")
    archive = tmp_path / "bundle.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(one, arcname="one")
        tar.add(two, arcname="two")
    result = run("--bundle", str(archive))
    assert "exactly one top-level directory" in result.stderr


@pytest.mark.skipif(
    platform.machine() == "aarch64" or ARCH == "arm64",
    reason="on a 64-bit ARM machine the script would install",
)
@pytest.mark.parametrize("as_tar", [False, True])
def test_a_good_bundle_then_stops_at_the_platform_check(tmp_path: Path, as_tar: bool) -> None:
    bundle = fake_bundle(tmp_path)
    target = bundle
    if as_tar:
        target = tmp_path / "porch.tar"
        with tarfile.open(target, "w") as tar:
            tar.add(bundle, arcname="porch")
    result = run("--bundle", str(target))
    assert result.returncode == 1
    assert "needs 64-bit Raspberry Pi OS (arm64)" in result.stderr
    assert "==>" not in result.stdout  # nothing was done


@pytest.mark.slow
@pytest.mark.skipif(
    platform.machine() == "aarch64" or ARCH == "arm64",
    reason="on a 64-bit ARM machine the script would install",
)
def test_bundles_from_cloud_stub_devices_enroll_are_accepted(tmp_path: Path) -> None:
    cloud_stub = str(Path(sys.executable).parent / "cloud-stub")
    owner = subprocess.run(["age-keygen"], capture_output=True, text=True, check=True).stdout
    recipient = next(
        line.split(": ", 1)[1] for line in owner.splitlines() if line.startswith("# public key")
    )
    deployment = tmp_path / "deployment"
    subprocess.run(
        [cloud_stub, "init", str(deployment)], capture_output=True, check=True, timeout=120
    )
    for device, option, target in [
        ("porch-1", "--out", tmp_path / "porch-1"),
        ("porch-2", "--tar", tmp_path / "porch-2.tar"),
    ]:
        subprocess.run(
            [
                *(cloud_stub, "devices", "enroll", device, "--owner-recipient", recipient),
                *("--deployment", str(deployment), option, str(target)),
            ],
            capture_output=True,
            check=True,
            timeout=120,
        )
        result = run("--bundle", str(target))
        # Every bundle check passed; only the platform stops it here.
        assert result.returncode == 1
        assert "needs 64-bit Raspberry Pi OS (arm64)" in result.stderr, result.stderr


def test_a_32_bit_userland_on_a_64_bit_kernel_is_refused(tmp_path: Path) -> None:
    # Raspberry Pi OS 32-bit boots a 64-bit kernel on a Pi 4 or 5: uname -m says aarch64,
    # the packages are armhf. The shims also make `id -u` non-root, so nothing is ever
    # installed even by a script that let this userland through.
    env = shims(tmp_path / "bin", uname="aarch64", dpkg="armhf", id="1000")
    result = run("--bundle", str(fake_bundle(tmp_path)), env=env)
    assert result.returncode == 1
    assert "this system's packages are armhf (kernel aarch64)" in result.stderr
    assert "==>" not in result.stdout


def check_picamera2(tmp_path: Path, version: str) -> subprocess.CompletedProcess[str]:
    """install.sh's picamera2 check alone (the script sourced), with dpkg-query saying
    `version` for python3-picamera2; dpkg --compare-versions is the real one."""
    env = shims(tmp_path / "bin", **{"dpkg-query": version})
    return subprocess.run(
        ["bash", "-c", f'source "{SCRIPT}" && check_picamera2'],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )


@pytest.mark.parametrize("version", ["0.3.12-1", "0.3.23-1~bpo12+1", "0.3.25-1"])
def test_a_picamera2_older_than_the_floor_is_refused(tmp_path: Path, version: str) -> None:
    result = check_picamera2(tmp_path, version)
    assert result.returncode == 1
    assert f"python3-picamera2 {version} is older than 0.3.26" in result.stderr
    assert "apt full-upgrade" in result.stderr


@pytest.mark.parametrize("version", ["0.3.26-1", "0.3.36-1", "0.3.30-1+rpt1"])
def test_a_picamera2_at_or_above_the_floor_is_accepted(tmp_path: Path, version: str) -> None:
    result = check_picamera2(tmp_path, version)
    assert result.returncode == 0, result.stderr
    assert "at least 0.3.26" in result.stdout


def test_the_pi_extra_asks_for_the_same_picamera2_floor() -> None:
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert '"picamera2>=0.3.26"' in text
    assert "PICAMERA2_FLOOR=0.3.26" in SCRIPT.read_text(encoding="utf-8")
