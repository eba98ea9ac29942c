"""The log's durable state: an append-only entries file, the signed and the published
checkpoint.

`entries` is the write-ahead log itself: records `u32 length || entry || leaf hash`,
appended in one write per batch and fsynced before the batch's checkpoint is signed and
before any index is acknowledged. On open, a torn or corrupt tail (a record cut short by
a kill, or whose leaf hash does not match) is cut off: it was never acknowledged. A
checkpoint is signed only over fsynced entries, so the entries file always holds at
least every signed size; if it does not, or a signed root is not the recomputed root,
the store refuses to open (`LogStoreError`) instead of signing a fork.

`checkpoint` (the latest log-signed note) and `published` (the latest note cosigned by a
witness quorum) are replaced atomically (`files.write_atomically`).
"""

from __future__ import annotations

import os
import struct
import threading
from collections.abc import Sequence
from pathlib import Path

from protocol.tlog.checkpoint import Checkpoint, open_checkpoint
from protocol.tlog.errors import TlogError
from protocol.tlog.merkle import HASH_SIZE, MemoryTree, leaf_hash
from protocol.tlog.note import Signer, sign_note
from protocol.tlog.tiles import MAX_ENTRY_BYTES
from release_log.files import fsync_directory, write_atomically

ENTRIES = "entries"
CHECKPOINT = "checkpoint"
PUBLISHED = "published"
_LENGTH = struct.Struct(">I")


class LogStoreError(Exception):
    """The log's files are unusable as they are (never a fork, never a silent loss)."""


class LogStore:
    """Entries, tree and checkpoints of one log; appends are serialised by a lock."""

    def __init__(self, directory: Path, signer: Signer) -> None:
        self.directory = directory
        self.signer = signer
        self.tree = MemoryTree()
        self._offsets: list[int] = []  # file offset of each entry's bytes
        self._index_of: dict[bytes, int] = {}  # leaf hash -> index: appends are idempotent
        self._lock = threading.Lock()
        self._published: bytes | None = None
        self._signed: bytes = b""
        self._open()

    # -- opening ---------------------------------------------------------------

    def _open(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / ENTRIES
        path.touch(exist_ok=True)
        data = path.read_bytes()
        good = self._scan(data)
        if good < len(data):
            with path.open("r+b") as handle:
                handle.truncate(good)
                handle.flush()
                os.fsync(handle.fileno())
        self._fd = os.open(path, os.O_RDWR | os.O_APPEND)
        self._end = good
        signed = self._read_note(CHECKPOINT)
        signed_size = -1 if signed is None else self._check_against_tree(signed, "signed")
        published = self._read_note(PUBLISHED)
        if published is not None:
            self._check_against_tree(published, "published")
            self._published = published
        if signed is not None and signed_size == self.tree.size:
            self._signed = signed
        else:
            self._sign_current()  # entries fsynced but not yet signed before a kill

    def _scan(self, data: bytes) -> int:
        offset = 0
        while offset + _LENGTH.size <= len(data):
            (length,) = _LENGTH.unpack_from(data, offset)
            start = offset + _LENGTH.size
            end = start + length + HASH_SIZE
            if length > MAX_ENTRY_BYTES or end > len(data):
                break
            entry = data[start : start + length]
            digest = data[start + length : end]
            if leaf_hash(entry) != digest:
                break
            self._index_of.setdefault(digest, self.tree.size)
            self.tree.append_hash(digest)
            self._offsets.append(start)
            offset = end
        return offset

    def _read_note(self, name: str) -> bytes | None:
        path = self.directory / name
        if not path.exists():
            return None
        return path.read_bytes()

    def _check_against_tree(self, note: bytes, what: str) -> int:
        try:
            checkpoint = open_checkpoint(note, [self.signer.verifier]).checkpoint
        except TlogError as exc:
            raise LogStoreError(f"the {what} checkpoint file is unreadable: {exc}") from None
        if checkpoint.size > self.tree.size:
            raise LogStoreError(
                f"the {what} checkpoint covers {checkpoint.size} entries but only "
                f"{self.tree.size} are on disk: refusing to run on a log that lost entries"
            )
        if self.tree.root(checkpoint.size) != checkpoint.root:
            raise LogStoreError(
                f"the entries on disk do not give the {what} root at size {checkpoint.size}: "
                "refusing to sign a fork"
            )
        return checkpoint.size

    # -- appends ---------------------------------------------------------------

    def append(self, entries: Sequence[bytes]) -> tuple[list[int], bytes]:
        """Append a batch durably and sign the new checkpoint; returns each entry's index
        and the signed note. Only then may the indices be acknowledged. An entry already
        in the log (a retry) gets its existing index and is not appended again."""
        for entry in entries:
            if len(entry) > MAX_ENTRY_BYTES:
                raise ValueError(f"an entry of {len(entry)} bytes is above {MAX_ENTRY_BYTES}")
        with self._lock:
            records = bytearray()
            hashes: list[bytes] = []
            offsets = []
            indices = []
            fresh: dict[bytes, int] = {}
            position = self._end
            for entry in entries:
                digest = leaf_hash(entry)
                known = self._index_of.get(digest, fresh.get(digest))
                if known is not None:
                    indices.append(known)
                    continue
                fresh[digest] = self.tree.size + len(hashes)
                indices.append(fresh[digest])
                offsets.append(position + _LENGTH.size)
                records += _LENGTH.pack(len(entry)) + entry + digest
                position += _LENGTH.size + len(entry) + HASH_SIZE
                hashes.append(digest)
            if not hashes:
                return indices, self._signed
            try:
                view = memoryview(bytes(records))
                while view:
                    view = view[os.write(self._fd, view) :]
                os.fsync(self._fd)
            except OSError:
                # Disk full or I/O error: cut what was half written, so that the next
                # batch follows the last good record and none of this one is kept.
                os.ftruncate(self._fd, self._end)
                raise
            self._end = position
            for digest, offset in zip(hashes, offsets, strict=True):
                self._index_of[digest] = self.tree.size
                self.tree.append_hash(digest)
                self._offsets.append(offset)
            note = self._sign_current()
            return indices, note

    def _sign_current(self) -> bytes:
        checkpoint = Checkpoint(self.signer.name, self.tree.size, self.tree.root())
        note = sign_note(checkpoint.text, self.signer)
        write_atomically(self.directory / CHECKPOINT, note)
        self._signed = note
        return note

    # -- reads -----------------------------------------------------------------

    @property
    def size(self) -> int:
        return self.tree.size

    @property
    def signed_note(self) -> bytes:
        return self._signed

    @property
    def published_note(self) -> bytes | None:
        return self._published

    def publish(self, note: bytes) -> None:
        """Record a quorum-cosigned checkpoint as the one served at `checkpoint`."""
        write_atomically(self.directory / PUBLISHED, note)
        self._published = note

    def entry(self, index: int) -> bytes:
        start = self._offsets[index]
        (length,) = _LENGTH.unpack(os.pread(self._fd, _LENGTH.size, start - _LENGTH.size))
        return os.pread(self._fd, length, start)

    def close(self) -> None:
        os.close(self._fd)
        fsync_directory(self.directory)
