"""The owner's local record of release notices: one JSON line per notice, by jti.

Layout: ``<state>/notices.jsonl`` (0600, in a 0700 directory) and ``<state>/lock``.
A line is ``{"v": 1, "received_at": "<RFC 3339>", "notice": {<the notice payload>}}``;
the notice is stored as `protocol.messages.NoticeMessage` writes it and is read back
through `parse_notice`, so the ledger holds nothing the protocol would refuse.

Durability: a notice is appended with one ``write`` and ``fsync``ed before `add`
returns, and the caller acknowledges the MQTT message only after that. A crash at any
instant leaves either the whole line on disk or the message unacknowledged at the
broker (delivered again on the next connection). A crash in the middle of a write can
leave a last line without its newline: it is cut off when the ledger is opened again
(that notice was never acknowledged). Any other unreadable line is an error naming
the file and the line: the ledger is never rewritten behind the owner's back.

One reader at a time: `open_ledger` takes an exclusive `flock` on ``<state>/lock`` (two
readers would also take the MQTT session from each other).
"""

from __future__ import annotations

import contextlib
import enum
import errno
import fcntl
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from owner_app.errors import StateError
from protocol.errors import MessageError
from protocol.keys import canonical_json
from protocol.messages import NoticeMessage, parse_notice
from protocol.timefmt import format_time, parse_time

LEDGER_VERSION: Final = 1
LEDGER_NAME: Final = "notices.jsonl"
LOCK_NAME: Final = "lock"


@dataclass(frozen=True, slots=True)
class Entry:
    """One stored notice and when this machine received it."""

    notice: NoticeMessage
    received_at: datetime

    def to_payload(self) -> dict[str, Any]:
        notice: dict[str, Any] = json.loads(self.notice.to_bytes())
        return {"v": LEDGER_VERSION, "received_at": format_time(self.received_at),
                "notice": notice}


class Added(enum.Enum):
    new = "new"  # stored now
    duplicate = "duplicate"  # the same notice was stored before (e.g. the retained copy)
    conflict = "conflict"  # another notice with this jti was stored before; it is kept


def default_state_dir(device_id: str) -> Path:
    """``$XDG_STATE_HOME/doorbell-owner/<device-id>``, ``~/.local/state/...`` by default."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "doorbell-owner" / device_id


def _entry(line: bytes, where: str) -> Entry:
    try:
        item = json.loads(line)
        if not isinstance(item, dict) or set(item) != {"v", "received_at", "notice"}:
            raise ValueError("not a ledger entry")
        if item["v"] != LEDGER_VERSION:
            raise ValueError(f"ledger version {item['v']!r:.20} is not {LEDGER_VERSION}")
        received_at = parse_time(item["received_at"])
        notice = parse_notice(canonical_json(item["notice"]))
    except (ValueError, TypeError, MessageError) as exc:
        raise StateError(f"{where}: unreadable ledger entry ({exc})") from None
    return Entry(notice=notice, received_at=received_at)


class Ledger:
    """The open ledger of one device; `open_ledger` makes one."""

    def __init__(self, directory: Path, entries: list[Entry]) -> None:
        self.directory = directory
        self.path = directory / LEDGER_NAME
        self._entries = entries
        self._by_jti = {e.notice.jti: e for e in entries}
        self.existed = bool(entries) or self.path.exists()

    @staticmethod
    def load(path: Path) -> list[Entry]:
        """The entries of a ledger file (none when it does not exist); cuts off a torn
        last line. Raises StateError naming the file and line."""
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise StateError(f"{path}: cannot read the ledger ({exc.strerror})") from None
        complete, _, torn = data.rpartition(b"\n")
        if torn:  # a write cut short by a crash; that notice was never acknowledged
            try:
                with path.open("r+b") as handle:
                    handle.truncate(len(complete) + 1 if complete else 0)
                    os.fsync(handle.fileno())
            except OSError as exc:
                raise StateError(f"{path}: cannot cut off a torn last line "
                                 f"({exc.strerror})") from None
        entries: list[Entry] = []
        seen: set[str] = set()
        for number, line in enumerate(complete.split(b"\n") if complete else [], start=1):
            entry = _entry(line, f"{path}:{number}")
            if entry.notice.jti in seen:
                raise StateError(f"{path}:{number}: jti {entry.notice.jti} is stored twice")
            seen.add(entry.notice.jti)
            entries.append(entry)
        return entries

    def entries(self) -> list[Entry]:
        """Every stored notice, in the order received."""
        return list(self._entries)

    def get(self, jti: str) -> Entry | None:
        return self._by_jti.get(jti)

    def add(self, notice: NoticeMessage, received_at: datetime) -> Added:
        """Store `notice` unless its jti is stored already; durable (fsync) when it
        returns `Added.new`. Raises StateError when the write fails."""
        known = self._by_jti.get(notice.jti)
        if known is not None:
            return Added.duplicate if known.notice == notice else Added.conflict
        entry = Entry(notice=notice, received_at=received_at)
        line = json.dumps(entry.to_payload(), sort_keys=True, ensure_ascii=False) + "\n"
        created = not self.path.exists()
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                size = os.fstat(fd).st_size
                data = line.encode("utf-8")
                try:
                    if os.write(fd, data) != len(data):
                        raise OSError(errno.ENOSPC, "short write")
                    os.fsync(fd)
                except OSError:
                    with contextlib.suppress(OSError):  # no half line before the next one
                        os.ftruncate(fd, size)
                    raise
            finally:
                os.close(fd)
            if created:  # the new file's name must be durable too
                dir_fd = os.open(self.directory, os.O_RDONLY)
                try:
                    os.fsync(dir_fd)
                finally:
                    os.close(dir_fd)
        except OSError as exc:
            raise StateError(f"{self.path}: cannot append the notice for {notice.jti} "
                             f"({exc.strerror})") from None
        self._entries.append(entry)
        self._by_jti[notice.jti] = entry
        return Added.new


@contextlib.contextmanager
def open_ledger(directory: Path) -> Iterator[Ledger]:
    """Create `directory` (0700) if needed, lock it, read the ledger. Raises StateError
    naming the path (unwritable, locked by another reader, corrupt)."""
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        lock_fd = os.open(directory / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise StateError(f"state directory {directory}: {exc.strerror}") from None
    try:
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StateError(
                f"another doorbell-owner is reading notices into {directory} "
                f"(it holds {directory / LOCK_NAME}); stop it first"
            ) from None
        yield Ledger(directory, Ledger.load(directory / LEDGER_NAME))
    finally:
        os.close(lock_fd)
