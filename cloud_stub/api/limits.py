"""Body size caps, enforced before anything parses the body (a pure ASGI middleware).

The cap depends on the route: evidence chunks (``PUT /v1/evidence/...``) may carry up to
``max_chunk`` bytes, signed manifests ``max_manifest``, everything else (JSON documents)
``max_json_body``. A declared
``Content-Length`` over the cap is refused at once; a body streamed without one is
counted as it arrives and refused as soon as it passes the cap. Either way the answer is
413 with a JSON error naming the limit, and the application never sees the body.

A body with a declared ``Content-Length`` within the cap (and no ``Transfer-Encoding``)
is passed through as it arrives (the HTTP parser delivers no byte past the declared
length), so the application can hash it while it is still being received and nothing
holds a second copy; the messages are counted all the same, and a body that outgrew the
cap would end the request (`BodyOverCap`). Only a body without a declared length is
buffered here, up to the cap.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from cloud_stub.config import ServiceLimits

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def body_cap(method: str, path: str, limits: ServiceLimits) -> int:
    if method == "PUT" and path.startswith("/v1/evidence/"):
        return limits.max_chunk
    if method == "POST" and path.startswith("/v1/evidence/") and path.endswith("/manifest"):
        return limits.max_manifest
    return limits.max_json_body


async def _reply(send: Send, status: int, code: str, message: str) -> None:
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class BodyOverCap(Exception):
    """A body outgrew its declared Content-Length and the cap (the parser prevents it)."""


def _counted(receive: Receive, cap: int) -> Receive:
    size = 0

    async def counted() -> Message:
        nonlocal size
        message = await receive()
        size += len(message.get("body", b""))
        if size > cap:
            raise BodyOverCap(f"the request body passed the limit of {cap} bytes")
        return message

    return counted


class BodyLimitMiddleware:
    """Refuses a body over the route's cap before the app reads it: a declared length at
    once, a streamed body (no length) after buffering at most the cap."""

    def __init__(self, app: ASGIApp, limits: ServiceLimits) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cap = body_cap(scope["method"], scope["path"], self.limits)
        too_large = f"the request body is larger than the limit of {cap} bytes for this endpoint"
        declared = None
        chunked = False
        for name, value in scope.get("headers", []):
            if name == b"transfer-encoding":
                chunked = True  # it overrides any Content-Length (RFC 9112 6.3)
            elif name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await _reply(send, 400, "bad_content_length", "Content-Length is not a number")
                    return
                if declared < 0:
                    await _reply(send, 400, "bad_content_length", "Content-Length is negative")
                    return
        if declared is not None and declared > cap:
            await _reply(send, 413, "body_too_large", too_large)
            return
        if declared is not None and not chunked:
            await self.app(scope, _counted(receive, cap), send)
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > cap:
                await _reply(send, 413, "body_too_large", too_large)
                return
            chunks.append(chunk)
            more = bool(message.get("more_body", False))
        body = b"".join(chunks)
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)
