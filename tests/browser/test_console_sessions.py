"""Console sessions kept in the service's store (docs/adr/0015-review-console.md, section
3): they survive a restart of `serve`, two processes serving one store share them, a
sign-out anywhere ends them everywhere, and the store holds only the sha256 of the id the
browser keeps, so an expired or copied row signs nobody in."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

from playwright.sync_api import Browser, BrowserContext, expect
from sqlalchemy import select, update

from cloud_stub.console import ConsoleSettings
from cloud_stub.store.models import ConsoleSessionRow
from tests.browser.conftest import ConsoleServer, open_console
from tests.fixtures.deployment import TestDeployment

COOKIE = "console_session"


def _cookie(context: BrowserContext) -> str:
    return next(c["value"] for c in context.cookies() if c["name"] == COOKIE)


def _rows(console: ConsoleServer) -> list[ConsoleSessionRow]:
    with console.cloud.service.store.read() as session:
        return list(session.execute(select(ConsoleSessionRow)).scalars())


def test_a_session_survives_a_restart_of_serve(
    deployment: TestDeployment, tmp_path: Path, browser: Browser
) -> None:
    with open_console(deployment, tmp_path, browser) as console:
        reviewer = console.cloud.principal("reviewer", org="court-liaison")
        watched = console.sign_in(reviewer)
        expect(watched.page).to_have_url(f"{console.url}/queue")
        context = watched.page.context
        secret = _cookie(context)
        # the store keeps the sha256 of the id, never the id itself
        [row] = [r for r in _rows(console) if r.principal_id is not None]
        assert row.id_sha256 == hashlib.sha256(secret.encode()).hexdigest()
        assert secret not in (row.id_sha256, row.csrf)
    # `serve` stopped: nothing of the session is left in any process's memory
    with open_console(deployment, tmp_path, browser) as restarted:
        page = restarted.open(context).page
        page.goto(f"{restarted.url}/queue")
        expect(page).to_have_url(f"{restarted.url}/queue")
        expect(page.get_by_role("heading", name="Review queue")).to_be_visible()


def test_a_sign_out_in_one_process_ends_the_session_in_the_other(
    deployment: TestDeployment, tmp_path: Path, browser: Browser
) -> None:
    with open_console(deployment, tmp_path, browser) as first, \
            open_console(deployment, tmp_path, browser) as second:
        reviewer = first.cloud.principal("reviewer", org="court-liaison")
        on_first = first.sign_in(reviewer).page
        expect(on_first).to_have_url(f"{first.url}/queue")
        # the same browser, served by the other process: signed in there too
        on_second = second.open(on_first.context).page
        on_second.goto(f"{second.url}/queue")
        expect(on_second.get_by_role("heading", name="Review queue")).to_be_visible()
        on_second.get_by_role("button", name="Sign out").click()
        expect(on_second).to_have_url(f"{second.url}/sign-in")
        # the row is revoked: the first process refuses the same cookie at once
        on_first.goto(f"{first.url}/queue")
        expect(on_first).to_have_url(f"{first.url}/sign-in?expired=1&next=%2Fqueue")
        # revoked, then deleted when the next session was opened (the sign-in form's)
        assert [r for r in _rows(first) if r.principal_id is not None
                and r.revoked_at is None] == []


def test_an_expired_row_is_refused(
    deployment: TestDeployment, tmp_path: Path, browser: Browser
) -> None:
    settings = ConsoleSettings()
    with open_console(deployment, tmp_path, browser, settings) as console:
        reviewer = console.cloud.principal("reviewer", org="court-liaison")
        page = console.sign_in(reviewer).page
        expect(page).to_have_url(f"{console.url}/queue")
        digest = hashlib.sha256(_cookie(page.context).encode()).hexdigest()
        # the row outlived its absolute life (as a store restored from a backup, or a
        # process whose clock is ahead, would find it); idle time was kept short
        born = datetime.now(UTC) - timedelta(seconds=settings.absolute_s + 60)
        with console.cloud.service.store.transaction() as session:
            session.execute(update(ConsoleSessionRow)
                            .where(ConsoleSessionRow.id_sha256 == digest)
                            .values(created_at=born))
        page.goto(f"{console.url}/queue")
        expect(page).to_have_url(f"{console.url}/sign-in?expired=1&next=%2Fqueue")
        expect(page.get_by_role("status")).to_contain_text("session ended")
