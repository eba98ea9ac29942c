"""Serve an ASGI app with uvicorn on a socket bound before the server starts.

Binding first (port 0 means "any free port") and then writing the bound address to a
ready file lets a supervisor or a test learn the real port without a probe-then-bind
race; the file appears only once the socket accepts connections.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import uvicorn
from starlette.requests import Request
from starlette.types import ASGIApp

from release_log.files import write_atomically


class BodyTooLarge(Exception):
    """A request body above the endpoint's limit (nothing beyond the limit was read)."""


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, read only up to `limit` bytes; BodyTooLarge beyond that."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(f"the body is {declared} bytes, above {limit}")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise BodyTooLarge(f"the body is above {limit} bytes")
    return bytes(body)


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.setblocking(False)
    return sock


def base_url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


async def serve(
    app: ASGIApp,
    sock: socket.socket,
    *,
    ready_file: Path | None,
    background: Callable[[], Coroutine[Any, Any, None]] | None = None,
) -> None:
    """Run until SIGINT/SIGTERM; `background` runs beside the server and is cancelled
    when it stops."""
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    task: asyncio.Task[None] | None = None
    if background is not None:
        task = asyncio.create_task(background())

    async def announce() -> None:
        while not server.started:
            await asyncio.sleep(0.01)
        if ready_file is not None:
            write_atomically(ready_file, (base_url(sock) + "\n").encode())
        print(f"listening on {base_url(sock)}", flush=True)

    announcer = asyncio.create_task(announce())
    try:
        await server.serve(sockets=[sock])
    finally:
        announcer.cancel()
        if task is not None:
            task.cancel()
