"""Sign-in, the queue, sessions and CSRF in a real browser."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, expect

from cloud_stub.console import ConsoleSettings
from cloud_stub.domain.audit_chain import AuditEntry
from cloud_stub.store.models import Request
from tests.browser.conftest import ConsoleServer, open_console
from tests.fixtures.cloud import window_ago
from tests.fixtures.deployment import TestDeployment


def _warrant(console: ConsoleServer, agency_org: str = "metro-pd") -> tuple[str, str]:
    """A court-signed warrant request of a new agency; returns (request id, device id)."""
    cloud = console.cloud
    device = cloud.enroll("con")
    agency = cloud.principal("agency", org=agency_org)
    body = cloud.world(agency, device.device_id).warrant(
        device_ids=[device.device_id], window=window_ago(3, 2)
    )
    answer = cloud.submit(agency, body)
    assert answer.status_code == 201, answer.text
    return answer.json()["id"], device.device_id


def test_reviewer_signs_in_and_sees_the_queue(console: ConsoleServer) -> None:
    request_id, _ = _warrant(console)
    reviewer = console.cloud.principal("reviewer", org="court-liaison")
    watched = console.sign_in(reviewer)
    page = watched.page
    expect(page).to_have_url(f"{console.url}/queue")
    expect(page.get_by_role("heading", name="Review queue")).to_be_visible()
    expect(page.get_by_role("link", name=request_id[:8])).to_be_visible()
    cookie = next(c for c in page.context.cookies() if c["name"] == "console_session")
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Strict"
    assert cookie["path"] == "/console"
    watched.shot("queue")
    watched.check_accessible()
    audit = [e.action for e in _audit(console)]
    assert "console.signed_in" in audit

    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(f"{console.url}/sign-in")
    page.goto(f"{console.url}/queue")
    expect(page).to_have_url(f"{console.url}/sign-in?expired=1&next=%2Fqueue")
    assert "console.signed_out" in [e.action for e in _audit(console)]


def _audit(console: ConsoleServer) -> list[AuditEntry]:
    service = console.cloud.service
    with service.store.transaction() as session:
        return service.core.audit.entries(session)


def test_sign_in_page_is_accessible_and_refuses_a_wrong_key(console: ConsoleServer) -> None:
    watched = console.open(console.context())
    page = watched.page
    response = page.goto(f"{console.url}/sign-in")
    assert response is not None
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp
    assert "unsafe-inline" not in csp
    watched.shot("sign-in")
    watched.check_accessible()
    page.get_by_label("API key").fill("sdk_0000000000000000_" + "A" * 43)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("not accepted")
    assert "console.sign_in_failed" in [e.action for e in _audit(console)]


def test_sign_in_is_rate_limited(deployment: TestDeployment, tmp_path: Path,
                                 browser: Browser) -> None:
    settings = ConsoleSettings(sign_in_attempts=3)
    with open_console(deployment, tmp_path, browser, settings) as console:
        reviewer = console.cloud.principal("reviewer", org="court-liaison")
        with httpx.Client(base_url=console.url) as client:
            for _ in range(3):
                csrf = _form_csrf(client)
                answer = client.post("/sign-in", data={"api_key": "wrong", "csrf": csrf})
                assert answer.status_code == 401
            csrf = _form_csrf(client)
            for _ in range(2):  # the right key too: the limit comes first
                answer = client.post("/sign-in", data={"api_key": reviewer.key, "csrf": csrf})
                assert answer.status_code == 429, answer.text
                assert "Too many sign-in attempts" in answer.text
        actions = [e.action for e in _audit(console)]
        assert actions.count("console.sign_in_failed") == 3
        assert actions.count("console.sign_in_limited") == 1  # once, not per attempt
        assert "console.signed_in" not in actions


def _form_csrf(client: httpx.Client, path: str = "/sign-in") -> str:
    html = client.get(path).text
    marker = 'name="csrf" value="'
    start = html.index(marker) + len(marker)
    return html[start:html.index('"', start)]


def test_missing_or_wrong_csrf_is_refused(console: ConsoleServer) -> None:
    request_id, _ = _warrant(console)
    reviewer = console.cloud.principal("reviewer", org="court-liaison")
    with httpx.Client(base_url=console.url) as client:
        # the sign-in form itself
        client.get("/sign-in")
        answer = client.post("/sign-in", data={"api_key": reviewer.key})
        assert answer.status_code == 403
        answer = client.post("/sign-in", data={"api_key": reviewer.key, "csrf": "x" * 43})
        assert answer.status_code == 403
        csrf = _form_csrf(client)
        answer = client.post("/sign-in", data={"api_key": reviewer.key, "csrf": csrf})
        assert answer.status_code == 303
        # a decision
        path = f"/requests/{request_id}/decide"
        reason = "The warrant is signed by the court and narrow."
        for data in ({"action": "approve", "reason": reason},
                     {"action": "approve", "reason": reason, "csrf": csrf},  # the old one
                     {"action": "approve", "reason": reason, "csrf": ""}):
            answer = client.post(path, data=data)
            assert answer.status_code == 403, answer.text
            assert "security token" in answer.text
        admin = console.cloud.principal("admin")
        stored = console.cloud.http.get(f"/v1/requests/{request_id}", headers=admin.headers)
        assert stored.json()["status"] == "pending_review"
        answer = client.post("/sign-out", data={})
        assert answer.status_code == 403


@pytest.mark.slow
def test_an_expired_session_returns_to_sign_in(deployment: TestDeployment, tmp_path: Path,
                                               browser: Browser) -> None:
    settings = ConsoleSettings(idle_s=2)
    with open_console(deployment, tmp_path, browser, settings) as console:
        request_id, _ = _warrant(console)
        reviewer = console.cloud.principal("reviewer", org="court-liaison")
        watched = console.sign_in(reviewer)
        page = watched.page
        expect(page).to_have_url(f"{console.url}/queue")
        time.sleep(3.5)
        page.goto(f"{console.url}/requests/{request_id}")
        expect(page).to_have_url(
            f"{console.url}/sign-in?expired=1&next=%2Frequests%2F{request_id}")
        expect(page.get_by_role("status")).to_contain_text("session ended")
        # signing in again returns to the page that was asked for
        page.get_by_label("API key").fill(reviewer.key)
        page.get_by_role("button", name="Sign in").click()
        expect(page).to_have_url(f"{console.url}/requests/{request_id}")
        time.sleep(3.5)  # a form sent after expiry goes to sign-in and changes nothing
        page.get_by_label("Reason").fill("The court's signature verifies; window is narrow.")
        page.get_by_role("button", name="Approve").click()
        expect(page).to_have_url(f"{console.url}/sign-in?expired=1")
        stored = console.cloud.http.get(f"/v1/requests/{request_id}",
                                        headers=console.cloud.principal("admin").headers)
        assert stored.json()["status"] == "pending_review"


def test_queue_filters_by_basis_organisation_age_and_status(console: ConsoleServer) -> None:
    cloud = console.cloud
    warrant_id, _ = _warrant(console, "metro-pd")
    old_id, _ = _warrant(console, "county-sheriff")
    device = cloud.enroll("flt")
    agency = cloud.principal("agency", org="metro-pd")
    emergency = cloud.submit(agency, cloud.world(agency, device.device_id).emergency(
        device_ids=[device.device_id], window=window_ago(2, 1)))
    assert emergency.status_code == 201, emergency.text
    emergency_id = emergency.json()["id"]
    with cloud.service.store.transaction() as session:
        row = session.get(Request, old_id)
        assert row is not None
        row.created_at = row.created_at - timedelta(days=3)
    watched = console.sign_in(cloud.principal("reviewer", org="court-liaison"))
    page = watched.page

    def shown() -> set[str]:
        links = page.locator("table.queue tbody a")
        return {links.nth(i).inner_text() for i in range(links.count())}

    every = {warrant_id[:8], old_id[:8], emergency_id[:8]}
    assert shown() == every
    assert page.locator("table.queue tbody tr").first.inner_text().startswith(
        emergency_id[:8])
    page.get_by_label("Basis").select_option("emergency")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("p.count")).to_contain_text("1 request;")
    assert shown() == {emergency_id[:8]}
    page.get_by_label("Basis").select_option("")
    page.get_by_label("Organisation").fill("county-sheriff")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("p.count")).to_contain_text("1 request;")
    assert shown() == {old_id[:8]}
    page.get_by_label("Organisation").fill("")
    page.get_by_label("Submitted").select_option("over_24h")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("p.count")).to_contain_text("1 request;")
    assert shown() == {old_id[:8]}
    page.get_by_label("Submitted").select_option("under_1h")
    page.get_by_label("Status").select_option("denied")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("p.count")).to_contain_text("0 requests;")
    page.get_by_label("Status").select_option("pending_review")
    page.get_by_role("button", name="Filter").click()
    assert shown() == {warrant_id[:8], emergency_id[:8]}
    watched.check_accessible()
