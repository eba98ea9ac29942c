"""Reviewers see the warrant they approve: court, judge, docket, issue and expiry dates,
investigator and agency case number, in `cloud-stub requests show` (text and --json) and
in the API's request view, exactly as the agency filed them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.fixtures.cloud import CloudServer
from tests.fixtures.deployment import OperatorCli
from tests.fixtures.policy import COURT_ID


def test_the_warrant_is_shown_to_reviewers(
    cloud: CloudServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    agency = cloud.principal("agency")
    reviewer = cloud.principal("reviewer", org="court-liaison")
    device = cloud.enroll()
    body = cloud.world(agency, device.device_id).warrant(device_ids=[device.device_id])
    submitted = cloud.submit(agency, body)
    assert submitted.status_code == 201, submitted.text
    request_id = submitted.json()["id"]

    api = cloud.http.get(f"/v1/requests/{request_id}", headers=reviewer.headers).json()
    warrant = api["warrant"]
    assert warrant["court"] == COURT_ID
    assert warrant["judge"] == "Hon. Ada Marsh"
    assert warrant["docket"] == "2026-MJ-00421"
    assert warrant["issued"].startswith(body["issued"][:19])
    assert warrant["expires"].startswith(body["expires"][:19])
    assert warrant["investigator"] == "Det. Sam Ortiz"
    assert warrant["agency_case_number"] == "MPD-2026-1187"
    assert warrant["document_sha256"] == body["document_sha256"]

    store_url = cloud.service.store.engine.url.render_as_string(hide_password=False)
    cli = OperatorCli(cloud.deployment, store_url, capsys)
    code, out, err = cli.run("requests", "show", request_id, "--json")
    assert code == 0, err
    assert json.loads(out)["warrant"] == warrant
    code, out, err = cli.run("requests", "show", request_id)
    assert code == 0, err
    for shown in (COURT_ID, "Hon. Ada Marsh", "2026-MJ-00421", "Det. Sam Ortiz",
                  "MPD-2026-1187", body["issued"][:10], body["expires"][:10]):
        assert shown in out, (shown, out)
    assert "expires" in out
    assert "issued" in out


def test_another_basis_has_no_warrant(cloud: CloudServer) -> None:
    agency = cloud.principal("agency")
    device = cloud.enroll()
    body = cloud.world(agency, device.device_id).emergency(device_ids=[device.device_id])
    submitted = cloud.submit(agency, body)
    assert submitted.json()["warrant"] is None
