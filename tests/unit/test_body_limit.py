"""The body cap middleware on the ASGI level, with the server side simulated: which bodies
pass through as they arrive, which are buffered and counted, and that no path lets the
application read more than the route's cap."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest

from cloud_stub.api.limits import BodyLimitMiddleware, BodyOverCap
from cloud_stub.config import ServiceLimits

CAP = 1000
LIMITS = ServiceLimits(max_chunk=CAP)
PUT_PATH = "/v1/evidence/00000000-0000-4000-8000-000000000000/c1"


class Run:
    """One request through the middleware to an app that reads the whole body."""

    def __init__(self, headers: Sequence[tuple[bytes, bytes]], pieces: Sequence[bytes]) -> None:
        self.headers = list(headers)
        self.pieces = list(pieces)
        self.sent: list[dict[str, Any]] = []
        self.app_got: list[bytes] = []  # the body messages the application received
        self.app_called = False

    async def _receive(self) -> dict[str, Any]:
        if not self.pieces:
            return {"type": "http.disconnect"}
        piece = self.pieces.pop(0)
        return {"type": "http.request", "body": piece, "more_body": bool(self.pieces)}

    async def _send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)

    async def _app(self, scope: Any, receive: Any, send: Any) -> None:
        self.app_called = True
        while True:
            message = await receive()
            self.app_got.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    def go(self) -> None:
        scope = {"type": "http", "method": "PUT", "path": PUT_PATH, "headers": self.headers}
        middleware = BodyLimitMiddleware(self._app, LIMITS)
        asyncio.run(middleware(scope, self._receive, self._send))  # type: ignore[arg-type]

    @property
    def status(self) -> int:
        status: int = self.sent[0]["status"]
        return status


def test_a_declared_body_within_the_cap_is_passed_through_piece_by_piece() -> None:
    run = Run([(b"content-length", b"900")], [b"a" * 300] * 3)
    run.go()
    assert run.status == 200
    assert run.app_got == [b"a" * 300] * 3  # as they arrived: the app hashes while receiving


def test_a_declared_length_over_the_cap_is_refused_before_the_app_runs() -> None:
    run = Run([(b"content-length", str(CAP + 1).encode())], [b"a" * (CAP + 1)])
    run.go()
    assert run.status == 413
    assert not run.app_called


def test_a_chunked_body_with_a_small_declared_length_is_counted_not_trusted() -> None:
    # Transfer-Encoding overrides Content-Length: a parser that follows it delivers the
    # whole chunked body, so the declared 10 bytes must not open the pass-through path.
    run = Run([(b"content-length", b"10"), (b"transfer-encoding", b"chunked")],
              [b"a" * 400] * 3)
    run.go()
    assert run.status == 413
    assert not run.app_called


def test_a_body_without_length_is_buffered_up_to_the_cap_then_refused() -> None:
    run = Run([], [b"a" * 400] * 3)
    run.go()
    assert run.status == 413
    assert not run.app_called


def test_a_body_without_length_within_the_cap_reaches_the_app_whole() -> None:
    run = Run([], [b"a" * 400, b"b" * 400])
    run.go()
    assert run.status == 200
    assert run.app_got == [b"a" * 400 + b"b" * 400]


def test_a_passed_through_body_that_outgrows_the_cap_ends_the_request() -> None:
    # A parser that delivered more than the declared length (none should) still cannot
    # feed the application past the cap.
    run = Run([(b"content-length", b"900")], [b"a" * 600, b"a" * 600])
    with pytest.raises(BodyOverCap):
        run.go()
    assert sum(len(b) for b in run.app_got) <= CAP
