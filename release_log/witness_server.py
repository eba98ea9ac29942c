"""A witness's HTTP face (c2sp.org/tlog-witness).

- `POST /add-checkpoint`: judged by `witness_rules.judge`; on success the checkpoint is
  stored (`witness_state.advance`) and only then answered with one `cosignature/v1` line;
- `GET /<sha256 hex of origin>/checkpoint`: the latest cosigned checkpoint, with the log's
  signature and this witness's cosignature (404 if none).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from protocol.tlog.note import NoteSignature, Signer, Verifier, format_note
from release_log.serving import BodyTooLarge, read_body
from release_log.witness_rules import MAX_BODY_BYTES, Refusal, Stored, judge
from release_log.witness_state import WitnessState

TEXT = "text/plain; charset=utf-8"
SIZE = "text/x.tlog.size"


@dataclass
class WitnessService:
    signer: Signer
    logs: Mapping[str, Sequence[Verifier]]
    state: WitnessState
    clock: Callable[[], float] = time.time
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def add_checkpoint(self, request: Request) -> Response:
        try:
            body = await read_body(request, MAX_BODY_BYTES)
        except BodyTooLarge as exc:
            return Response(f"{exc}\n", status_code=400, media_type=TEXT)
        async with self.lock:
            stored: dict[str, Stored] = {}
            for origin in self.logs:
                current = self.state.stored(origin)
                if current is not None:
                    stored[origin] = current
            verdict = judge(body, self.logs, stored)
            if isinstance(verdict, Refusal):
                media = SIZE if verdict.status == 409 else TEXT
                text = verdict.message if verdict.status == 409 else verdict.message + "\n"
                return Response(text, status_code=verdict.status, media_type=media)
            checkpoint = verdict.checkpoint
            old = stored[checkpoint.origin].size if checkpoint.origin in stored else 0
            timestamp = max(1, int(self.clock()))
            raw = self.signer.sign(checkpoint.text, timestamp=timestamp)
            own = NoteSignature(self.signer.name, self.signer.key_id, raw)
            log_sigs = [_parse_line(line) for line in verdict.log_signatures]
            kept = format_note(checkpoint.text, [*log_sigs, own])
            if not self.state.advance(
                checkpoint.origin, old, checkpoint.size, checkpoint.root, kept
            ):
                current = self.state.stored(checkpoint.origin)
                size = 0 if current is None else current.size
                return Response(f"{size}\n", status_code=409, media_type=SIZE)
        return Response(own.line, media_type=TEXT)

    async def checkpoint(self, request: Request) -> Response:
        origin_hash = request.path_params["origin_hash"]
        for origin in self.logs:
            if hashlib.sha256(origin.encode()).hexdigest() == origin_hash:
                note = self.state.note(origin)
                if note is not None:
                    return Response(note, media_type=TEXT)
        return Response("this witness never cosigned that log\n", 404, media_type=TEXT)

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/add-checkpoint", self.add_checkpoint, methods=["POST"]),
                Route("/{origin_hash}/checkpoint", self.checkpoint, methods=["GET"]),
            ]
        )


def _parse_line(line: str) -> NoteSignature:
    name, b64 = line.removeprefix("— ").rstrip("\n").split(" ", 1)
    raw = base64.b64decode(b64)
    return NoteSignature(name, int.from_bytes(raw[:4], "big"), raw[4:])
