"""`cloud-stub court check` checks before review what can be checked: the legal rules,
then (as the service does) that every named device is enrolled and not revoked, and
whether the cloud holds keys for the window; `warrant_expired` says when."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cloud_stub.cli import main
from cloud_stub.policy.courts import load_court_key
from tests.fixtures.deployment import TestDeployment
from tests.fixtures.policy import COURT_ID, PolicyWorld


def _check(deployment: TestDeployment, tmp_path: Path, body: dict[str, object],
           capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str]:
    path = tmp_path / "request.json"
    path.write_text(json.dumps(body))
    capsys.readouterr()
    code = main(["court", "check", str(path), "--deployment", str(deployment.layout.root),
                 *extra])
    out, err = capsys.readouterr()
    return code, out + err


def _world(deployment: TestDeployment) -> PolicyWorld:
    return PolicyWorld(now=datetime.now(UTC).replace(microsecond=0),
                       court_key=load_court_key(deployment.layout.court_key(COURT_ID)),
                       recipient="age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p")


def test_a_device_that_is_not_enrolled_is_refused_before_review(
    deployment: TestDeployment, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    body = _world(deployment).warrant(device_ids=["never-enrolled-cam"])
    code, out = _check(deployment, tmp_path, body, capsys)
    assert code == 3, out
    assert "device_not_enrolled" in out
    assert "never-enrolled-cam" in out


def test_an_enrolled_device_passes_and_the_footage_is_checked(
    fresh_deployment: TestDeployment, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    device = fresh_deployment.enroll_device(fresh_deployment.new_device_id("court"))
    device_id = device.device_id_file.read_text().strip()
    body = _world(fresh_deployment).warrant(device_ids=[device_id])
    code, out = _check(fresh_deployment, tmp_path, body, capsys)
    assert code == 0, out
    assert "passes the legal check" in out
    assert "footage not checked" in out  # no store yet
    store = tmp_path / "store.sqlite3"
    assert main(["devices", "list", "--deployment", str(fresh_deployment.layout.root),
                 "--store-url", f"sqlite:///{store}"]) == 0
    code, out = _check(fresh_deployment, tmp_path, body, capsys,
                       "--store-url", f"sqlite:///{store}")
    assert code == 0, out
    assert f"no footage to release from {device_id} [no_escrowed_epochs]" in out
    assert "an approval would release nothing" in out


def test_an_expired_warrant_says_when(
    deployment: TestDeployment, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    world = _world(deployment)
    body = world.warrant(issued=world.t(days=-20), expires=world.t(days=-10),
                         window={"start": world.t(days=-21), "end": world.t(days=-20.5)})
    code, out = _check(deployment, tmp_path, body, capsys)
    assert code == 3, out
    assert "warrant_expired" in out
    assert f"expired at {body['expires']}" in out
