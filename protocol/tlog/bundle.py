"""The proof bundle that travels with a token to the doorbell, and how a log builds it.

    sealed-doorbell/log-bundle/v1
    consistency <size1> <size2>
    <base64 hash>                 (zero or more: RFC 9162 consistency proof)
    <blank line>
    <c2sp.org/tlog-proof@v1, whose `extra` is the release statement>

The consistency proof joins the doorbell's stored checkpoint and the proof's checkpoint,
from the smaller size to the larger (empty when either is 0 or both are equal).
"""

from __future__ import annotations

from dataclasses import dataclass

from protocol.tlog.checkpoint import decode_hash, parse_decimal
from protocol.tlog.errors import CheckpointError, ProofFormatError
from protocol.tlog.merkle import (
    MAX_PROOF_HASHES,
    NodeSource,
    consistency_proof,
    inclusion_proof,
)
from protocol.tlog.proof import TlogProof, encode_hash_lines, parse_tlog_proof
from protocol.tlog.statement import MAX_STATEMENT_BYTES

BUNDLE_HEADER = "sealed-doorbell/log-bundle/v1"
MAX_BUNDLE_BYTES = MAX_STATEMENT_BYTES * 2 + 64 * 1024  # statement in base64 and signatures


@dataclass(frozen=True)
class ConsistencyProof:
    size1: int
    size2: int
    hashes: tuple[bytes, ...]


@dataclass(frozen=True)
class ProofBundle:
    """What travels with a token: a tlog-proof and a consistency proof."""

    proof: TlogProof
    consistency: ConsistencyProof

    def encode(self) -> bytes:
        c = self.consistency
        head = f"{BUNDLE_HEADER}\nconsistency {c.size1} {c.size2}\n"
        return (head + encode_hash_lines(c.hashes) + "\n").encode() + self.proof.encode()


def parse_bundle(data: bytes) -> ProofBundle:
    """Parse a proof bundle; ProofFormatError names the problem."""
    if len(data) > MAX_BUNDLE_BYTES:
        raise ProofFormatError(f"the bundle is {len(data)} bytes, above {MAX_BUNDLE_BYTES}")
    head, sep, rest = data.partition(b"\n\n")
    if not sep:
        raise ProofFormatError("no blank line after the consistency proof")
    try:
        lines = head.decode("ascii").split("\n")
    except UnicodeDecodeError:
        raise ProofFormatError("the bundle head is not ASCII") from None
    if lines[0] != BUNDLE_HEADER or len(lines) < 2:
        raise ProofFormatError(f"the first line is not {BUNDLE_HEADER}")
    words = lines[1].split(" ")
    if len(words) != 3 or words[0] != "consistency":
        raise ProofFormatError("the second line is consistency <size1> <size2>")
    try:
        size1 = parse_decimal(words[1], "size1")
        size2 = parse_decimal(words[2], "size2")
        hashes = tuple(decode_hash(v, "a consistency hash") for v in lines[2:])
    except CheckpointError as exc:
        raise ProofFormatError(str(exc)) from None
    if len(hashes) > MAX_PROOF_HASHES:
        raise ProofFormatError(f"more than {MAX_PROOF_HASHES} consistency hashes")
    return ProofBundle(parse_tlog_proof(rest), ConsistencyProof(size1, size2, hashes))


def build_bundle(
    source: NodeSource,
    *,
    entry: bytes,
    index: int,
    size: int,
    checkpoint_note: bytes,
    stored_size: int,
) -> ProofBundle:
    """The bundle for `entry` at `index` under the cosigned checkpoint of `size`, with a
    consistency proof from (or to) the doorbell's `stored_size`."""
    low, high = sorted((stored_size, size))
    hashes = consistency_proof(source, low, high) if low > 0 else []
    proof = TlogProof(
        index=index,
        inclusion=tuple(inclusion_proof(source, index, size)),
        checkpoint=checkpoint_note,
        extra=entry,
    )
    return ProofBundle(proof, ConsistencyProof(low, high, tuple(hashes)))
