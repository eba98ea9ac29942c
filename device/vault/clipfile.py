"""Clip files on disk: naming, the hashing sink, and reading back what a crash left.

A clip ``<id>`` lives at ``clips/<YYYYMMDD>/<id>.age``; while it is written it is
``<id>.age.part``. The device holds no key that opens its clips, so everything here
works on ciphertext: sizes, SHA-256 and the header length.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from device.vault.ageheader import MAX_HEADER, header_length
from device.vault.agestream import NONCE_SIZE

CLIP_ID = re.compile(r"(\d{8})T\d{6}Z-[0-9a-f]{8}")
SEALED_SUFFIX = ".age"
PART_SUFFIX = ".age.part"
_SYNC_EVERY = 4 * 1024 * 1024  # bound what a power cut can lose to ~4 MiB of ciphertext
_READ_BLOCK = 1024 * 1024


def new_clip_id(start: datetime) -> str:
    return f"{start.astimezone(UTC):%Y%m%dT%H%M%S}Z-{secrets.token_hex(4)}"


def clip_dir(root: Path, clip_id: str) -> Path:
    match = CLIP_ID.fullmatch(clip_id)
    if match is None:
        raise ValueError(f"not a clip id: {clip_id!r:.60}")
    return root / match.group(1)


def sealed_file(root: Path, clip_id: str) -> Path:
    return clip_dir(root, clip_id) / f"{clip_id}{SEALED_SUFFIX}"


def part_file(root: Path, clip_id: str) -> Path:
    return clip_dir(root, clip_id) / f"{clip_id}{PART_SUFFIX}"


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class HashingFileSink:
    """Unbuffered writes to a file descriptor, hashing the ciphertext as it passes.

    Unbuffered, so a killed process loses nothing it had handed over; fdatasync every
    4 MiB, so a power cut loses little. Raises OSError from the kernel (ENOSPC, EIO).
    """

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.hasher = hashlib.sha256()
        self.bytes = 0
        self._unsynced = 0

    def write(self, data: bytes | bytearray | memoryview, /) -> int:
        view = memoryview(data)
        total = len(view)
        while view:
            written = os.write(self.fd, view)
            self.hasher.update(view[:written])
            self.bytes += written
            view = view[written:]
        self._unsynced += total
        if self._unsynced >= _SYNC_EVERY:
            os.fdatasync(self.fd)
            self._unsynced = 0
        return total

    def sync(self) -> None:
        os.fsync(self.fd)
        self._unsynced = 0


@dataclass(frozen=True, slots=True)
class OnDisk:
    """What a file holds, judged without a key."""

    size: int
    sha256: str
    header: int | None  # header + payload nonce length, None if no complete header
    mtime: datetime

    @property
    def has_payload(self) -> bool:
        """True when bytes follow the header and payload nonce.

        Only whole 64 KiB chunks of a crashed file can be authenticated, but a file
        whose final chunk was written just before the crash is complete: without the
        key the device cannot tell, so anything beyond the header is kept.
        """
        return self.header is not None and self.size > self.header


def inspect(path: Path) -> OnDisk:
    """Size, SHA-256 and header length of a ciphertext file. Raises OSError."""
    hasher = hashlib.sha256()
    size = 0
    prefix = bytearray()
    with path.open("rb", buffering=0) as handle:
        stat = os.fstat(handle.fileno())
        while block := handle.read(_READ_BLOCK):
            hasher.update(block)
            size += len(block)
            if len(prefix) < MAX_HEADER:
                prefix += block[: MAX_HEADER - len(prefix)]
    length = header_length(bytes(prefix))
    header = None if length is None else length + NONCE_SIZE
    if header is not None and size < header:
        header = None
    return OnDisk(size, hasher.hexdigest(), header, datetime.fromtimestamp(stat.st_mtime, UTC))
