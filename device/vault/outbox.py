"""The escrow outbox: sealed epoch-key messages kept on disk until the cloud acknowledges.

One file per message, written atomically (temp file, fsync, ``os.replace``, fsync of
the directory), named ``<ns timestamp>-<epoch id>.json`` so that name order is age
order. A file that cannot be read as an escrow message is moved to ``quarantine/`` with
a ``.reason`` file beside it and a logged warning; it never stops the agent. The
messages hold only age ciphertext sealed to the cloud's escrow key, never a secret.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from device.vault.errors import OutboxError

log = logging.getLogger(__name__)

_NAME = re.compile(r"(\d{19,20})-([0-9]{1,20}-[0-9a-f]{8})\.json")
MAX_MESSAGE_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class OutboxItem:
    epoch_id: str
    payload: bytes  # the UTF-8 JSON escrow message, ready to publish
    path: Path


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write `data` to `path` atomically and durably. Raises OSError."""
    tmp = path.with_name(f".tmp-{path.name}-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


class EscrowOutbox:
    """Durable queue of escrow messages in `directory`. Raises OutboxError on disk errors."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.quarantine = directory / "quarantine"
        self._listeners: list[Callable[[], None]] = []
        try:
            self.quarantine.mkdir(parents=True, exist_ok=True, mode=0o700)
            for stale in directory.glob(".tmp-*"):  # an interrupted put never completed
                stale.unlink()
        except OSError as exc:
            raise OutboxError(f"cannot prepare escrow outbox {directory}: {exc}") from exc

    def put(self, epoch_id: str, payload: bytes) -> Path:
        """Store one message durably. Raises OutboxError (also for a malformed message)."""
        self._check(epoch_id, payload)
        path = self.directory / f"{self._next_sequence():020d}-{epoch_id}.json"
        try:
            write_atomic(path, payload)
        except OSError as exc:
            raise OutboxError(f"cannot write escrow message for epoch {epoch_id}: {exc}") from exc
        for listener in list(self._listeners):
            listener()
        return path

    def on_put(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call `listener` (which must not block or raise) after each message is stored:
        the release side's publisher sleeps until there is something to send. Returns
        the call that stops it."""
        self._listeners.append(listener)

        def remove() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return remove

    def _next_sequence(self) -> int:
        """Wall-clock nanoseconds, but always above every queued name: a Pi's clock may
        step backwards when it first synchronizes, and the order must still be age order."""
        highest = 0
        for path in self.directory.glob("*.json"):
            match = _NAME.fullmatch(path.name)
            if match is not None:
                highest = max(highest, int(match.group(1)))
        return max(time.time_ns(), highest + 1)

    @staticmethod
    def _check(epoch_id: str, payload: bytes) -> None:
        if not re.fullmatch(r"[0-9]{1,20}-[0-9a-f]{8}", epoch_id):
            raise OutboxError(f"not an epoch id: {epoch_id!r:.40}")
        if len(payload) > MAX_MESSAGE_BYTES:
            raise OutboxError("escrow message larger than 64 KiB")
        try:
            message = json.loads(payload)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise OutboxError(f"escrow message is not JSON: {exc}") from exc
        if not isinstance(message, dict) or message.get("epoch") != epoch_id:
            raise OutboxError("escrow message does not name its epoch")

    def _quarantine(self, path: Path, reason: str) -> None:
        log.warning("escrow outbox: quarantined %s: %s", path.name, reason)
        try:
            target = self.quarantine / path.name
            os.replace(path, target)
            (self.quarantine / f"{path.name}.reason").write_text(reason + "\n", encoding="utf-8")
            fsync_dir(self.directory)
        except OSError as exc:
            log.error("escrow outbox: cannot quarantine %s: %s", path.name, exc)

    def pending(self) -> list[OutboxItem]:
        """Messages not yet acknowledged, oldest first. Corrupt files are quarantined."""
        items: list[OutboxItem] = []
        try:
            names = sorted(p.name for p in self.directory.iterdir() if p.is_file())
        except OSError as exc:
            raise OutboxError(f"cannot list escrow outbox {self.directory}: {exc}") from exc
        for name in names:
            if name.startswith(".tmp-"):
                continue
            path = self.directory / name
            match = _NAME.fullmatch(name)
            if match is None:
                self._quarantine(path, "file name is not <timestamp>-<epoch id>.json")
                continue
            try:
                if path.stat().st_size > MAX_MESSAGE_BYTES:
                    self._quarantine(path, "larger than 64 KiB")
                    continue
                payload = path.read_bytes()
            except OSError as exc:
                self._quarantine(path, f"unreadable: {exc.strerror}")
                continue
            try:
                self._check(match.group(2), payload)
            except OutboxError as exc:
                self._quarantine(path, str(exc))
                continue
            items.append(OutboxItem(match.group(2), payload, path))
        return items

    def acknowledge(self, epoch_id: str) -> bool:
        """Drop the message(s) for `epoch_id`. True when one was removed. Raises OutboxError."""
        removed = False
        for item in self.pending():
            if item.epoch_id == epoch_id:
                try:
                    item.path.unlink()
                except FileNotFoundError:
                    continue
                except OSError as exc:
                    raise OutboxError(f"cannot remove escrow message {item.path}: {exc}") from exc
                removed = True
        if removed:
            try:
                fsync_dir(self.directory)
            except OSError as exc:
                raise OutboxError(f"cannot sync escrow outbox {self.directory}: {exc}") from exc
        return removed
