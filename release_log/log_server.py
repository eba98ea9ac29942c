"""The log's HTTP face: c2sp.org/tlog-tiles for everyone, `add` and `proof` for the service.

Public, read-only (c2sp.org/tlog-tiles):
- `GET /checkpoint`: the latest checkpoint cosigned by a witness quorum;
- `GET /tile/<L>/<N>[.p/<W>]`: Merkle tree tiles;
- `GET /tile/entries/<N>[.p/<W>]`: entry bundles.

For the operator's service (a bearer token when `--add-token-file` is set):
- `POST /add`: body one release statement; answers `index <n>` once it is fsynced and
  under a log-signed checkpoint (an acknowledged entry is never lost); the same bytes
  again (a retry) get the same index, nothing is appended twice;
- `GET /proof?index=<n>&old=<size>&wait=<s>`: the proof bundle (`protocol.tlog.bundle`)
  for entry n under the published checkpoint, with a consistency proof from (or to) the
  doorbell's size; waits up to `wait` seconds (at most 30) for the quorum, then 503.

One sequencer task batches concurrent appends into one write, one fsync and one
checkpoint; one cosigning task takes the newest signed checkpoint to the witnesses and
publishes it once the quorum is met, retrying with a capped back-off while it is not.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from contextlib import suppress
from dataclasses import dataclass, field

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from protocol.tlog.bundle import build_bundle
from protocol.tlog.checkpoint import open_checkpoint
from protocol.tlog.errors import StatementError, TileError
from protocol.tlog.statement import MAX_STATEMENT_BYTES, parse_statement
from protocol.tlog.tiles import TILE_HEIGHT, TILE_WIDTH, encode_bundle, parse_tile_path
from release_log.cosigning import Cosigner
from release_log.serving import BodyTooLarge, read_body
from release_log.store import LogStore

LOG = logging.getLogger(__name__)
MAX_BATCH = 1024
MAX_WAIT_S = 30.0
BACKOFF_S = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0)
TEXT = "text/plain; charset=utf-8"
IMMUTABLE = {"cache-control": "public, max-age=31536000, immutable"}


def _text(body: str, status: int = 200) -> Response:
    return Response(body, status_code=status, media_type=TEXT)


@dataclass
class LogService:
    store: LogStore
    cosigner: Cosigner | None  # None: the policy's quorum is `none`
    add_token: str | None = None
    queue: asyncio.Queue[tuple[bytes, asyncio.Future[int]]] = field(default_factory=asyncio.Queue)
    signed: asyncio.Event = field(default_factory=asyncio.Event)
    published: asyncio.Condition = field(default_factory=asyncio.Condition)

    # -- background tasks ------------------------------------------------------

    async def run(self) -> None:
        await asyncio.gather(self._sequence(), self._cosign())

    async def _sequence(self) -> None:
        while True:
            batch = [await self.queue.get()]
            while len(batch) < MAX_BATCH and not self.queue.empty():
                batch.append(self.queue.get_nowait())
            try:
                indices, _ = await asyncio.to_thread(self.store.append, [e for e, _ in batch])
            except Exception as exc:  # an I/O failure: nobody is acknowledged
                LOG.exception("append failed")
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for index, (_, future) in zip(indices, batch, strict=True):
                if not future.done():
                    future.set_result(index)
            self.signed.set()

    def _published_size(self) -> int:
        note = self.store.published_note
        if note is None:
            return -1
        return open_checkpoint(note, [self.store.signer.verifier]).checkpoint.size

    async def _cosign(self) -> None:
        self.signed.set()  # the checkpoint from before a restart may still need its quorum
        failures = 0
        while True:
            await self.signed.wait()
            self.signed.clear()
            note = self.store.signed_note
            size = open_checkpoint(note, [self.store.signer.verifier]).checkpoint.size
            if size <= self._published_size():
                continue
            if self.cosigner is None:
                cosigned, ok = note, True
            else:
                result = await self.cosigner.cosign(note)
                cosigned, ok = result.note, result.quorum
            if ok:
                failures = 0
                await asyncio.to_thread(self.store.publish, cosigned)
                async with self.published:
                    self.published.notify_all()
            else:
                delay = BACKOFF_S[min(failures, len(BACKOFF_S) - 1)]
                failures += 1
                LOG.warning("no witness quorum for size %d; again in %.2f s", size, delay)
                await asyncio.sleep(delay)
                self.signed.set()

    # -- routes ----------------------------------------------------------------

    async def checkpoint(self, request: Request) -> Response:
        note = self.store.published_note
        if note is None:
            return _text("no checkpoint has a witness quorum yet\n", 404)
        return Response(note, media_type=TEXT, headers={"cache-control": "max-age=2"})

    async def tile(self, request: Request) -> Response:
        try:
            ref = parse_tile_path("tile/" + request.path_params["rest"])
        except TileError as exc:
            return _text(f"{exc}\n", 400)
        size = self.store.size
        level = 0 if ref.level is None else ref.level
        nodes = size >> (TILE_HEIGHT * level)
        available = min(TILE_WIDTH, nodes - ref.index * TILE_WIDTH)
        if available < ref.width:
            return _text("no such tile\n", 404)
        first = ref.index * TILE_WIDTH
        if ref.level is None:
            entries = [self.store.entry(first + i) for i in range(ref.width)]
            body = encode_bundle(entries)
        else:
            body = b"".join(
                self.store.tree.node(TILE_HEIGHT * ref.level, first + i) for i in range(ref.width)
            )
        return Response(body, media_type="application/octet-stream", headers=IMMUTABLE)

    def _authorised(self, request: Request) -> bool:
        if self.add_token is None:
            return True
        given = request.headers.get("authorization", "")
        return hmac.compare_digest(given.encode(), f"Bearer {self.add_token}".encode())

    async def add(self, request: Request) -> Response:
        if not self._authorised(request):
            return _text("a bearer token is required to append\n", 401)
        try:
            body = await read_body(request, MAX_STATEMENT_BYTES)
        except BodyTooLarge:
            return _text(f"an entry is at most {MAX_STATEMENT_BYTES} bytes\n", 413)
        try:
            parse_statement(body)
        except StatementError as exc:
            return _text(f"not a release statement: {exc}\n", 422)
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        await self.queue.put((body, future))
        try:
            index = await future
        except Exception as exc:
            return _text(f"the entry was not stored: {type(exc).__name__}\n", 503)
        return _text(f"index {index}\n")

    async def proof(self, request: Request) -> Response:
        if not self._authorised(request):
            return _text("a bearer token is required\n", 401)
        try:
            index = int(request.query_params["index"])
            old = int(request.query_params.get("old", "0"))
            wait = min(float(request.query_params.get("wait", "0")), MAX_WAIT_S)
        except (KeyError, ValueError):
            return _text("index, old and wait are numbers\n", 400)
        if not 0 <= index < self.store.size:
            return _text("no such entry\n", 404)
        if not 0 <= old <= self.store.size:
            return _text("old is not a size this log has had\n", 400)
        deadline = asyncio.get_running_loop().time() + wait
        async with self.published:
            while self._published_size() <= index:
                remaining = deadline - asyncio.get_running_loop().time()
                if remaining <= 0:
                    return _text("the entry has no witness quorum yet\n", 503)
                with suppress(TimeoutError):
                    await asyncio.wait_for(self.published.wait(), remaining)
        note = self.store.published_note
        assert note is not None
        size = open_checkpoint(note, [self.store.signer.verifier]).checkpoint.size
        bundle = build_bundle(
            self.store.tree,
            entry=self.store.entry(index),
            index=index,
            size=size,
            checkpoint_note=note,
            stored_size=old,
        )
        return Response(bundle.encode(), media_type=TEXT)

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/checkpoint", self.checkpoint, methods=["GET"]),
                Route("/tile/{rest:path}", self.tile, methods=["GET"]),
                Route("/add", self.add, methods=["POST"]),
                Route("/proof", self.proof, methods=["GET"]),
            ]
        )
