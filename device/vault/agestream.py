"""age v1 as a push-based streaming writer and a pull-based streaming reader.

pyrage's ``encrypt_io`` pulls plaintext from a reader; our encoder pushes bytes as it
produces them, so the payload layer (age's STREAM: 64 KiB chunks, ChaCha20-Poly1305
with an 11-byte big-endian counter and a last-chunk flag as the nonce, key
HKDF(file key, 16-byte nonce, "payload")) is written here on `cryptography`'s
primitives (docs/adr/0002-age-stream-writer.md). Files are standard: ``age -d`` and
``pyrage.decrypt`` open them, and this reader opens files written by ``age -r``.

Memory is bounded: the writer holds at most 64 KiB of plaintext (a full chunk waits for
one more byte, because only then is it known not to be the last) and a reused 1 MiB
ciphertext batch, so each `write` call costs one sink write instead of one per chunk;
the reader holds one encrypted chunk plus a little look-ahead.

A closed writer hands its ciphertext batch to the next writer of the same thread (a
thread keeps one, 1 MiB, between writers). The agent fixes glibc's mmap threshold
(`device.malloc.tune_malloc`), so a new 1 MiB buffer is a new mapping whose 256 pages
fault in as it fills: about 5 ms of CPU for a release of ten clips (bench/README.md,
"Device CPU: what is left"). The batch only ever holds ciphertext.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Sequence
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from device.vault.ageheader import MAX_HEADER, MAX_LINE, build_header, parse_header, unwrap_file_key
from device.vault.agekeys import hkdf_sha256, new_file_key, parse_identities, parse_recipients
from device.vault.errors import AgeFormatError, TamperedStream, TruncatedStream

CHUNK_SIZE = 64 * 1024
TAG_SIZE = 16
ENCRYPTED_CHUNK_SIZE = CHUNK_SIZE + TAG_SIZE
NONCE_SIZE = 16
_MAX_COUNTER = (1 << 88) - 1
_BATCH_CHUNKS = 16  # ciphertext handed to the sink in writes of up to 1 MiB
_BATCH_BYTES = _BATCH_CHUNKS * ENCRYPTED_CHUNK_SIZE
_SPARE_BATCHES = 1  # a closed writer's batch, kept by its thread for the next writer


class _SpareBatches(threading.local):
    """Ciphertext batches of closed writers, per thread."""

    def __init__(self) -> None:
        self.free: list[memoryview] = []

    def take(self) -> memoryview:
        return self.free.pop() if self.free else memoryview(bytearray(_BATCH_BYTES))

    def give(self, batch: memoryview) -> None:
        if len(self.free) < _SPARE_BATCHES:
            self.free.append(batch)


_spares = _SpareBatches()


class Sink(Protocol):
    def write(self, data: bytes | bytearray | memoryview, /) -> object: ...


class Source(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


def _chunk_nonce(counter: int, last: bool) -> bytes:
    return counter.to_bytes(11, "big") + (b"\x01" if last else b"\x00")


class AgeStreamWriter:
    """Seal bytes pushed with `write` into `sink` as one age v1 file.

    The header and payload nonce are written at construction; each full chunk is
    written as soon as it is known not to be the last; `close` writes the final chunk
    with the last-chunk flag. `close` does not close `sink`. Raises InvalidAgeKey for a
    bad recipient; errors of `sink.write` (OSError) propagate unchanged, after which the
    writer is dead and the sink holds a truncated (never a forged-complete) file.
    """

    def __init__(self, sink: Sink, recipients: Sequence[str]) -> None:
        parsed = parse_recipients(list(recipients))
        file_key = new_file_key()
        header = build_header(file_key, parsed)
        nonce = os.urandom(NONCE_SIZE)
        self._aead = ChaCha20Poly1305(hkdf_sha256(file_key, nonce, b"payload"))
        del file_key
        self._sink = sink
        self._buffer = bytearray()
        self._out = _spares.take()
        self._batched = 0
        self._counter = 0
        self._closed = False
        self._dead = False
        self.plaintext_bytes = 0
        self.ciphertext_bytes = 0
        self._put(header + nonce)
        self.header_bytes = self.ciphertext_bytes

    def _put(self, data: bytes | bytearray | memoryview) -> None:
        try:
            self._sink.write(data)
        except BaseException:
            self._dead = True
            raise
        self.ciphertext_bytes += len(data)

    def _seal_into(self, plaintext: bytes | bytearray | memoryview, last: bool) -> None:
        """Encrypt one chunk into the output batch (no per-chunk allocation)."""
        if self._counter > _MAX_COUNTER:
            raise AgeFormatError("age stream too long: chunk counter exhausted")
        end = self._batched + len(plaintext) + TAG_SIZE
        self._aead.encrypt_into(
            _chunk_nonce(self._counter, last), plaintext, None, self._out[self._batched : end]
        )
        self._counter += 1
        self._batched = end
        if self._batched + ENCRYPTED_CHUNK_SIZE > len(self._out):
            self._flush()

    def _flush(self) -> None:
        if self._batched:
            batched, self._batched = self._batched, 0
            self._put(self._out[:batched])

    def write(self, data: bytes | bytearray | memoryview) -> int:
        """Seal `data` (any length). Returns len(data). Raises ValueError when closed.

        Every chunk completed by this call reaches the sink before it returns.
        """
        if self._closed or self._dead:
            raise ValueError("write to a closed or failed AgeStreamWriter")
        view = memoryview(data).cast("B")
        size = len(view)
        buffered = len(self._buffer)
        if buffered + size <= CHUNK_SIZE:
            self._buffer += view
        else:
            pos = 0
            if buffered:
                pos = CHUNK_SIZE - buffered
                self._buffer += view[:pos]
                self._seal_into(self._buffer, last=False)
                self._buffer.clear()
            while size - pos > CHUNK_SIZE:  # a full chunk followed by more bytes
                self._seal_into(view[pos : pos + CHUNK_SIZE], last=False)
                pos += CHUNK_SIZE
            self._buffer += view[pos:]
            self._flush()
        self.plaintext_bytes += size
        return size

    def close(self) -> None:
        """Write the final chunk (flagged last). Idempotent; does not close the sink."""
        if self._closed:
            return
        if self._dead:
            raise ValueError("cannot close an AgeStreamWriter whose sink failed")
        self._seal_into(self._buffer, last=True)
        self._flush()
        self._buffer.clear()
        self._closed = True
        _spares.give(self._out)  # no longer written by this writer: closed
        self._out = memoryview(b"")

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> AgeStreamWriter:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.close()


class _Input:
    """Exact reads with a small push-back buffer over a `Source`."""

    def __init__(self, source: Source) -> None:
        self._source = source
        self._pending = bytearray()

    def read(self, size: int) -> bytes:
        while len(self._pending) < size:
            block = self._source.read(max(size - len(self._pending), 8192))
            if not block:
                break
            self._pending += block
        out = bytes(self._pending[:size])
        del self._pending[:size]
        return out

    def at_eof(self) -> bool:
        if self._pending:
            return False
        block = self._source.read(8192)
        if not block:
            return True
        self._pending += block
        return False

    def read_line(self) -> bytes | None:
        """One line without its newline, or None at EOF or past MAX_LINE."""
        while True:
            end = self._pending.find(b"\n")
            if end >= 0:
                line = bytes(self._pending[:end])
                del self._pending[: end + 1]
                return line
            if len(self._pending) > MAX_LINE:
                return None
            block = self._source.read(4096)
            if not block:
                return None
            self._pending += block


class AgeStreamReader:
    """Open an age v1 file from `source` and iterate its verified plaintext chunks.

    The constructor reads and authenticates the header and reads the payload nonce.
    Raises InvalidAgeKey for a bad identity string, AgeFormatError for a malformed
    header (a malformed X25519 stanza, a missing or short payload nonce), ArmoredAgeFile
    for the ASCII-armored form, NoMatchingIdentity when no
    identity opens the file, TamperedStream when the header MAC fails. Iterating yields
    each chunk only after it authenticated; it then raises TamperedStream when a chunk
    fails authentication (or bytes follow the final chunk) and TruncatedStream (with
    `verified_bytes`) when the file ends before its final chunk. An incomplete final
    chunk cannot be told apart from an altered one; it is reported as TruncatedStream.
    """

    def __init__(self, source: Source, identities: Sequence[str]) -> None:
        parsed = parse_identities(list(identities))
        self._input = _Input(source)
        lines: list[bytes] = []
        total = 0
        while True:
            line = self._input.read_line()
            if line is None:
                if not lines:
                    raise AgeFormatError("not an age v1 file (empty or no header line)")
                raise AgeFormatError("age header is incomplete or has an over-long line")
            lines.append(line)
            total += len(line) + 1
            if total > MAX_HEADER:
                raise AgeFormatError("age header is larger than 256 KiB")
            if line.startswith(b"--- ") or (len(lines) == 1 and not line.startswith(b"age")):
                break
        header = parse_header(lines)
        file_key = unwrap_file_key(header, parsed)
        nonce = self._input.read(NONCE_SIZE)
        if len(nonce) != NONCE_SIZE:  # a header failure in age too (its nonce is read with it)
            raise AgeFormatError(
                f"age file ends inside the payload nonce ({len(nonce)} of {NONCE_SIZE} bytes)"
            )
        self.header_bytes = header.length
        self.verified_bytes = 0
        self._aead = ChaCha20Poly1305(hkdf_sha256(file_key, nonce, b"payload"))
        del file_key
        self._started = False

    def _open(self, counter: int, sealed: bytes, last: bool) -> bytes | None:
        try:
            return self._aead.decrypt(_chunk_nonce(counter, last), sealed, None)
        except InvalidTag:
            return None

    def __iter__(self) -> Iterator[bytes]:
        if self._started:
            raise ValueError("an AgeStreamReader can be iterated only once")
        self._started = True
        counter = 0
        while True:
            sealed = self._input.read(ENCRYPTED_CHUNK_SIZE)
            full = len(sealed) == ENCRYPTED_CHUNK_SIZE
            eof = self._input.at_eof()
            if full and not eof:
                plain = self._open(counter, sealed, last=False)
                if plain is None:
                    if self._open(counter, sealed, last=True) is not None:
                        raise TamperedStream(
                            "age payload has data after its final chunk", self.verified_bytes
                        )
                    raise TamperedStream(
                        f"age payload chunk {counter} failed authentication", self.verified_bytes
                    )
                self.verified_bytes += len(plain)
                yield plain
                counter += 1
                continue
            if len(sealed) < TAG_SIZE:
                raise TruncatedStream(
                    f"age file ends before its final chunk: {self.verified_bytes} bytes verified",
                    self.verified_bytes,
                )
            plain = self._open(counter, sealed, last=True)
            if plain is not None:
                if not plain and counter > 0:
                    raise AgeFormatError("age payload has an empty final chunk after data")
                self.verified_bytes += len(plain)
                if plain:
                    yield plain
                return
            if full:
                plain = self._open(counter, sealed, last=False)
                if plain is None:
                    raise TamperedStream(
                        f"age payload chunk {counter} failed authentication", self.verified_bytes
                    )
                self.verified_bytes += len(plain)
                yield plain
                raise TruncatedStream(
                    f"age file ends before its final chunk: {self.verified_bytes} bytes verified",
                    self.verified_bytes,
                )
            raise TruncatedStream(
                f"age final chunk is incomplete or altered: {self.verified_bytes} bytes verified",
                self.verified_bytes,
            )


def decrypt_all(source: Source, identities: Sequence[str]) -> bytes:
    """Whole plaintext of a small age file (tests, key deliveries). Raises as the reader."""
    return b"".join(AgeStreamReader(source, identities))
