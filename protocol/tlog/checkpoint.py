"""c2sp.org/tlog-checkpoint: origin, tree size and root hash as a signed note's text.

The text is at least three non-empty lines: the origin, the size in decimal without
leading zeroes, the base64 root hash; any further lines are extension lines (kept and
signed, but never interpreted). A checkpoint is trusted only as the text of a note
opened with the log's key (`open_checkpoint`); witnesses' `cosignature/v1` lines are
note signatures too (c2sp.org/tlog-cosignature).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable
from dataclasses import dataclass

from protocol.tlog.errors import CheckpointError, NoteError
from protocol.tlog.merkle import HASH_SIZE
from protocol.tlog.note import OpenedNote, Verifier, check_text, open_note

MAX_TREE_SIZE = 2**63 - 1


def parse_decimal(value: str, what: str) -> int:
    """An ASCII decimal with no leading zeroes (except `0` itself), at most 2**63-1."""
    if (
        not value
        or not value.isascii()
        or not value.isdigit()
        or (len(value) > 1 and value[0] == "0")
    ):
        raise CheckpointError(f"{what} {value[:24]!r} is not a decimal without leading zeroes")
    number = int(value)
    if number > MAX_TREE_SIZE:
        raise CheckpointError(f"{what} {value[:24]} is larger than 2**63-1")
    return number


def decode_hash(value: str, what: str) -> bytes:
    try:
        raw = base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise CheckpointError(f"{what} is not base64") from None
    if len(raw) != HASH_SIZE:
        raise CheckpointError(f"{what} has {len(raw)} bytes, not {HASH_SIZE}")
    return raw


@dataclass(frozen=True)
class Checkpoint:
    """A log's tree head: origin, size, root hash, and opaque extension lines."""

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    @property
    def text(self) -> bytes:
        """The note text, final newline included."""
        lines = [self.origin, str(self.size), base64.b64encode(self.root).decode()]
        return ("\n".join([*lines, *self.extensions]) + "\n").encode("utf-8")

    @classmethod
    def from_text(cls, text: bytes) -> Checkpoint:
        """Parse a checkpoint note text; CheckpointError names the bad line."""
        try:
            decoded = check_text(text)
        except NoteError as exc:
            raise CheckpointError(f"checkpoint text: {exc}") from None
        lines = decoded[:-1].split("\n")
        if len(lines) < 3:
            raise CheckpointError("a checkpoint has at least three lines")
        if any(not line for line in lines):
            raise CheckpointError("a checkpoint line is empty")
        origin, size, root, *extensions = lines
        return cls(
            origin=origin,
            size=parse_decimal(size, "the tree size"),
            root=decode_hash(root, "the root hash"),
            extensions=tuple(extensions),
        )


@dataclass(frozen=True)
class SignedCheckpoint:
    """A checkpoint opened with a set of trusted keys: which of them verified."""

    checkpoint: Checkpoint
    note: OpenedNote
    raw: bytes

    def signed_by(self, verifier: Verifier) -> bool:
        return self.note.verified_by(verifier) is not None


def open_checkpoint(message: bytes, verifiers: Iterable[Verifier]) -> SignedCheckpoint:
    """Open a checkpoint note; every known signature must verify, one at least.

    Raises NoteError (signatures) or CheckpointError (text).
    """
    note = open_note(message, verifiers)
    return SignedCheckpoint(Checkpoint.from_text(note.text), note, message)
