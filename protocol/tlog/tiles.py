"""c2sp.org/tlog-tiles: tile and entry-bundle paths, contents, and proofs from tiles.

A tile at level L, index N holds up to 256 hashes of the tree's level 8*L nodes
N*256 ... N*256+255; a partial tile of width W (1..255) is served at `.p/<W>`. Entry
bundles hold the entries behind a level-0 tile, each prefixed by a big-endian uint16
length. Indices are written as zero-padded 3-digit path elements, all but the last
prefixed by `x` (`x001/x234/067`).

`TileNodes` turns the tiles a client fetched into a `merkle.NodeSource`, so a monitor or
a doorbell computes inclusion and consistency proofs itself from a log's static files.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from protocol.tlog.errors import TileError
from protocol.tlog.merkle import HASH_SIZE, node_hash

TILE_HEIGHT = 8
TILE_WIDTH = 1 << TILE_HEIGHT
MAX_ENTRY_BYTES = 0xFFFF


def encode_index(n: int) -> str:
    """`1234067` -> `x001/x234/067`."""
    if n < 0:
        raise TileError(f"negative tile index {n}")
    parts = [f"{n % 1000:03d}"]
    n //= 1000
    while n:
        parts.append(f"x{n % 1000:03d}")
        n //= 1000
    return "/".join(reversed(parts))


def decode_index(parts: list[str]) -> int:
    """The inverse of `encode_index` over the split path elements; TileError if not
    exactly that encoding."""
    if not parts:
        raise TileError("no tile index")
    n = 0
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        digits = part if last else part[1:]
        if (not last and not part.startswith("x")) or len(digits) != 3 or not digits.isdigit():
            raise TileError(f"bad tile index element {part[:8]!r}")
        n = n * 1000 + int(digits)
    if encode_index(n) != "/".join(parts):
        raise TileError("the tile index is not in its canonical encoding")
    return n


@dataclass(frozen=True)
class TileRef:
    """A tile (level >= 0) or an entry bundle (level None), full (width 256) or partial."""

    level: int | None
    index: int
    width: int = TILE_WIDTH

    @property
    def path(self) -> str:
        head = "tile/entries" if self.level is None else f"tile/{self.level}"
        tail = "" if self.width == TILE_WIDTH else f".p/{self.width}"
        return f"{head}/{encode_index(self.index)}{tail}"


def parse_tile_path(path: str) -> TileRef:
    """`tile/<L>/<N>[.p/<W>]` or `tile/entries/<N>[.p/<W>]` (without a leading slash)."""
    parts = path.split("/")
    if len(parts) < 3 or parts[0] != "tile":
        raise TileError("a tile path starts tile/<L>/ or tile/entries/")
    level_part, rest = parts[1], parts[2:]
    width = TILE_WIDTH
    if len(rest) >= 2 and rest[-2].endswith(".p"):
        w = rest[-1]
        if not w.isdigit() or w.startswith("0") or not 1 <= int(w) <= 255:
            raise TileError("a partial tile width is 1..255")
        width = int(w)
        rest = [*rest[:-2], rest[-2][:-2]]
    index = decode_index(rest)
    if level_part == "entries":
        return TileRef(None, index, width)
    if not level_part.isdigit() or (len(level_part) > 1 and level_part[0] == "0"):
        raise TileError("a tile level is a decimal without leading zeroes")
    level = int(level_part)
    if level > 63:
        raise TileError("a tile level is 0..63")
    return TileRef(level, index, width)


def tiles_for_size(size: int) -> Iterator[TileRef]:
    """Every hash tile (full or the one partial per level) a tree of `size` has."""
    level = 0
    while True:
        nodes = size >> (TILE_HEIGHT * level)
        if nodes == 0:
            return
        full, partial = divmod(nodes, TILE_WIDTH)
        for n in range(full):
            yield TileRef(level, n)
        if partial:
            yield TileRef(level, full, partial)
        level += 1


def encode_bundle(entries: list[bytes]) -> bytes:
    out = bytearray()
    for entry in entries:
        if len(entry) > MAX_ENTRY_BYTES:
            raise TileError(f"an entry of {len(entry)} bytes does not fit a bundle")
        out += len(entry).to_bytes(2, "big") + entry
    return bytes(out)


def decode_bundle(data: bytes, count: int) -> list[bytes]:
    """Exactly `count` length-prefixed entries, nothing after them."""
    entries, offset = [], 0
    for _ in range(count):
        if offset + 2 > len(data):
            raise TileError("the entry bundle ends inside a length")
        length = int.from_bytes(data[offset : offset + 2], "big")
        offset += 2
        if offset + length > len(data):
            raise TileError("the entry bundle ends inside an entry")
        entries.append(data[offset : offset + length])
        offset += length
    if offset != len(data):
        raise TileError("bytes after the last entry of the bundle")
    return entries


def split_hashes(data: bytes, width: int) -> list[bytes]:
    if len(data) != width * HASH_SIZE:
        raise TileError(f"a tile of width {width} has {width * HASH_SIZE} bytes, not {len(data)}")
    return [data[i : i + HASH_SIZE] for i in range(0, len(data), HASH_SIZE)]


class TileNodes:
    """A `NodeSource` for a tree of `size` backed by tiles fetched through `fetch`.

    `fetch(ref)` returns the tile's bytes (the caller does the HTTP and decides about
    caching); each tile is fetched at most once. Hashes inside a tile are combined to
    reach the levels between tile levels.
    """

    def __init__(self, size: int, fetch: Callable[[TileRef], bytes]) -> None:
        self.size = size
        self._fetch = fetch
        self._tiles: dict[tuple[int, int], list[bytes]] = {}

    def _tile(self, level: int, index: int) -> list[bytes]:
        key = (level, index)
        if key not in self._tiles:
            nodes = self.size >> (TILE_HEIGHT * level)
            width = min(TILE_WIDTH, nodes - index * TILE_WIDTH)
            if width <= 0:
                raise TileError(f"no tile {level}/{index} in a tree of size {self.size}")
            ref = TileRef(level, index, width)
            self._tiles[key] = split_hashes(self._fetch(ref), width)
        return self._tiles[key]

    def node(self, level: int, index: int) -> bytes:
        tile_level, height = divmod(level, TILE_HEIGHT)
        first = index << height  # first node at the tile level under this node
        hashes = self._tile(tile_level, first // TILE_WIDTH)
        offset = first % TILE_WIDTH
        row = hashes[offset : offset + (1 << height)]
        if len(row) != 1 << height:
            raise TileError(f"node {level}/{index} is not complete in the tiles")
        while len(row) > 1:
            row = [node_hash(row[i], row[i + 1]) for i in range(0, len(row), 2)]
        return row[0]
