"""The one text rule on the cloud (protocol/text.py), over real HTTP and the operator's
command line: decision reasons, request bodies, and what `cloud-stub requests show`
prints of rows an older release stored.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cloud_stub.cli import main
from cloud_stub.store.models import Decision, Request
from tests.fixtures.cloud import CloudServer, DeviceSigner, Principal
from tests.integration.test_cloud_review import REASON, approve, deny

NOT_TEXT = {
    "NUL": "Checked the warrant\x00 against the docket.",
    "ESC": "Checked the warrant \x1b[2J against the docket.",
    "C1 CSI": "Checked the warrant \x9b2J against the docket.",
    "twelve zero-width spaces": "\u200b" * 12,
    "word joiners": "Checked\u2060 the warrant against the docket.",
    "tag characters": "Checked the warrant \U000e0041\U000e0042 against the docket.",
    "bidi override": "Checked the warrant \u202e against the docket.",
}


@pytest.fixture
def pending(cloud: CloudServer) -> tuple[Principal, Principal, DeviceSigner, str]:
    agency = cloud.principal("agency", org="metro-pd")
    reviewer = cloud.principal("reviewer", org="legal")
    device = cloud.enroll()
    world = cloud.world(agency, device.device_id)
    response = cloud.submit(agency, world.warrant(device_ids=[device.device_id]))
    assert response.status_code == 201, response.text
    return agency, reviewer, device, str(response.json()["id"])


@pytest.mark.parametrize("name", sorted(NOT_TEXT))
def test_a_decision_reason_must_be_text(
    cloud: CloudServer, pending: tuple[Principal, Principal, DeviceSigner, str], name: str
) -> None:
    agency, reviewer, _, request_id = pending
    for decide in (approve, deny):
        response = decide(cloud, reviewer, request_id, NOT_TEXT[name])
        assert response.status_code == 400, (name, response.text)
        assert response.json()["error"]["code"] == "reason_not_text", response.text
    view = cloud.http.get(f"/v1/requests/{request_id}", headers=agency.headers).json()
    assert (view["status"], view["decisions"]) == ("pending_review", [])
    # the control: lines and tabs are text
    response = approve(cloud, reviewer, request_id, REASON + "\n\tDocket entry 14.")
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("char", ["\u200b", "\u200c", "\u200d", "\u2060", "\U000e0041",
                                  "\ufeff", "\u2028"])
def test_a_request_body_refuses_invisible_characters(
    cloud: CloudServer, pending: tuple[Principal, Principal, DeviceSigner, str], char: str
) -> None:
    agency, _, device, _ = pending
    world = cloud.world(agency, device.device_id)
    for field in ("investigator", "agency_case_number"):
        fields: dict[str, Any] = {field: f"Det{char} Ortiz"}
        body = world.warrant(device_ids=[device.device_id], **fields)
        response = cloud.submit(agency, body)
        assert response.status_code == 422, (field, response.text)
        assert response.json()["error"]["code"] == "invalid_request"
        assert f"U+{ord(char):04X}" in response.json()["error"]["message"]


def test_a_lone_surrogate_written_as_a_json_escape_is_refused(
    cloud: CloudServer, pending: tuple[Principal, Principal, DeviceSigner, str]
) -> None:
    agency, _, device, _ = pending
    world = cloud.world(agency, device.device_id)
    body = world.warrant(device_ids=[device.device_id], investigator="Det. XX")
    raw = cloud.http.post("/v1/requests", headers={**agency.headers,
                                                   "Content-Type": "application/json"},
                          content=json.dumps(body).replace("XX", "\\ud800"))
    assert raw.status_code in (400, 422), raw.text
    assert raw.json()["error"]["code"] in ("invalid_request", "malformed_json")


def test_requests_show_never_prints_raw_escapes(
    cloud: CloudServer, pending: tuple[Principal, Principal, DeviceSigner, str],
    capsys: pytest.CaptureFixture[str], tmp_path: Path,
) -> None:
    """Rows an older release stored without the rule: ESC and CSI in a decision's reason
    and a refusal's reason are shown as '?', never sent to the terminal."""
    _, reviewer, _, request_id = pending
    assert approve(cloud, reviewer, request_id, REASON).status_code == 200
    with cloud.service.store.transaction() as session:
        decision = session.query(Decision).filter_by(request_id=request_id).one()
        decision.reason = "fine \x1b]0;pwned\x07 \x1b[2J\x9b31m\u202e done"
        row = session.get(Request, request_id)
        assert row is not None
        row.reasons = [{"code": "old\x1bcode", "reason": "\x1b[31mred\u200b"}]
    store = f"sqlite:///{tmp_path / 'cloud.sqlite3'}"  # the `cloud` fixture's store
    for command in ("show", "list"):
        argv = ["requests", command, "--deployment", str(cloud.deployment.layout.root),
                "--store-url", store]
        if command == "show":
            argv.insert(2, request_id)
        assert main(argv) == 0
        out = capsys.readouterr().out
        for char in ("\x1b", "\x9b", "\x07", "\u202e", "\u200b"):
            assert char not in out, (command, repr(char))
    assert main(["requests", "show", request_id, "--deployment",
                 str(cloud.deployment.layout.root), "--store-url", store]) == 0
    assert "fine ?]0;pwned? ?[2J?31m? done" in capsys.readouterr().out
