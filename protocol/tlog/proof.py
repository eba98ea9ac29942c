"""c2sp.org/tlog-proof@v1: an offline proof that an entry is in a witnessed log.

c2sp.org/tlog-proof@v1
[extra <base64>]
index <decimal>
<base64 hash>            (zero or more: the RFC 6962 inclusion path)
<blank line>
<checkpoint note, verbatim, with the log's and witnesses' signatures>
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass

from protocol.tlog.checkpoint import decode_hash, parse_decimal
from protocol.tlog.errors import CheckpointError, ProofFormatError
from protocol.tlog.merkle import MAX_PROOF_HASHES

HEADER = "c2sp.org/tlog-proof@v1"


@dataclass(frozen=True)
class TlogProof:
    """Index, inclusion path and the cosigned checkpoint note (still unverified)."""

    index: int
    inclusion: tuple[bytes, ...]
    checkpoint: bytes
    extra: bytes | None = None

    def encode(self) -> bytes:
        lines = [HEADER]
        if self.extra is not None:
            lines.append("extra " + base64.b64encode(self.extra).decode())
        lines.append(f"index {self.index}")
        lines.extend(base64.b64encode(h).decode() for h in self.inclusion)
        return ("\n".join(lines) + "\n\n").encode() + self.checkpoint


def parse_tlog_proof(data: bytes) -> TlogProof:
    """Parse a tlog-proof; ProofFormatError names the first bad line."""
    head, sep, checkpoint = data.partition(b"\n\n")
    if not sep or not checkpoint:
        raise ProofFormatError("no blank line before the checkpoint")
    try:
        lines = head.decode("ascii").split("\n")
    except UnicodeDecodeError:
        raise ProofFormatError("the proof lines are not ASCII") from None
    if lines[0] != HEADER:
        raise ProofFormatError(f"the first line is not {HEADER}")
    position = 1
    extra = None
    if len(lines) > position and lines[position].startswith("extra "):
        try:
            extra = base64.b64decode(lines[position][6:], validate=True)
        except (binascii.Error, ValueError):
            raise ProofFormatError("the extra line is not base64") from None
        position += 1
    if len(lines) <= position or not lines[position].startswith("index "):
        raise ProofFormatError("no index line")
    try:
        index = parse_decimal(lines[position][6:], "the index")
        hashes = tuple(decode_hash(v, "an inclusion hash") for v in lines[position + 1 :])
    except CheckpointError as exc:
        raise ProofFormatError(str(exc)) from None
    if len(hashes) > MAX_PROOF_HASHES:
        raise ProofFormatError(f"more than {MAX_PROOF_HASHES} inclusion hashes")
    return TlogProof(index=index, inclusion=hashes, checkpoint=checkpoint, extra=extra)


def encode_hash_lines(hashes: Sequence[bytes]) -> str:
    return "".join(base64.b64encode(h).decode() + "\n" for h in hashes)
