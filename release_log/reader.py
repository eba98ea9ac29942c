"""Reading a tiled log as a client: the witnessed checkpoint, then entries checked
against the tiles. Shared by the owner's monitor and the auditor's `--verify-log`.

`fetch(url) -> bytes` is the only I/O (the caller's HTTP client, its errors its own).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from protocol.tlog.checkpoint import Checkpoint, SignedCheckpoint, open_checkpoint
from protocol.tlog.errors import TlogError
from protocol.tlog.merkle import leaf_hash, subtree_root
from protocol.tlog.policy import Log, WitnessPolicy, witnessed_names
from protocol.tlog.tiles import TILE_WIDTH, TileNodes, TileRef, decode_bundle

Fetch = Callable[[str], bytes]


class LogReadError(Exception):
    """The log's checkpoint, tiles or entries are not what they must be (named)."""


@dataclass
class LogView:
    """A log's checkpoint (signed, with the quorum) and its tiles, checked against it."""

    log: Log
    url: str
    signed: SignedCheckpoint
    note: bytes
    tiles: TileNodes
    witnesses: frozenset[str]

    @property
    def checkpoint(self) -> Checkpoint:
        return self.signed.checkpoint

    def root_at(self, size: int) -> bytes:
        """The tree's root at an earlier size, from the same tiles."""
        try:
            return subtree_root(self.tiles, 0, size)
        except TlogError as exc:
            raise LogReadError(f"the log's tiles: {exc}") from None

    def entries(self, start: int, fetch: Fetch) -> Iterator[tuple[int, bytes]]:
        """Entries start .. size-1, each checked against its leaf hash in the tiles."""
        end = self.checkpoint.size
        try:
            for n in range(start // TILE_WIDTH, (end + TILE_WIDTH - 1) // TILE_WIDTH):
                width = min(TILE_WIDTH, end - n * TILE_WIDTH)
                data = fetch(f"{self.url}/{TileRef(None, n, width).path}")
                for offset, entry in enumerate(decode_bundle(data, width)):
                    index = n * TILE_WIDTH + offset
                    if index < start:
                        continue
                    if leaf_hash(entry) != self.tiles.node(0, index):
                        raise LogReadError(f"entry {index} does not hash to its leaf in the tiles")
                    yield index, entry
        except TlogError as exc:
            raise LogReadError(f"the log's entries: {exc}") from None


def open_checkpoint_for(
    policy: WitnessPolicy, log: Log, note: bytes, what: str
) -> SignedCheckpoint:
    """A checkpoint note of `log` whose known signatures all verify and with the log's."""
    try:
        signed = open_checkpoint(note, [log.verifier, *policy.witness_verifiers])
    except TlogError as exc:
        raise LogReadError(f"{what}: {exc}") from None
    if not signed.signed_by(log.verifier):
        raise LogReadError(f"{what}: not signed by the log's key")
    if signed.checkpoint.origin != log.origin:
        raise LogReadError(f"{what}: origin {signed.checkpoint.origin[:80]!r} is another log's")
    return signed


def read_log(policy: WitnessPolicy, log: Log, fetch: Fetch) -> LogView:
    """Fetch the log's checkpoint, require its quorum, and check its tiles' root."""
    if not log.url:
        raise LogReadError("the policy's log line has no URL")
    url = log.url.rstrip("/")
    note = fetch(f"{url}/checkpoint")
    signed = open_checkpoint_for(policy, log, note, "the log's checkpoint")
    names = witnessed_names(policy, (v for v, _ in signed.note.verified))
    if not policy.satisfied(names):
        raise LogReadError("the log's checkpoint lacks the witness quorum of the policy")
    size = signed.checkpoint.size
    view = LogView(
        log, url, signed, note, TileNodes(size, lambda r: fetch(f"{url}/{r.path}")), names
    )
    if view.root_at(size) != signed.checkpoint.root:
        raise LogReadError("the log's tiles do not give its checkpoint's root")
    return view
