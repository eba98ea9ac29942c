"""Re-seal an age file to new recipients, streaming: plaintext only in memory, bounded.

Used by the release path: decrypt a clip with the delivered epoch identity and seal it to
the requester, without a plaintext byte touching the disk.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import NamedTuple

from device.vault.agestream import CHUNK_SIZE, AgeStreamReader, AgeStreamWriter, Sink, Source
from device.vault.errors import TruncatedStream


class ResealResult(NamedTuple):
    bytes: int  # ciphertext bytes written to the sink
    sha256: str  # lowercase hex SHA-256 of those bytes


class _Counting:
    def __init__(self, sink: Sink) -> None:
        self._sink = sink
        self.hasher = hashlib.sha256()
        self.bytes = 0

    def write(self, data: bytes | bytearray | memoryview, /) -> int:
        self._sink.write(data)
        self.hasher.update(data)
        self.bytes += len(data)
        return len(data)


def reseal(
    source: Source,
    sink: Sink,
    identities: Sequence[str],
    recipients: Sequence[str],
    chunk: int = CHUNK_SIZE,
    *,
    allow_truncated: bool = False,
) -> ResealResult:
    """Decrypt `source` with `identities` and seal it to `recipients` into `sink`.

    `chunk` bounds the plaintext batched before each push to the writer (at least one
    age chunk, 64 KiB, is held anyway). Returns the size and SHA-256 of what was written.
    Raises InvalidAgeKey, AgeFormatError, NoMatchingIdentity, TamperedStream, and
    TruncatedStream unless `allow_truncated` (then the verified prefix is re-sealed as a
    complete file; the caller must record that it is a prefix). When it raises, the sink
    holds an unfinished age file that no reader accepts as complete. OSError from the
    sink propagates.
    """
    if chunk < 1:
        raise ValueError("chunk must be positive")
    out = _Counting(sink)
    reader = AgeStreamReader(source, identities)
    writer = AgeStreamWriter(out, recipients)
    batch = bytearray()
    try:
        for piece in reader:
            batch += piece
            if len(batch) >= chunk:
                writer.write(batch)
                batch.clear()
    except TruncatedStream:
        if not allow_truncated:
            raise
    if batch:
        writer.write(batch)
        batch.clear()
    writer.close()
    return ResealResult(out.bytes, out.hasher.hexdigest())
