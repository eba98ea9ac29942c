"""The sealed store: clips written as age files sealed to [epoch recipient, owner].

Layout, states and recovery rules: docs/adr/0005-storage-layout.md. In short: a clip's
row is written ``recording`` before its ``.part`` file exists; at finish the final chunk
is written and fsync'd, the row becomes ``sealed`` (with end, size and SHA-256 of the
ciphertext), then the file is renamed to ``.age`` and the directory fsync'd. `recover`
puts every state a crash can leave back into agreement. A full disk ends the clip as
``truncated`` and makes the store refuse new clips (`StorageFull`) until retention or
the operator frees space; nothing in here lets a disk error corrupt the index.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import shutil
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from device.config import AgentConfig, StorageSettings
from device.errors import StorageFull
from device.vault.agekeys import X25519Recipient
from device.vault.agestream import AgeStreamWriter
from device.vault.clipfile import (
    CLIP_ID,
    PART_SUFFIX,
    SEALED_SUFFIX,
    HashingFileSink,
    clip_dir,
    fsync_dir,
    inspect,
    new_clip_id,
    part_file,
    sealed_file,
)
from device.vault.epochs import Epoch, EpochKeeper
from device.vault.errors import (
    ClipStateError,
    ClipWriteFailed,
    IndexFull,
    UnknownClip,
    VaultIndexError,
)
from device.vault.index import ClipEvent, ClipIndex, ClipRecord, ClipState
from device.vault.outbox import EscrowOutbox
from device.vault.retention import RetentionPlan, plan_retention

log = logging.getLogger(__name__)

_EVENT_KIND = re.compile(r"[a-z][a-z0-9_]{0,31}")
MAX_EVENTS = 1000
RESUME_FREE_BYTES = 4 * 1024 * 1024  # "space is back" only with room for a few seconds


def disk_free_bytes(path: Path) -> int:
    """Bytes available to us on the file system holding `path`. Raises OSError."""
    stat = os.statvfs(path)
    return stat.f_bavail * stat.f_frsize


@dataclass(frozen=True, slots=True)
class StoreHealth:
    """What the agent's status reports about storage."""

    storage_full: bool
    reason: str
    free_bytes: int
    used_bytes: int
    clips: int
    unsettled: int  # clips whose end could not be written yet (disk full); retried


@dataclass(frozen=True, slots=True)
class RecoveryReport:
    truncated: tuple[str, ...] = ()  # .part files kept as truncated clips
    removed_empty: tuple[str, ...] = ()  # .part files holding nothing beyond the header
    completed: tuple[str, ...] = ()  # sealed rows whose rename had not happened
    dropped_rows: tuple[str, ...] = ()  # rows whose file was gone
    adopted: tuple[str, ...] = ()  # files without a row, given one (their epoch is known)
    quarantined: tuple[str, ...] = ()  # files nobody can place, moved to orphans/

    @property
    def clean(self) -> bool:
        return not any(
            (self.truncated, self.removed_empty, self.completed, self.dropped_rows,
             self.adopted, self.quarantined)
        )

    def __str__(self) -> str:
        """What recovery did, in words (for the log), e.g. "1 clip kept as truncated
        (power cut mid-clip): 20260504T093000Z-ab12cd34"."""
        said = []
        for ids, what in (
            (self.truncated, "kept as truncated (power cut mid-clip)"),
            (self.removed_empty, "removed (held nothing beyond the header)"),
            (self.completed, "completed (sealed, not yet renamed)"),
            (self.dropped_rows, "dropped from the index (the file was gone)"),
            (self.adopted, "added to the index (a file without a row)"),
            (self.quarantined, "moved to orphans/ (cannot be placed)"),
        ):
            if ids:
                clips = "clip" if len(ids) == 1 else "clips"
                said.append(f"{len(ids)} {clips} {what}: {', '.join(ids)}")
        return "; ".join(said) or "nothing to do"


