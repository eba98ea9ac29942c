"""RFC 9162 Merkle tree hashing, and inclusion and consistency proofs.

Leaf hash `SHA-256(0x00 || entry)`, node hash `SHA-256(0x01 || left || right)`, the
empty tree's root `SHA-256("")` (RFC 9162 section 2.1.1). Verification follows the
algorithms of sections 2.1.3.2 (inclusion) and 2.1.4.2 (consistency) step by step;
generation follows PATH and SUBPROOF of sections 2.1.3.1 and 2.1.4.1 over a
`NodeSource`, so a log can answer from whatever stores its complete subtrees.
Pure functions: bytes in, bytes or `MerkleError` out. See docs/protocol.md
"Release log".
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Protocol

from protocol.tlog.errors import MerkleError

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()
MAX_PROOF_HASHES = 63  # a tree of at most 2**63 leaves never needs more


def leaf_hash(entry: bytes) -> bytes:
    """The RFC 9162 hash of one log entry."""
    return hashlib.sha256(b"\x00" + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """The RFC 9162 hash of an interior node."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def _largest_power_of_two_below(n: int) -> int:
    """The k of RFC 9162: the largest power of two strictly smaller than n (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


class NodeSource(Protocol):
    """Where a log keeps its tree: the hash of every complete, aligned subtree."""

    def node(self, level: int, index: int) -> bytes:
        """The root of leaves [index * 2**level, (index + 1) * 2**level)."""
        ...


class MemoryTree:
    """A whole tree in memory, every level kept: for tests, benchmarks and small logs."""

    def __init__(self, leaf_hashes: Sequence[bytes] = ()) -> None:
        self.levels: list[list[bytes]] = [[]]
        for item in leaf_hashes:
            self.append_hash(item)

    @property
    def size(self) -> int:
        return len(self.levels[0])

    def append_hash(self, item: bytes) -> None:
        """Add one leaf hash and every complete node it closes."""
        if len(item) != HASH_SIZE:
            raise MerkleError(f"a leaf hash has {HASH_SIZE} bytes, not {len(item)}")
        self.levels[0].append(item)
        level = 0
        while len(self.levels[level]) % 2 == 0:
            row = self.levels[level]
            if len(self.levels) == level + 1:
                self.levels.append([])
            self.levels[level + 1].append(node_hash(row[-2], row[-1]))
            level += 1

    def node(self, level: int, index: int) -> bytes:
        try:
            return self.levels[level][index]
        except IndexError:
            raise MerkleError(f"no complete node at level {level} index {index}") from None

    def root(self, size: int | None = None) -> bytes:
        return subtree_root(self, 0, self.size if size is None else size)


def subtree_root(source: NodeSource, start: int, end: int) -> bytes:
    """MTH(D[start:end]) for a range whose start is aligned as in RFC 9162 proofs."""
    n = end - start
    if n < 0:
        raise MerkleError(f"empty or reversed range [{start}, {end})")
    if n == 0:
        return EMPTY_ROOT
    if n & (n - 1) == 0 and start % n == 0:
        return source.node(n.bit_length() - 1, start // n)
    k = _largest_power_of_two_below(n)
    return node_hash(subtree_root(source, start, start + k), subtree_root(source, start + k, end))


def inclusion_proof(source: NodeSource, index: int, size: int) -> list[bytes]:
    """PATH(index, D[0:size]) of RFC 9162 section 2.1.3.1, leaf's sibling first."""
    if not 0 <= index < size:
        raise MerkleError(f"index {index} is outside a tree of size {size}")
    proof: list[bytes] = []
    start, end, m = 0, size, index
    while end - start > 1:
        k = _largest_power_of_two_below(end - start)
        if m < k:
            proof.append(subtree_root(source, start + k, end))
            end = start + k
        else:
            proof.append(subtree_root(source, start, start + k))
            start, m = start + k, m - k
    proof.reverse()
    return proof


def consistency_proof(source: NodeSource, old_size: int, new_size: int) -> list[bytes]:
    """PROOF(old_size, D[0:new_size]) of RFC 9162 section 2.1.4.1."""
    if not 0 <= old_size <= new_size:
        raise MerkleError(f"no consistency proof from size {old_size} to {new_size}")
    if old_size in (0, new_size):
        return []
    proof: list[bytes] = []
    start, end, m, whole = 0, new_size, old_size, True
    while True:
        if m == end - start:
            if not whole:
                proof.append(subtree_root(source, start, end))
            break
        k = _largest_power_of_two_below(end - start)
        if m <= k:
            proof.append(subtree_root(source, start + k, end))
            end = start + k
        else:
            proof.append(subtree_root(source, start, start + k))
            start, m, whole = start + k, m - k, False
    proof.reverse()
    return proof


def _check_hashes(name: str, hashes: Sequence[bytes]) -> None:
    if len(hashes) > MAX_PROOF_HASHES:
        raise MerkleError(f"{name} has {len(hashes)} hashes, more than {MAX_PROOF_HASHES}")
    for item in hashes:
        if len(item) != HASH_SIZE:
            raise MerkleError(f"{name} holds a hash of {len(item)} bytes, not {HASH_SIZE}")


def root_from_inclusion_proof(index: int, size: int, leaf: bytes, proof: Sequence[bytes]) -> bytes:
    """The root that `proof` binds leaf hash `leaf` at `index` to (RFC 9162 2.1.3.2)."""
    if not 0 <= index < size:
        raise MerkleError(f"index {index} is outside a tree of size {size}")
    _check_hashes("the leaf hash", [leaf])
    _check_hashes("the inclusion proof", proof)
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise MerkleError("the inclusion proof is longer than the tree is deep")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise MerkleError("the inclusion proof is shorter than the tree is deep")
    return r


def verify_inclusion(
    index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes
) -> None:
    """Raise MerkleError unless `proof` shows leaf hash `leaf` at `index` under `root`."""
    if root_from_inclusion_proof(index, size, leaf, proof) != root:
        raise MerkleError(f"the inclusion proof for index {index} does not reach the root")


def verify_consistency(
    old_size: int, new_size: int, proof: Sequence[bytes], old_root: bytes, new_root: bytes
) -> None:
    """Raise MerkleError unless the tree (new_size, new_root) extends (old_size, old_root).

    RFC 9162 2.1.4.2 for 0 < old_size < new_size; equal sizes need an empty proof and
    equal roots. A proof from the empty tree is meaningless and refused here: callers
    that accept anything after an empty tree say so themselves.
    """
    _check_hashes("the consistency proof", proof)
    if new_size < old_size:
        raise MerkleError(f"the new size {new_size} is smaller than the old size {old_size}")
    if old_size == 0:
        raise MerkleError("a consistency proof from the empty tree is meaningless")
    if old_size == new_size:
        if proof:
            raise MerkleError("equal sizes need an empty consistency proof")
        if old_root != new_root:
            raise MerkleError(f"two different roots for the same size {old_size}")
        return
    if not proof:
        raise MerkleError("an empty consistency proof between different sizes")
    path = list(proof)
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise MerkleError("the consistency proof is longer than needed")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise MerkleError("the consistency proof is shorter than needed")
    if fr != old_root:
        raise MerkleError(f"the consistency proof does not reach the old root at {old_size}")
    if sr != new_root:
        raise MerkleError(f"the consistency proof does not reach the new root at {new_size}")
