"""Writing one clip: plaintext in, an age file sealed to [epoch recipient, owner] out.

A `ClipWriter` comes from `SealedStore.open_clip`; it streams into the clip's ``.part``
file and, at `finish`, hands the sealed file back to its store to be recorded and
renamed (docs/adr/0005-storage-layout.md). A disk error ends the clip at once.
"""

from __future__ import annotations

import errno
import logging
import os
import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from device.errors import StorageFull
from device.vault.agestream import AgeStreamWriter
from device.vault.clipfile import HashingFileSink
from device.vault.epochs import Epoch
from device.vault.errors import ClipWriteFailed, VaultIndexError
from device.vault.index import ClipEvent, ClipRecord

if TYPE_CHECKING:
    from device.vault.store import SealedStore

log = logging.getLogger(__name__)

_EVENT_KIND = re.compile(r"[a-z][a-z0-9_]{0,31}")
MAX_EVENTS = 1000


class ClipWriter:
    """One clip being sealed. Not thread-safe: one producer writes it.

    `write` and `finish` raise StorageFull (ENOSPC) or ClipWriteFailed (another disk
    error); by then the clip is already ended as ``truncated`` (or removed when it held
    nothing) and the writer is dead. Raises ValueError when used after finish/abort.
    """

    def __init__(
        self, store: SealedStore, clip_id: str, start: datetime, epoch: Epoch, fd: int
    ) -> None:
        self._store = store
        self.clip_id = clip_id
        self.start = start
        self.epoch = epoch
        self._fd: int | None = fd
        self._sink = HashingFileSink(fd)
        self._events: list[ClipEvent] = []
        self._done = False
        self._age = AgeStreamWriter(self._sink, [epoch.recipient, store.owner_recipient])

    @property
    def alive(self) -> bool:
        return not self._done

    @property
    def plaintext_bytes(self) -> int:
        return self._age.plaintext_bytes

    def _check(self) -> None:
        if self._done:
            raise ValueError(f"clip {self.clip_id} is already finished or aborted")

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Seal `data` into the clip. Raises StorageFull, ClipWriteFailed, ValueError."""
        self._check()
        try:
            self._age.write(data)
        except OSError as exc:
            self._fail(exc)

    def add_event(self, kind: str, at: datetime) -> None:
        """Record an event (e.g. ``button``) on the clip; kept in the index at once.

        Raises ValueError for a bad kind or naive time. An index write failure is logged
        and the event is kept in memory until finish.
        """
        self._check()
        if not _EVENT_KIND.fullmatch(kind):
            raise ValueError(f"event kind must match [a-z][a-z0-9_]{{0,31}}: {kind!r:.40}")
        if at.tzinfo is None:
            raise ValueError("event time must be an aware datetime")
        if len(self._events) >= MAX_EVENTS:
            raise ValueError(f"a clip holds at most {MAX_EVENTS} events")
        self._events.append(ClipEvent(kind, at.astimezone(UTC)))
        try:
            self._store.index.set_events(self.clip_id, self._events)
        except VaultIndexError as exc:
            log.warning("clip %s: event %s kept in memory for now: %s", self.clip_id, kind, exc)

    def finish(self, end: datetime) -> ClipRecord:
        """Seal the final chunk, fsync, record ``sealed`` and rename to ``.age``.

        Raises StorageFull / ClipWriteFailed (the clip is then ``truncated``),
        VaultIndexError (IndexFull on a full disk) when the index cannot record it: the
        sealed file is kept and its row is completed before the next clip opens.
        """
        self._check()
        if end.tzinfo is None:
            raise ValueError("end must be an aware datetime")
        try:
            self._age.close()
            self._sink.sync()
        except OSError as exc:
            self._fail(exc)
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)
        self._done = True
        self._store._finished(self)
        size, digest = self._sink.bytes, self._sink.hasher.hexdigest()
        try:
            self._store.index.finish(
                self.clip_id, end=end, events=self._events, size=size, sha256=digest,
                complete=True,
            )
        except VaultIndexError:
            # The file is complete; only its row is behind. Retried before the next clip.
            self._store._defer_finish(self.clip_id, end, self._events, size, digest)
            raise
        try:
            self._store.files.publish(self.clip_id)
        except OSError as exc:
            self._store._defer_finish(self.clip_id, end, self._events, size, digest)
            raise ClipWriteFailed(
                f"clip {self.clip_id} is sealed but could not be renamed ({exc.strerror}); "
                "retried before the next clip"
            ) from exc
        record = self._store.index.get(self.clip_id)
        if record is None:
            raise VaultIndexError(f"clip {self.clip_id} vanished from the index")
        return record

    def abort(self) -> None:
        """Discard the clip: its file and its row go. Idempotent."""
        if self._done:
            return
        self._done = True
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)
        self._store._finished(self)
        self._store.files.discard(self.clip_id)

    def _fail(self, exc: OSError) -> None:
        self._done = True
        fd, self._fd = self._fd, None
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                log.warning("clip %s: close after a write error failed", self.clip_id)
        self._store._finished(self)
        self._store._settle_failed(self.clip_id, self._events)
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            self._store._mark_full(f"disk full while writing clip {self.clip_id}")
            raise StorageFull(
                f"disk full while writing clip {self.clip_id}; it was ended as truncated "
                "(or removed if nothing beyond its header was written)"
            ) from exc
        raise ClipWriteFailed(
            f"writing clip {self.clip_id} failed ({exc.strerror}); it was ended as truncated"
        ) from exc