@dataclass(slots=True)
class _Recovery:
    truncated: list[str] = field(default_factory=list)
    removed_empty: list[str] = field(default_factory=list)
    completed: list[str] = field(default_factory=list)
    dropped_rows: list[str] = field(default_factory=list)
    adopted: list[str] = field(default_factory=list)
    quarantined: list[str] = field(default_factory=list)

    def freeze(self) -> RecoveryReport:
        return RecoveryReport(
            tuple(self.truncated), tuple(self.removed_empty), tuple(self.completed),
            tuple(self.dropped_rows), tuple(self.adopted), tuple(self.quarantined),
        )


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
            self._store._publish(self.clip_id)
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
        self._store._discard(self.clip_id)

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


class SealedStore:
    """Clips sealed on the device, their index and their retention.

    Every method raises VaultIndexError when the index fails; file-system errors other
    than a full disk surface as ClipWriteFailed or OSError where stated.
    """

    def __init__(
        self,
        *,
        root: Path,
        owner_recipient: str,
        epochs: EpochKeeper,
        clock: Callable[[], datetime],
        limits: StorageSettings,
        index: ClipIndex | None = None,
        disk_free: Callable[[Path], int] = disk_free_bytes,
    ) -> None:
        X25519Recipient.parse(owner_recipient)  # raises InvalidAgeKey early
        self.root = root
        self.clips_dir = root / "clips"
        self.orphans_dir = root / "orphans"
        self.clips_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.owner_recipient = owner_recipient
        self.index = index if index is not None else ClipIndex(root / "index.sqlite")
        self.epochs = epochs
        self._clock = clock
        self.limits = limits
        self._disk_free = disk_free
        self._lock = threading.RLock()
        self._writers: dict[str, ClipWriter] = {}
        self._unsettled: dict[str, list[ClipEvent]] = {}
        self._unfinished: dict[str, tuple[datetime, list[ClipEvent], int, str]] = {}
        self._full_reason = ""

    # -- clips -------------------------------------------------------------------

    def open_clip(self, start: datetime) -> ClipWriter:
        """Start a clip. Raises StorageFull when retention cannot make room or the disk is
        full, ValueError for a naive `start`, ClipWriteFailed when the file cannot be
        created, EscrowError / OutboxError when a new epoch key cannot be escrowed."""
        if start.tzinfo is None:
            raise ValueError("start must be an aware datetime")
        with self._lock:
            self._settle_pending()
            plan = self.enforce_retention()
            if plan.blocked:
                raise StorageFull(plan.reason)
            epoch = self.epochs.current()
            clip_id = new_clip_id(start)
            directory = clip_dir(self.clips_dir, clip_id)
            try:
                self.index.insert_recording(clip_id, start.astimezone(UTC), epoch.id)
            except IndexFull as exc:
                self._mark_full("disk full: the clip index cannot grow")
                raise StorageFull(f"disk full: the clip index cannot grow ({exc})") from exc
            try:
                if not directory.exists():
                    directory.mkdir(mode=0o700)
                    fsync_dir(self.clips_dir)
                fd = os.open(
                    part_file(self.clips_dir, clip_id),
                    os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC,
                    0o600,
                )
            except OSError as exc:
                self.index.delete([clip_id])
                if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                    self._mark_full("disk full: cannot create a clip file")
                    raise StorageFull("disk full: cannot create a clip file") from exc
                raise ClipWriteFailed(f"cannot create clip file: {exc.strerror}") from exc
            try:
                fsync_dir(directory)
                writer = ClipWriter(self, clip_id, start.astimezone(UTC), epoch, fd)
            except OSError as exc:
                os.close(fd)
                self._discard(clip_id)
                if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                    self._mark_full("disk full: cannot write a clip header")
                    raise StorageFull("disk full: cannot write a clip header") from exc
                raise ClipWriteFailed(f"cannot write clip header: {exc.strerror}") from exc
            self._writers[clip_id] = writer
            if self._full_reason:
                log.info("sealed store: a clip opened again; recording resumes")
                self._full_reason = ""
            return writer

    def _finished(self, writer: ClipWriter) -> None:
        with self._lock:
            self._writers.pop(writer.clip_id, None)

    def _publish(self, clip_id: str) -> None:
        part = part_file(self.clips_dir, clip_id)
        os.replace(part, sealed_file(self.clips_dir, clip_id))
        fsync_dir(part.parent)

    def _discard(self, clip_id: str) -> None:
        for path in (part_file(self.clips_dir, clip_id), sealed_file(self.clips_dir, clip_id)):
            path.unlink(missing_ok=True)
        self.index.delete([clip_id])

    def _settle_failed(self, clip_id: str, events: list[ClipEvent]) -> None:
        with self._lock:
            self._unsettled[clip_id] = list(events)
            self._settle_pending()

    def _defer_finish(
        self, clip_id: str, end: datetime, events: list[ClipEvent], size: int, digest: str
    ) -> None:
        with self._lock:
            self._unfinished[clip_id] = (end, list(events), size, digest)

    def _settle_pending(self) -> None:
        """Complete rows that could not be written at finish, and end clips whose writer
        failed (truncated, or removed when empty). Retried later when the disk or index
        is still failing."""
        for clip_id, (end, evts, size, digest) in list(self._unfinished.items()):
            try:
                self.index.finish(
                    clip_id, end=end, events=evts, size=size, sha256=digest, complete=True
                )
                self._publish(clip_id)
            except (OSError, VaultIndexError) as exc:
                log.warning("clip %s: cannot record its end yet (%s); will retry", clip_id, exc)
                continue
            del self._unfinished[clip_id]
        for clip_id, events in list(self._unsettled.items()):
            try:
                self._settle_part(clip_id, events, _Recovery())
            except (OSError, VaultIndexError) as exc:
                log.warning("clip %s: cannot settle yet (%s); will retry", clip_id, exc)
                continue
            del self._unsettled[clip_id]

    def _settle_part(self, clip_id: str, events: Sequence[ClipEvent], report: _Recovery) -> None:
        part = part_file(self.clips_dir, clip_id)
        disk = inspect(part)
        if not disk.has_payload:
            part.unlink()
            fsync_dir(part.parent)
            self.index.delete([clip_id])
            report.removed_empty.append(clip_id)
            return
        record = self.index.get(clip_id)
        evts = list(events) if events else list(record.events if record else ())
        self.index.finish(
            clip_id, end=disk.mtime, events=evts, size=disk.size, sha256=disk.sha256,
            complete=False,
        )
        self._publish(clip_id)
        report.truncated.append(clip_id)

    def _mark_full(self, reason: str) -> None:
        if reason != self._full_reason:  # log a change of condition, not every retry
            log.error("sealed store: %s", reason)
        self._full_reason = reason

    # -- retention ---------------------------------------------------------------

    def enforce_retention(self) -> RetentionPlan:
        """Plan and execute retention now. Raises VaultIndexError; file errors are logged."""
        with self._lock:
            now = self._clock()
            self.index.release_expired_holds(now)
            clips = self.index.clips()
            try:
                free = self._disk_free(self.root)
            except OSError as exc:
                log.error("sealed store: cannot read free space: %s", exc)
                free = 0
            plan = plan_retention(
                clips,
                now=now,
                max_age=timedelta(days=self.limits.max_age_days),
                quota_bytes=self.limits.quota_bytes,
                free_bytes=free,
                min_free_bytes=self.limits.min_free_bytes,
            )
            if plan.remove:
                self._remove(plan.remove)
                log.info(
                    "retention removed %d clips (%d bytes)", len(plan.remove), plan.freed_bytes
                )
            if plan.blocked:
                self._mark_full(plan.reason)
            elif self._full_reason and free + plan.freed_bytes >= RESUME_FREE_BYTES:
                log.info("sealed store: space is back; recording resumes")
                self._full_reason = ""
            return plan

    def _remove(self, clip_ids: Iterable[str]) -> None:
        ids = list(clip_ids)
        dirs: set[Path] = set()
        for clip_id in ids:
            path = sealed_file(self.clips_dir, clip_id)
            try:
                path.unlink(missing_ok=True)
            except OSError as exc:
                log.error("retention: cannot remove %s: %s", path, exc)
            dirs.add(path.parent)
        self.index.delete(ids)
        for directory in dirs:
            try:
                fsync_dir(directory)
                if not any(directory.iterdir()):
                    directory.rmdir()
            except OSError:
                continue

    @property
    def escrow_outbox(self) -> EscrowOutbox:
        """The outbox holding sealed epoch keys until the cloud acknowledges them (the
        release side publishes it and drops a blob on `escrow-ack`)."""
        return self.epochs.outbox

    @property
    def health(self) -> StoreHealth:
        with self._lock:
            try:
                free = self._disk_free(self.root)
            except OSError:
                free = 0
            clips = self.index.clips()
            return StoreHealth(
                storage_full=bool(self._full_reason),
                reason=self._full_reason,
                free_bytes=free,
                used_bytes=sum(c.bytes for c in clips),
                clips=len(clips),
                unsettled=len(self._unsettled) + len(self._unfinished),
            )

    # -- queries and marks -----------------------------------------------------

    def list_clips(
        self,
        since: datetime | None = None,
        until: datetime | None = None,
        states: Iterable[ClipState] | None = None,
    ) -> list[ClipRecord]:
        """Clips overlapping [since, until), oldest first."""
        return self.index.clips(since, until, states)

    def get(self, clip_id: str) -> ClipRecord:
        """Raises UnknownClip."""
        record = self.index.get(clip_id)
        if record is None:
            raise UnknownClip(f"no clip {clip_id!r:.60}")
        return record

    def sealed_path(self, clip_id: str) -> Path:
        """Path of a finished clip's age file. Raises UnknownClip, ClipStateError."""
        record = self.get(clip_id)
        if record.state is ClipState.RECORDING:
            raise ClipStateError(f"clip {clip_id} is still recording")
        return sealed_file(self.clips_dir, clip_id)

    def hold(self, clip_ids: Iterable[str], until: datetime) -> None:
        """Pin clips against retention until `until` (a later hold never shortens one)."""
        ids = [self.get(c).id for c in clip_ids]
        self.index.set_hold(ids, until)

    def mark_pending_upload(self, clip_ids: Iterable[str]) -> None:
        self.index.set_pending_upload([self.get(c).id for c in clip_ids], True)

    def clear_pending_upload(self, clip_ids: Iterable[str]) -> None:
        self.index.set_pending_upload([self.get(c).id for c in clip_ids], False)

    def set_state(self, clip_ids: Iterable[str], state: ClipState) -> None:
        """Set a finished clip's state (e.g. ``released``). Raises ClipStateError for a
        recording clip or for setting ``recording``."""
        if state is ClipState.RECORDING:
            raise ClipStateError("only the store opens recording clips")
        ids = []
        for clip_id in clip_ids:
            if self.get(clip_id).state is ClipState.RECORDING:
                raise ClipStateError(f"clip {clip_id} is still recording")
            ids.append(clip_id)
        self.index.set_state(ids, state)

    # -- recovery ----------------------------------------------------------------

    def recover(self) -> RecoveryReport:
        """Make the index and the files agree after a crash (ADR 0005). Call at start-up,
        before the first clip. Raises ClipStateError while clips are open."""
        with self._lock:
            if self._writers:
                raise ClipStateError("recover() while clips are being written")
            self._settle_pending()  # what this process still knows beats guessing from disk
            report = _Recovery()
            files: dict[str, dict[str, Path]] = {}
            for directory in sorted(p for p in self.clips_dir.iterdir()):
                if not directory.is_dir():
                    self._quarantine(directory, "not a clip directory", report)
                    continue
                for path in sorted(directory.iterdir()):
                    name = path.name
                    for suffix in (PART_SUFFIX, SEALED_SUFFIX):
                        if name.endswith(suffix) and CLIP_ID.fullmatch(name[: -len(suffix)]):
                            clip_id = name[: -len(suffix)]
                            if clip_dir(self.clips_dir, clip_id) == directory:
                                files.setdefault(clip_id, {})[suffix] = path
                                break
                    else:
                        self._quarantine(path, "not a clip file", report)
            for record in self.index.clips():
                self._recover_row(record, files.pop(record.id, {}), report)
            for clip_id, found in files.items():
                self._adopt(clip_id, found, report)
            self._unsettled.clear()
            self._unfinished.clear()
            result = report.freeze()
            if not result.clean:
                log.warning("sealed store recovery: %s", result)
            return result

    def _recover_row(self, record: ClipRecord, found: dict[str, Path], report: _Recovery) -> None:
        sealed, part = found.get(SEALED_SUFFIX), found.get(PART_SUFFIX)
        if record.state is ClipState.RECORDING:
            if part is not None:
                if sealed is not None:  # cannot happen in our order; keep the finished one
                    part.unlink()
                else:
                    self._settle_part(record.id, record.events, report)
                    return
            if sealed is not None:  # a failed clip renamed before its row could be written
                disk = inspect(sealed)
                self.index.finish(
                    record.id, end=disk.mtime, events=record.events, size=disk.size,
                    sha256=disk.sha256, complete=False,
                )
                report.truncated.append(record.id)
                return
            self.index.delete([record.id])
            report.dropped_rows.append(record.id)
            return
        if sealed is not None:
            if part is not None:
                part.unlink()
            return
        if part is not None:  # sealed in the index, crash before the rename
            disk = inspect(part)
            if disk.size == record.bytes and disk.sha256 == record.sha256:
                self._publish(record.id)
                report.completed.append(record.id)
            else:
                self._settle_part(record.id, record.events, report)
            return
        log.error("clip %s (%s) has no file any more; dropping its row", record.id, record.state)
        self.index.delete([record.id])
        report.dropped_rows.append(record.id)

    def _adopt(self, clip_id: str, found: dict[str, Path], report: _Recovery) -> None:
        path = found.get(SEALED_SUFFIX) or found[PART_SUFFIX]
        start = datetime.strptime(clip_id[:16], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        epoch = next((e for e in self.index.epochs() if e.start <= start < e.end), None)
        if epoch is None:
            for other in found.values():
                self._quarantine(other, "no index row and no epoch covers its start", report)
            return
        disk = inspect(path)
        if not disk.has_payload:
            for other in found.values():
                other.unlink()
            report.removed_empty.append(clip_id)
            return
        self.index.insert_recording(clip_id, start, epoch.id)
        self.index.finish(
            clip_id, end=disk.mtime, events=(), size=disk.size, sha256=disk.sha256,
            complete=False,
        )
        if path.name.endswith(PART_SUFFIX):
            self._publish(clip_id)
        for other in found.values():
            if other != path:
                other.unlink(missing_ok=True)
        report.adopted.append(clip_id)

    def _quarantine(self, path: Path, reason: str, report: _Recovery) -> None:
        self.orphans_dir.mkdir(exist_ok=True, mode=0o700)
        target = self.orphans_dir / path.name
        if target.exists():
            target = self.orphans_dir / f"{path.name}.{os.getpid()}-{id(report)}"
        log.warning("sealed store: moving %s to %s: %s", path, self.orphans_dir, reason)
        shutil.move(str(path), str(target))
        report.quarantined.append(path.name)

    def close(self) -> None:
        """Abort nothing: open writers stay recoverable as truncated. Closes the index."""
        self.index.close()


def vault_root(config: AgentConfig) -> Path:
    """Where the store lives: ``{state_dir}/vault``."""
    return config.agent.state_dir / "vault"


def open_store(
    config: AgentConfig,
    *,
    clock: Callable[[], datetime] | None = None,
) -> SealedStore:
    """Build the store from the agent's configuration under ``{state_dir}/vault``.

    Raises InvalidAgeKey (owner or escrow recipient), VaultIndexError, OutboxError.
    """
    now = clock if clock is not None else (lambda: datetime.now(UTC))
    root = vault_root(config)
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    index = ClipIndex(root / "index.sqlite")
    outbox = EscrowOutbox(root / "outbox")
    keeper = EpochKeeper(
        index,
        outbox,
        config.keys.escrow_recipient,
        config.keys.epoch_s,
        now,
        device_id=config.agent.device_id,
    )
    return SealedStore(
        root=root,
        owner_recipient=config.keys.owner_recipient,
        epochs=keeper,
        clock=now,
        limits=config.storage,
        index=index,
    )
