"""The floor of any Python evidence intake on this machine: a bare ASGI app that does only
what the cloud stub's intake must do with each PUT body, and nothing else.

It receives the body as uvicorn (httptools) delivers it, hashes it with SHA-256, appends
it to a file per URL path, `fdatasync`s it and answers ``{"offset": N}``: no framework, no
routing, no device check, no store. `bench_release.py` pushes the same re-sealed bytes
to it with the device's own uploader, so the time it takes is what the cloud's side of
a release costs here before any of the cloud stub's own work.

Run: python bench/intake_floor.py PORT DIRECTORY (loopback only; it never reads back).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

import uvicorn

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


def make_app(directory: Path) -> Callable[[Message, Receive, Send], Awaitable[None]]:
    """The ASGI app writing under `directory`."""

    async def app(scope: Message, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        hasher = hashlib.sha256()
        parts: list[bytes] = []
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            part = message.get("body", b"")
            hasher.update(part)
            parts.append(part)
            more = bool(message.get("more_body", False))
        name = hashlib.sha256(scope["path"].encode()).hexdigest()[:32]
        fd = os.open(directory / name, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, b"".join(parts))
            os.fdatasync(fd)
            offset = os.fstat(fd).st_size
        finally:
            os.close(fd)
        body = json.dumps({"offset": offset, "sha256": hasher.hexdigest()}).encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    return app


def main() -> int:
    port, directory = int(sys.argv[1]), Path(sys.argv[2])
    directory.mkdir(parents=True, exist_ok=True)
    uvicorn.run(make_app(directory), host="127.0.0.1", port=port, log_level="warning",
                lifespan="off", http="httptools")
    return 0


if __name__ == "__main__":
    sys.exit(main())
