"""The approve panel when reviewers sign with their own keys, the cookie behind TLS, and
the pages on a phone's screen."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from playwright.sync_api import Browser, Page, expect

from cloud_stub.console import ApprovalMode, ConsoleSettings
from cloud_stub.provision.trust_roots import add_reviewer, load_draft, save_draft, sign_draft
from protocol.keys import public_key_hex
from tests.browser.conftest import ConsoleServer, open_console
from tests.fixtures.cloud import window_ago
from tests.fixtures.deployment import TestDeployment

REASON = "The court's signature verifies and the window is narrow."


def _warrant(console: ConsoleServer) -> str:
    cloud = console.cloud
    device = cloud.enroll("mode")
    agency = cloud.principal("agency", org="metro-pd")
    body = cloud.world(agency, device.device_id).warrant(
        device_ids=[device.device_id], window=window_ago(3, 2))
    answer = cloud.submit(agency, body)
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])


def _page_approval_is_refused(console: ConsoleServer, page: Page, request_id: str) -> None:
    """An approve form posted anyway (the panel shows none) is refused: reviewers sign."""
    csrf = page.locator("input[name=csrf]").first.get_attribute("value") or ""
    answer = page.request.post(f"{console.url}/requests/{request_id}/decide",
                               form={"action": "approve", "reason": REASON, "csrf": csrf})
    assert answer.status == 403
    assert "own key" in answer.text()


def test_reviewer_command_mode_shows_the_command_and_takes_no_approval(
    deployment: TestDeployment, tmp_path: Path, browser: Browser
) -> None:
    settings = ConsoleSettings(approval=ApprovalMode.REVIEWER_COMMAND)
    with open_console(deployment, tmp_path, browser, settings) as console:
        request_id = _warrant(console)
        watched = console.sign_in(console.cloud.principal("reviewer", org="court-liaison"))
        page = watched.page
        page.goto(f"{console.url}/requests/{request_id}")
        expect(page.locator("#review-command")).to_have_text(
            f"doorbell-review --api {console.cloud.url} approve {request_id} "
            '--reason "<your reason>"')
        assert page.get_by_role("button", name="Approve").count() == 0
        _page_approval_is_refused(console, page, request_id)
        watched.check_accessible()
        page.get_by_label("Reason").fill("The window is wider than the warrant allows.")
        page.get_by_role("button", name="Deny").click()
        expect(page.locator("#request-status")).to_contain_text("denied")


def test_the_panel_follows_a_rotation_to_v2_without_a_restart(
    fresh_deployment: TestDeployment, tmp_path: Path, browser: Browser
) -> None:
    # Trust root v1: the service holds the review key and the reviewer approves on the
    # page. The operator signs v2 while the console runs: the next page shows the
    # reviewer's command and the service refuses a page approval.
    d = fresh_deployment
    with open_console(d, tmp_path, browser) as console:
        request_id = _warrant(console)
        watched = console.sign_in(console.cloud.principal("reviewer", org="court-liaison"))
        page = watched.page
        page.goto(f"{console.url}/requests/{request_id}")
        expect(page.get_by_role("button", name="Approve")).to_be_visible()
        assert page.locator("#review-command").count() == 0

        now = datetime.now(UTC)
        alice = public_key_hex(Ed25519PrivateKey.generate())
        save_draft(d.layout, add_reviewer(load_draft(d.layout, now), "alice", "acme-review",
                                          alice))
        away = d.move_keys_off_host()
        assert sign_draft(d.layout, away / "offline-root", now).version == 2

        page.goto(f"{console.url}/requests/{request_id}")
        expect(page.locator("#review-command")).to_contain_text(f"approve {request_id}")
        assert page.get_by_role("button", name="Approve").count() == 0
        _page_approval_is_refused(console, page, request_id)
        expect(page.locator("#request-status")).to_contain_text("pending")


def test_a_denial_on_the_page_discards_the_payload_prepared_for_signing(
    fresh_deployment: TestDeployment, tmp_path: Path, browser: Browser
) -> None:
    # Under v2 a reviewer fetched the payload to sign (`doorbell-review show`); another
    # denies the request on the page. Nothing will sign that payload now: it leaves
    # `prepared` at once, and the request's token list says why
    # (docs/adr/0013-trust-root-v2.md, "Prepared payloads that can no longer be signed").
    d = fresh_deployment
    with open_console(d, tmp_path, browser) as console:
        now = datetime.now(UTC)
        save_draft(d.layout, add_reviewer(load_draft(d.layout, now), "alice", "acme-review",
                                          public_key_hex(Ed25519PrivateKey.generate())))
        assert sign_draft(d.layout, d.move_keys_off_host() / "offline-root", now).version == 2
        request_id = _warrant(console)
        cloud = console.cloud
        [device] = cloud.http.get(f"/v1/requests/{request_id}", headers=cloud.principal(
            "reviewer", org="court-liaison").headers).json()["devices"]
        cloud.escrow_epoch(device, now - timedelta(hours=4), now)
        shower = cloud.principal("reviewer", org="court-liaison")
        shown = cloud.http.get(f"/v1/requests/{request_id}/signing-payload",
                               headers=shower.headers)
        assert shown.status_code == 200, shown.text
        [entry] = shown.json()["payloads"]

        watched = console.sign_in(cloud.principal("reviewer", org="ethics-board"))
        page = watched.page
        page.goto(f"{console.url}/requests/{request_id}")
        expect(page.locator("#tokens")).to_contain_text("prepared")
        page.get_by_label("Reason").fill("The window is wider than the warrant allows.")
        page.get_by_role("button", name="Deny").click()
        expect(page.locator("#request-status")).to_contain_text("denied")
        expect(page.locator("#tokens")).to_contain_text(
            f"token {entry['jti'][:8]} for {device}: discarded "
            "(request_closed: a reviewer denied the request)")
        watched.check_accessible()


def test_the_session_cookie_is_secure_behind_tls(console: ConsoleServer) -> None:
    # uvicorn believes X-Forwarded-Proto from a proxy on loopback (its default)
    plain = httpx.get(f"{console.url}/sign-in")
    assert "secure" not in plain.headers["set-cookie"].lower()
    behind = httpx.get(f"{console.url}/sign-in", headers={"X-Forwarded-Proto": "https"})
    cookie = behind.headers["set-cookie"].lower()
    assert "; secure" in cookie
    assert "httponly" in cookie
    assert "samesite=strict" in cookie


def test_pages_fit_a_phone(console: ConsoleServer) -> None:
    request_id = _warrant(console)
    phone = console.browser.new_context(viewport={"width": 390, "height": 844},
                                        is_mobile=True, has_touch=True)
    watched = console.sign_in(console.cloud.principal("reviewer", org="court-liaison"), phone)
    page = watched.page
    for path, name in (("/queue", "phone-queue"), (f"/requests/{request_id}", "phone-request")):
        page.goto(f"{console.url}{path}")
        overflow = page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert overflow <= 1, f"{path} is {overflow} px wider than the phone's screen"
        watched.shot(name)
        watched.check_accessible()
