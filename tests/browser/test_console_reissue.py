"""Re-issuing a refused token from the console (docs/adr/0015-review-console.md, section
9): under trust root v1 a reviewer re-issues on the page through `Reissuing.reissue`;
once reviewers sign, the page shows the `doorbell-review reissue` command and takes no
form; nobody else sees the panel or gets a re-issue past the service's rules.

The refusal is the loss of ADR 0011: token A (request one) is lost, the device accepts
token B (request two, a higher ``seq``), A then reaches it and is refused ``stale_seq``,
reported through the seam the MQTT link calls (`tests.fixtures.reissue.refuse`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from playwright.sync_api import Browser, Page, expect
from sqlalchemy import select

from cloud_stub.console import ApprovalMode, ConsoleSettings
from cloud_stub.store.models import AuditRow, Token
from tests.browser.conftest import ConsoleServer, open_console
from tests.fixtures.cloud import DeviceSigner, Principal
from tests.fixtures.deployment import TestDeployment
from tests.fixtures.reissue import refuse, tokens

APPROVE = "Warrant checked against the court docket; scope is one porch camera."
REISSUE = "The broker lost the first token; the device took a later one. Same warrant."


@dataclass
class Stale:
    agency: Principal
    device: DeviceSigner
    request_id: str
    a: Token  # refused stale_seq
    b: Token  # request two's token, which the device accepted


def _approved(console: ConsoleServer, agency: Principal, approver: Principal,
              device: DeviceSigner) -> str:
    cloud = console.cloud
    body = cloud.world(agency, device.device_id).warrant(device_ids=[device.device_id])
    answer = cloud.submit(agency, body)
    assert answer.status_code == 201, answer.text
    request_id = str(answer.json()["id"])
    answer = cloud.http.post(f"/v1/requests/{request_id}/approve", json={"reason": APPROVE},
                             headers=approver.headers)
    assert answer.json()["status"] == "released", answer.text
    return request_id


def _make_stale(console: ConsoleServer) -> Stale:
    cloud = console.cloud
    agency = cloud.principal("agency", org="metro-pd")
    approver = cloud.principal("reviewer", org="legal")
    device = cloud.enroll("reissue")
    now = datetime.now(UTC)
    cloud.escrow_epoch(device.device_id, now - timedelta(hours=20), now - timedelta(hours=19))
    request_id = _approved(console, agency, approver, device)  # token A: the broker loses it
    [a] = tokens(cloud, request_id)
    [b] = tokens(cloud, _approved(console, agency, approver, device))  # B reaches the device
    assert a.seq < b.seq
    refuse(cloud, device.device_id, a, "stale_seq")
    [a] = tokens(cloud, request_id)
    assert (a.status, a.status_reason) == ("rejected", "stale_seq")
    return Stale(agency, device, request_id, a, b)


def _reissued(console: ConsoleServer) -> list[dict[str, Any]]:
    with console.cloud.service.store.read() as session:
        return [dict(d) for d in session.execute(
            select(AuditRow.detail).where(AuditRow.action == "token.reissued")
            .order_by(AuditRow.seq)).scalars()]


def _state(console: ConsoleServer, request_id: str) -> list[tuple[str, str, str]]:
    return [(t.jti, t.status, t.status_reason) for t in tokens(console.cloud, request_id)]


def _post(page: Page, console: ConsoleServer, request_id: str, reason: str = REISSUE) -> Any:
    csrf = page.locator("input[name=csrf]").first.get_attribute("value") or ""
    return page.request.post(f"{console.url}/requests/{request_id}/reissue",
                             form={"reason": reason, "csrf": csrf})


def test_a_reviewer_reissues_a_stale_token_on_the_page(console: ConsoleServer) -> None:
    stale = _make_stale(console)
    reviewer = console.cloud.principal("reviewer", org="ethics-board")
    watched = console.sign_in(reviewer)
    page = watched.page

    # the refused token's page leads to the request's re-issue panel
    page.goto(f"{console.url}/tokens/{stale.a.jti}")
    page.locator("#token-reissue").get_by_role("link").click()
    expect(page).to_have_url(f"{console.url}/requests/{stale.request_id}#reissue")
    panel = page.locator("#refused-tokens")
    expect(panel).to_contain_text(stale.a.jti)
    expect(panel).to_contain_text(stale.device.device_id)
    expect(panel).to_contain_text("stale_seq")
    assert stale.b.jti not in (panel.text_content() or "")
    assert page.locator("#reissue-command").count() == 0
    watched.check_accessible()
    watched.shot("reissue-panel")

    page.get_by_label("Reason for the re-issue").fill(REISSUE)
    page.get_by_role("button", name="Re-issue").click()
    page.wait_for_load_state()
    expect(page).to_have_url(f"{console.url}/requests/{stale.request_id}")
    assert page.locator("#reissue").count() == 0  # nothing left to re-issue

    old, new = tokens(console.cloud, stale.request_id)
    assert old.jti == stale.a.jti
    assert old.status == "superseded"
    assert new.status == "issued"  # no broker here: published by the link when there is one
    assert new.seq > stale.b.seq
    expect(page.locator("#tokens")).to_contain_text(f"token {new.jti[:8]}")
    expect(page.locator("#tokens")).to_contain_text(f"re-issued as {new.jti}")
    [entry] = _reissued(console)
    assert (entry["old_jti"], entry["new_jti"]) == (stale.a.jti, new.jti)
    assert entry["refused"] == "stale_seq"
    assert entry["reviewer"] == reviewer.name
    assert entry["reason"] == REISSUE
    assert console.cloud.service.core.audit.verify().entries > 0

    page.goto(f"{console.url}/tokens/{stale.a.jti}")
    expect(page.locator("#token-status")).to_contain_text("superseded")
    expect(page.locator(".events")).to_contain_text("token.reissued")
    assert page.locator("#token-reissue").count() == 0


def test_when_reviewers_sign_the_panel_shows_the_command_and_takes_no_form(
    deployment: TestDeployment, tmp_path: Path, browser: Browser
) -> None:
    settings = ConsoleSettings(approval=ApprovalMode.REVIEWER_COMMAND)
    with open_console(deployment, tmp_path, browser, settings) as console:
        stale = _make_stale(console)
        watched = console.sign_in(console.cloud.principal("reviewer", org="ethics-board"))
        page = watched.page
        page.goto(f"{console.url}/requests/{stale.request_id}")
        expect(page.locator("#refused-tokens")).to_contain_text(stale.a.jti)
        expect(page.locator("#reissue-command")).to_have_text(
            f"doorbell-review --api {console.cloud.url} reissue {stale.request_id} "
            '--reason "<your reason>"')
        assert page.get_by_role("button", name="Re-issue").count() == 0
        watched.check_accessible()
        before = _state(console, stale.request_id)
        answer = _post(page, console, stale.request_id)
        assert answer.status == 403
        assert "own keys" in answer.text()
        assert _state(console, stale.request_id) == before
        assert _reissued(console) == []


def test_agencies_admins_and_the_submitters_organisation_see_no_panel_and_are_refused(
    console: ConsoleServer,
) -> None:
    stale = _make_stale(console)
    before = _state(console, stale.request_id)
    same_org = console.cloud.principal("reviewer", org="Metro PD")  # the agency's, spelt apart
    admin = console.cloud.principal("admin")
    for who, status, why in ((stale.agency, 403, "only a reviewer"),
                             (admin, 403, "only a reviewer"),
                             (same_org, 403, "submitting organisation")):
        watched = console.sign_in(who)
        page = watched.page
        page.goto(f"{console.url}/requests/{stale.request_id}")
        expect(page.locator("#request-status")).to_be_visible()
        assert page.locator("#reissue").count() == 0, who.role
        assert stale.a.jti[:8] in (page.locator("#tokens").text_content() or "")
        page.goto(f"{console.url}/tokens/{stale.a.jti}")
        expect(page.locator("#token-status")).to_contain_text("rejected")
        assert page.locator("#token-reissue").count() == 0, who.role
        page.goto(f"{console.url}/requests/{stale.request_id}")
        answer = _post(page, console, stale.request_id)
        assert answer.status == status, (who.role, answer.text())
        assert why in answer.text(), who.role
        assert _state(console, stale.request_id) == before
    assert _reissued(console) == []


def test_a_hostile_reason_stays_text_and_a_refusal_keeps_it(console: ConsoleServer) -> None:
    stale = _make_stale(console)
    watched = console.sign_in(console.cloud.principal("reviewer", org="ethics-board"))
    page = watched.page
    page.goto(f"{console.url}/requests/{stale.request_id}")

    # a bidi override could reorder what the next reader sees: the service refuses it
    overridden = "Lost token \u202e</textarea><script>alert(1)</script> same warrant."
    before = _state(console, stale.request_id)
    page.get_by_label("Reason for the re-issue").fill(overridden)
    page.get_by_role("button", name="Re-issue").click()
    page.wait_for_load_state()
    expect(page.locator("#reissue-problem")).to_contain_text("U+202E")
    expect(page.get_by_label("Reason for the re-issue")).to_have_value(overridden)
    expect(page.get_by_label("Reason for the re-issue")).to_be_focused()
    assert _state(console, stale.request_id) == before
    assert _reissued(console) == []
    watched.check_accessible()

    markup = ('</textarea><script>alert(1)</script><img src=x onerror="alert(2)"> '
              "The broker lost it; same warrant.")
    page.get_by_label("Reason for the re-issue").fill(markup)
    page.get_by_role("button", name="Re-issue").click()
    page.wait_for_load_state()
    [entry] = _reissued(console)
    assert entry["reason"] == markup
    page.goto(f"{console.url}/tokens/{stale.a.jti}")
    expect(page.locator(".events")).to_contain_text(markup[:60])
    assert page.locator(".events img, .events script").count() == 0
