"""The review console in a real browser: Debian's Chromium driven by Playwright.

No browser is downloaded: Playwright starts ``/usr/bin/chromium`` (the Makefile's
system packages install it) through ``executable_path``. Every page a test opens is a
`WatchedPage`: a JavaScript dialog, a console error (a Content-Security-Policy violation
is one) or an uncaught page error fails the test; `shot` saves a screenshot in the
test's folder and checks that it is not blank; `check_accessible` runs axe-core in the
page and fails on any serious or critical violation.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import pytest
import uvicorn
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, sync_playwright

from cloud_stub.api import create_app
from cloud_stub.console import ConsoleSettings
from cloud_stub.services.cloud_service import CloudService
from tests.fixtures.cloud import (
    START_TIMEOUT_S,
    CloudServer,
    Principal,
    loopback_socket,
    stop_server,
)
from tests.fixtures.deployment import TestDeployment

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]
SERIOUS = ("serious", "critical")
LOAD_FAILED = "Failed to load resource: the server responded with a status of"


# Module scope, not session: while Playwright's sync API is alive it holds an event loop
# running in this thread, and a later test's asyncio.run() would refuse to start.
@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    if shutil.which(CHROMIUM) is None and not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run 'make system-packages' (Debian's chromium)")
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    yield browser
    browser.close()


@dataclass
class WatchedPage:
    """A page whose dialogs, console errors and page errors are collected."""

    page: Page
    folder: Path
    problems: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        def on_dialog(dialog: Any) -> None:
            self.problems.append(f"dialog {dialog.type}: {dialog.message}")
            dialog.dismiss()

        def on_console(message: Any) -> None:
            # Chromium logs a page answered 401/403/429 as an error too; those answers are
            # what the tests ask for. A failed subresource is caught by `on_response`.
            if message.type == "error" and not message.text.startswith(LOAD_FAILED):
                self.problems.append(f"console error: {message.text}")

        def on_response(response: Any) -> None:
            if response.status >= 400 and response.request.resource_type != "document":
                self.problems.append(f"{response.status} for {response.url}")

        self.page.on("dialog", on_dialog)
        self.page.on("console", on_console)
        self.page.on("response", on_response)
        self.page.on("pageerror", lambda exc: self.problems.append(f"page error: {exc}"))

    def assert_clean(self) -> None:
        assert self.problems == [], self.problems

    def shot(self, name: str) -> Path:
        """A full-page screenshot in the test's folder, checked not blank."""
        path = self.folder / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        image = cv2.imread(str(path))
        assert image is not None, f"{path} is not an image"
        colours = len(np.unique(image.reshape(-1, 3), axis=0))
        dark = int((image.min(axis=2) < 128).sum())
        assert colours > 8, f"{path} looks blank ({colours} colours)"
        assert dark > 500, f"{path} has almost no text or drawing ({dark} dark pixels)"
        return path

    def check_accessible(self) -> None:
        result = Axe().run(self.page)
        bad = [
            f"{v['id']} ({v['impact']}): {v['help']} at "
            f"{[n['target'] for n in v['nodes']][:3]}"
            for v in result.response["violations"]
            if v.get("impact") in SERIOUS
        ]
        assert bad == [], f"{self.page.url}: {bad}"


@dataclass
class ConsoleServer:
    cloud: CloudServer
    browser: Browser
    folder: Path
    pages: list[WatchedPage] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"{self.cloud.url}/console"

    def context(self) -> BrowserContext:
        return self.browser.new_context(viewport={"width": 1200, "height": 900})

    def open(self, context: BrowserContext) -> WatchedPage:
        watched = WatchedPage(context.new_page(), self.folder)
        self.pages.append(watched)
        return watched

    def sign_in(self, principal: Principal, context: BrowserContext | None = None
                ) -> WatchedPage:
        watched = self.open(context or self.context())
        watched.page.goto(f"{self.url}/sign-in")
        watched.page.get_by_label("API key").fill(principal.key)
        watched.page.get_by_role("button", name="Sign in").click()
        watched.page.wait_for_load_state()
        return watched

    def assert_clean(self) -> None:
        for watched in self.pages:
            watched.assert_clean()


def serve(service: CloudService, sock: socket.socket, settings: ConsoleSettings | None
          ) -> tuple[uvicorn.Server, threading.Thread]:
    """uvicorn serving the API and the console (with these settings) on the bound socket."""
    config = uvicorn.Config(create_app(service, settings), log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + START_TIMEOUT_S
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            sock.close()
            pytest.fail("the cloud stub did not start")
        time.sleep(0.01)
    return server, thread


@contextlib.contextmanager
def open_console(deployment: TestDeployment, folder: Path, browser: Browser,
                 settings: ConsoleSettings | None = None) -> Iterator[ConsoleServer]:
    """The cloud stub with its console on a free loopback port; pages checked at the end."""
    sock = loopback_socket()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    service = CloudService.open(
        deployment.layout.root, store_url=f"sqlite:///{folder / 'cloud.sqlite3'}", api_url=url
    )
    server, thread = serve(service, sock, settings)
    http = httpx.Client(base_url=url, timeout=30)
    console = ConsoleServer(
        CloudServer(service=service, url=url, deployment=deployment, http=http), browser, folder
    )
    try:
        yield console
        console.assert_clean()
    finally:
        http.close()
        stop_server(server, thread)
        service.close()


@pytest.fixture
def console(deployment: TestDeployment, tmp_path: Path, browser: Browser
            ) -> Iterator[ConsoleServer]:
    with open_console(deployment, tmp_path, browser) as server:
        yield server
