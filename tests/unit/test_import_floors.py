"""The import floors of docs/architecture.md hold, and the check that says so can fail.

The floors are between the programs (protocol at the bottom, the programs never importing
each other) and inside the device (composition above the services, above the recording
parts, above the clock, configuration and errors).

The contracts live in pyproject.toml (`[tool.importlinter]`). The second test copies the
packages into a temporary folder, plants one wrong-way import per floor and runs the
same contracts over the copy: each planted import must break the contract it crosses,
beside the untouched copy, which must pass (so the copy, not the checkout, is what was
analysed).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
PACKAGES = ("protocol", "mqtt_session", "device", "cloud_stub", "owner_app", "doorbell_review",
            "doorbell_evidence", "release_log", "demo")


def _lint(root: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [str(LINT_IMPORTS), str(root / "pyproject.toml"), "--no-cache"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _copy_tree(dest: Path) -> Path:
    for package in PACKAGES:
        shutil.copytree(
            ROOT / package, dest / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    shutil.copy2(ROOT / "pyproject.toml", dest / "pyproject.toml")
    return dest


def test_the_checkout_keeps_every_floor() -> None:
    result = _lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("importer", "imported", "contract"),
    [
        ("protocol/timefmt.py", "device.errors", "protocol is the floor"),
        ("protocol/timefmt.py", "mqtt_session.inbound", "protocol is the floor"),
        ("mqtt_session/inbound.py", "device.errors", "MQTT session helper is a floor too"),
        ("mqtt_session/inbound.py", "cloud_stub.errors", "MQTT session helper is a floor too"),
        ("mqtt_session/inbound.py", "owner_app.errors", "MQTT session helper is a floor too"),
        ("device/motion.py", "cloud_stub.errors", "never import each other"),
        ("owner_app/render.py", "device.errors", "never import each other"),
        ("cloud_stub/domain/redelivery_policy.py", "demo.checks", "no program imports the demo"),
        ("doorbell_review/__init__.py", "cloud_stub.errors", "never import each other"),
        ("release_log/__init__.py", "cloud_stub.errors", "builds on protocol alone"),
        ("doorbell_evidence/__init__.py", "device.errors", "never import each other"),
        ("device/motion.py", "release_log.client", "imports no log server or client"),
        ("device/clock.py", "device.release.handler", "the device's floors"),
        ("device/camera/base.py", "device.agent", "the device's floors"),
        ("device/vault/retention.py", "device.release.jobs", "the device's floors"),
        ("device/release/roots.py", "device.homeassistant", "the device's floors"),
        ("cloud_stub/domain/lifecycle.py", "cloud_stub.store.models", "the cloud stub's floors"),
        ("cloud_stub/store/sequence.py", "cloud_stub.services.context",
         "the cloud stub's floors"),
        ("cloud_stub/services/escrow.py", "cloud_stub.api.deps", "the cloud stub's floors"),
        ("cloud_stub/provision/names.py", "cloud_stub.services.context",
         "the cloud stub's floors"),
        ("cloud_stub/store/devices.py", "cloud_stub.provision.revocations",
         "read no deployment files"),
        ("cloud_stub/domain/review_rules.py", "cloud_stub.config", "read no deployment files"),
    ],
)
def test_a_planted_wrong_way_import_breaks_its_floor(
    tmp_path: Path, importer: str, imported: str, contract: str
) -> None:
    copy = _copy_tree(tmp_path / "tree")
    clean = _lint(copy)
    assert clean.returncode == 0, clean.stdout + clean.stderr

    planted = copy / importer
    planted.write_text(
        planted.read_text(encoding="utf-8") + f"\nimport {imported}  # planted\n",
        encoding="utf-8",
    )
    broken = _lint(copy)
    assert broken.returncode != 0, broken.stdout
    report = " ".join(broken.stdout.split())  # the report wraps long contract names
    assert contract in report
    assert "BROKEN" in report
    assert imported in report
