"""The operator's command line against a real deployment and store: principals and
their keys, requests list/show/approve/deny, devices list, the report, audit verify,
and `cloud-stub serve` as a real process on a loopback port."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from cloud_stub.policy.courts import load_court_key
from cloud_stub.policy.requests import parse_request
from cloud_stub.services.cloud_service import CloudService
from cloud_stub.services.context import caller_of
from cloud_stub.store import Store
from cloud_stub.store.models import AuditRow
from cloud_stub.store.principals import authenticate
from demo.services import free_port
from tests.fixtures.deployment import OperatorCli, TestDeployment
from tests.fixtures.policy import COURT_ID, PolicyWorld


class Cli(OperatorCli):
    def json(self, *argv: str) -> Any:
        code, out, err = self.run(*argv, "--json")
        assert code == 0, err
        return json.loads(out)


@pytest.fixture
def cli(fresh_deployment: TestDeployment, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(fresh_deployment, f"sqlite:///{tmp_path / 'cli.sqlite3'}", capsys)


def test_an_agency_gets_a_key_once_and_an_identity_file(cli: Cli) -> None:
    code, out, _ = cli.run("agencies", "add", "metro-pd")
    assert code == 0
    assert "API key (shown once" in out
    key_file = cli.deployment.layout.agency_dir("metro-pd") / "agency.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert key_file.read_text().startswith("AGE-SECRET-KEY-1")
    code, _, err = cli.run("agencies", "add", "metro-pd")
    assert code == 1
    assert "already exists" in err
    with pytest.raises(SystemExit) as info:  # --org is required for a reviewer
        cli.run("reviewers", "add", "alice")
    assert info.value.code == 2


def test_requests_through_the_cli(cli: Cli) -> None:
    agency = cli.json("agencies", "add", "metro-pd")
    cli.json("reviewers", "add", "alice", "--org", "legal")
    cli.json("reviewers", "add", "bob", "--org", "metro-pd")
    device = cli.deployment.enroll_device(cli.deployment.new_device_id("cam"))
    device_id = device.device_id_file.read_text().strip()
    devices = cli.json("devices", "list")
    assert device_id in [d["id"] for d in devices]

    world = PolicyWorld(now=datetime.now(UTC).replace(microsecond=0),
                        court_key=load_court_key(cli.deployment.layout.court_key(COURT_ID)),
                        recipient=agency["recipient"])
    service = CloudService.open(cli.deployment.layout.root, store_url=cli.store_url)
    try:
        with service.store.transaction() as session:
            caller = caller_of(authenticate(session, agency["api_key"]))
        view = service.intake.submit(caller,
                                     parse_request(world.warrant(device_ids=[device_id])))
    finally:
        service.close()

    listed = cli.json("requests", "list")
    assert [r["id"] for r in listed] == [view.id]
    code, out, _ = cli.run("requests", "list")
    assert code == 0
    assert "pending_review" in out
    assert view.id in out

    code, _, err = cli.run("requests", "approve", view.id, "--reviewer", "bob",
                           "--reason", "Looks fine to me, same team.")
    assert code == 1
    assert "separation_of_duties" in err
    shown = cli.json("requests", "approve", view.id, "--reviewer", "alice",
                     "--reason", "Warrant verified with the court clerk.")
    assert shown["status"] == "no_footage"  # nothing escrowed for this device yet
    code, out, _ = cli.run("requests", "show", view.id)
    assert "alice" in out
    assert "no_escrowed_epochs" in out

    report = cli.json("report")
    assert report["requests"] == 1
    code, out, _ = cli.run("report")
    assert code == 0
    assert out.strip()

    verified = cli.json("audit", "verify")
    assert verified["ok"] is True
    store = Store(cli.store_url)
    with store.transaction() as session:
        session.execute(update(AuditRow).where(AuditRow.seq == 2).values(actor="someone"))
    store.dispose()
    code, _, err = cli.run("audit", "verify")
    assert code == 2
    assert "entry 2" in err


def _serve(deployment: TestDeployment, store: Path) -> tuple[subprocess.Popen[bytes], int]:
    """`cloud-stub serve` on a port that was free a moment ago, and that port once it
    answers /healthz. The port may be taken between the probe and uvicorn's bind (a
    shared machine): then it starts again on another, at most five times."""
    for _ in range(5):
        port = free_port()
        process = subprocess.Popen(
            [str(Path(sys.executable).parent / "cloud-stub"), "serve", "--deployment",
             str(deployment.layout.root), "--store-url", f"sqlite:///{store}",
             "--port", str(port), "--no-mqtt"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
        )
        deadline = time.monotonic() + 30  # a hang guard, not a measurement
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
                return process, port
            except httpx.TransportError:
                if process.poll() is None and time.monotonic() <= deadline:
                    time.sleep(0.2)
                    continue
            _stop(process)
            output = "serve exited"
            if process.stdout is not None:
                output = process.stdout.read().decode()
                process.stdout.close()
            if "address already in use" not in output.lower():
                raise AssertionError(output)
            break
    raise AssertionError("no free port for serve after five tries")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
    process.wait(timeout=20)


def test_serve_refuses_while_it_can_read_a_decisive_key(
    fresh_deployment: TestDeployment, tmp_path: Path
) -> None:
    """A root key, a court's key or a reviewer's key on the service host: no start, and
    each file is named (docs/adr/0013-trust-root-v2.md)."""
    result = subprocess.run(
        [str(Path(sys.executable).parent / "cloud-stub"), "serve", "--deployment",
         str(fresh_deployment.layout.root), "--store-url", f"sqlite:///{tmp_path / 'r.db'}",
         "--port", "9", "--no-mqtt"],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 1, result.stdout
    layout = fresh_deployment.layout
    for path in (layout.root_key("root-1"), layout.root_key("root-2"),
                 layout.court_key("demo-district-court"),
                 layout.test_reviewer_key("test-alice")):
        assert f"{path} is " in result.stderr, result.stderr


def test_serve_runs_the_api(fresh_deployment: TestDeployment, tmp_path: Path) -> None:
    fresh_deployment.move_keys_off_host()
    process, port = _serve(fresh_deployment, tmp_path / "s.db")
    try:
        response = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
        assert response.json() == {"status": "ok"}
        assert httpx.get(f"http://127.0.0.1:{port}/v1/requests").status_code == 401
        assert httpx.get(f"http://127.0.0.1:{port}/openapi.json").status_code == 200
    finally:
        _stop(process)
        if process.stdout is not None:
            process.stdout.close()
