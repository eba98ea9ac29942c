"""The device audit log: append-only, hash-chained JSON lines.

Every token received (with the sha256 of its bytes), every decision (with its code) and
every upload is one line::

    {"n": 7, "at": "2026-...Z", "event": "decision", "data": {...},
     "prev": "<hash of line 6>", "hash": "<sha256 of this line without 'hash'>"}

`hash` is the lowercase hex SHA-256 of `prev` followed by the canonical JSON (sorted
keys, no spaces) of the line without its `hash` member; the first line's `prev` is 64
zeros. Removing, reordering or editing any line breaks the chain at that line, which
`verify_log` names. Each line is written with one `write` on an O_APPEND descriptor and
fsync'd before `append` returns. A line torn by a power cut (no final newline) is cut
off when the log is next opened, and that is itself recorded as a `torn_tail` line. A
write that fails part-way while the agent runs (a full disk, a file size limit, a failed
fsync) is cut back before `append` raises, so the next line starts where the last whole
one ended; if even that cut fails, every later `append` tries it again first and raises
until it succeeds, rather than write after a fragment.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from device.release.errors import AuditLogBroken, ReleaseStateError

GENESIS = "0" * 64
_MAX_LINE = 1024 * 1024  # a line longer than this is not one we wrote


def _canonical(record: Mapping[str, Any]) -> bytes:
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def line_hash(prev: str, record_without_hash: Mapping[str, Any]) -> str:
    return hashlib.sha256(prev.encode("ascii") + _canonical(record_without_hash)).hexdigest()


class AuditLog:
    """An open audit log. Thread-safe.

    Raises ReleaseStateError when the file cannot be opened, read or written, and
    AuditLogBroken when the last intact line is not one this format produces.
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._fragment_from: int | None = None  # where a failed append's bytes begin
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        except OSError as exc:
            raise ReleaseStateError(f"cannot open audit log {path}: {exc.strerror}") from exc
        try:
            self._n, self._prev, torn = self._recover_tail()
        except BaseException:
            os.close(self._fd)
            raise
        if torn is not None:
            self.append("torn_tail", torn)

    @property
    def path(self) -> Path:
        return self._path

    def _recover_tail(self) -> tuple[int, str, dict[str, Any] | None]:
        try:
            size = os.fstat(self._fd).st_size
            if size == 0:
                return 0, GENESIS, None
            window = min(size, 2 * _MAX_LINE)
            data = os.pread(self._fd, window, size - window)
        except OSError as exc:
            raise ReleaseStateError(f"cannot read audit log {self._path}: {exc.strerror}") from exc
        torn: dict[str, Any] | None = None
        if not data.endswith(b"\n"):
            cut = data.rfind(b"\n")
            tail = data[cut + 1 :]
            torn = {"bytes": len(tail), "sha256": hashlib.sha256(tail).hexdigest()}
            keep = size - len(tail)
            try:
                os.ftruncate(self._fd, keep)
                os.fsync(self._fd)
            except OSError as exc:
                raise ReleaseStateError(f"cannot cut torn audit line: {exc.strerror}") from exc
            data = data[: cut + 1]
            if not data:
                return 0, GENESIS, torn
        last = data[:-1].rsplit(b"\n", 1)[-1]
        try:
            record = json.loads(last)
            n, digest = int(record["n"]), str(record["hash"])
        except (ValueError, KeyError, TypeError) as exc:
            raise AuditLogBroken(-1, f"last line of {self._path} is not an audit record") from exc
        return n, digest, torn

    def append(self, event: str, data: Mapping[str, Any]) -> str:
        """Write one line and fsync it; returns its hash. Raises ReleaseStateError."""
        with self._lock:
            self._cut_fragment()
            record: dict[str, Any] = {
                "n": self._n + 1,
                "at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
                "event": event,
                "data": dict(data),
                "prev": self._prev,
            }
            digest = line_hash(self._prev, record)
            record["hash"] = digest
            line = _canonical(record) + b"\n"
            try:
                end = os.fstat(self._fd).st_size
            except OSError as exc:
                raise ReleaseStateError(f"cannot append to audit log: {exc.strerror}") from exc
            try:
                written = os.write(self._fd, line)
                if written != len(line):
                    raise OSError(0, f"short write ({written} of {len(line)} bytes)")
                os.fsync(self._fd)
            except OSError as exc:
                # Part of the line may be in the file: cut back to the last whole line.
                self._fragment_from = end
                self._cut_fragment(raise_on_failure=False)
                raise ReleaseStateError(f"cannot append to audit log: {exc.strerror}") from exc
            self._n += 1
            self._prev = digest
            return digest

    def _cut_fragment(self, *, raise_on_failure: bool = True) -> None:
        """Truncate what a failed append left after the last whole line."""
        end = self._fragment_from
        if end is None:
            return
        try:
            os.ftruncate(self._fd, end)
            os.fsync(self._fd)
        except OSError as exc:
            if raise_on_failure:
                raise ReleaseStateError(
                    f"cannot cut a failed audit line from {self._path}: {exc.strerror}"
                ) from exc
            return
        self._fragment_from = None

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1


def verify_log(path: Path) -> int:
    """Check the whole chain; returns the number of lines.

    Raises AuditLogBroken naming the first broken line (1-based), ReleaseStateError when
    the file cannot be read.
    """
    prev = GENESIS
    count = 0
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise ReleaseStateError(f"cannot read audit log {path}: {exc.strerror}") from exc
    with handle:
        for number, raw in enumerate(handle, start=1):
            count = number
            if not raw.endswith(b"\n"):
                raise AuditLogBroken(number, "line is not terminated (torn write)")
            try:
                record = json.loads(raw)
            except ValueError as exc:
                raise AuditLogBroken(number, f"not JSON: {exc}") from exc
            if not isinstance(record, dict):
                raise AuditLogBroken(number, "not a JSON object")
            claimed = record.pop("hash", None)
            if record.get("n") != number:
                raise AuditLogBroken(number, f"line number {record.get('n')!r}, expected {number}")
            if record.get("prev") != prev:
                raise AuditLogBroken(number, "does not chain to the line before it")
            if not isinstance(claimed, str) or line_hash(prev, record) != claimed:
                raise AuditLogBroken(number, "hash does not match the line's content")
            prev = claimed
    return count
