"""The doorbell reads the release log's tiles itself when a proof bundle starts from a size
other than the checkpoint it holds (docs/protocol.md section 11, ADR 0014).

The service proves consistency from the size the doorbell last reported; when that report
is stale (two tokens in quick succession), the bundle's consistency proof joins the wrong
sizes. `refresh_consistency` then computes the proof between the two signed checkpoints
from the log's c2sp.org/tlog-tiles over HTTP. Nothing fetched is trusted: the proof is
verified against both signed roots afterwards, so a lying log can only make the check
fail. Any failure leaves the bundle as it came (and the check refuses it).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import httpx

from protocol.tlog.bundle import ConsistencyProof, ProofBundle, parse_bundle
from protocol.tlog.checkpoint import Checkpoint
from protocol.tlog.errors import TlogError
from protocol.tlog.merkle import HASH_SIZE, consistency_proof
from protocol.tlog.note import parse_note
from protocol.tlog.tiles import TILE_WIDTH, TileNodes, TileRef

log = logging.getLogger(__name__)

FETCH_TIMEOUT_S = 10.0
MAX_TILE_BYTES = TILE_WIDTH * HASH_SIZE

TileFetch = Callable[[TileRef], bytes]


def http_tiles(base_url: str, *, timeout_s: float = FETCH_TIMEOUT_S) -> TileFetch:
    """Fetch tiles from the log at `base_url`; a partial tile the log no longer serves is
    read from the full tile. Raises TlogError naming the URL."""

    def get(path: str) -> bytes | None:
        url = f"{base_url.rstrip('/')}/{path}"
        try:
            response = httpx.get(url, timeout=timeout_s)
        except httpx.HTTPError as exc:
            raise TlogError(f"{url}: {type(exc).__name__}") from None
        if response.status_code == 404:
            return None
        if response.status_code != 200 or len(response.content) > MAX_TILE_BYTES:
            raise TlogError(f"{url}: {response.status_code}, {len(response.content)} bytes")
        return response.content

    def fetch(ref: TileRef) -> bytes:
        data = get(ref.path)
        if data is None and ref.width != TILE_WIDTH:
            full = get(TileRef(ref.level, ref.index).path)
            data = None if full is None else full[: ref.width * HASH_SIZE]
        if data is None:
            raise TlogError(f"the log has no tile {ref.path}")
        return data

    return fetch


def refresh_consistency(bundle: bytes, stored: Checkpoint | None, fetch: TileFetch) -> bytes:
    """`bundle` with a consistency proof between `stored` and its checkpoint computed
    from the tiles, when the one it carries joins other sizes; else `bundle` unchanged."""
    if stored is None or stored.size == 0:
        return bundle
    try:
        parsed = parse_bundle(bundle)
        offered = Checkpoint.from_text(parse_note(parsed.proof.checkpoint).text)
    except TlogError:
        return bundle  # the check names the format error
    old, new = sorted((stored.size, offered.size))
    c = parsed.consistency
    if (c.size1, c.size2) == (old, new) or stored.origin != offered.origin:
        return bundle
    try:
        hashes = consistency_proof(TileNodes(new, fetch), old, new)
    except TlogError as exc:
        log.warning("release-log tiles not usable for %d -> %d: %s", old, new, exc)
        return bundle
    fresh = ProofBundle(proof=parsed.proof,
                        consistency=ConsistencyProof(old, new, tuple(hashes)))
    log.info("release-log consistency %d -> %d computed from the log's tiles", old, new)
    return fresh.encode()
