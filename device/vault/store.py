"""The sealed store: clips written as age files sealed to [epoch recipient, owner].

Layout, states and recovery rules: docs/adr/0005-storage-layout.md. In short: a clip's
row is written ``recording`` before its ``.part`` file exists; at finish the final chunk
is written and fsync'd, the row becomes ``sealed`` (with end, size and SHA-256 of the
ciphertext), then the file is renamed to ``.age`` and the directory fsync'd. `recover`
puts every state a crash can leave back into agreement. A full disk ends the clip as
``truncated`` and makes the store refuse new clips (`StorageFull`) until retention or
the operator frees space; nothing in here lets a disk error corrupt the index.

One clip is written by a `ClipWriter` (`device/vault/writer.py`); the files and their
rows are kept in agreement by `ClipFiles` (`device/vault/recovery.py`).
"""

from __future__ import annotations

import errno
import logging
import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from device.config import AgentConfig, StorageSettings
from device.errors import StorageFull
from device.vault.agekeys import X25519Recipient
from device.vault.clipfile import (
    clip_dir,
    fsync_dir,
    new_clip_id,
    part_file,
    sealed_file,
)
from device.vault.epochs import EpochKeeper
from device.vault.errors import (
    ClipStateError,
    ClipWriteFailed,
    IndexFull,
    UnknownClip,
    VaultIndexError,
)
from device.vault.index import ClipEvent, ClipIndex, ClipRecord, ClipState
from device.vault.outbox import EscrowOutbox
from device.vault.recovery import ClipFiles, RecoveryNotes, RecoveryReport
from device.vault.retention import RetentionPlan, plan_retention
from device.vault.writer import ClipWriter

log = logging.getLogger(__name__)

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
        self.files = ClipFiles(self.clips_dir, self.orphans_dir, self.index)
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
                self.files.discard(clip_id)
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
                self.files.publish(clip_id)
            except (OSError, VaultIndexError) as exc:
                log.warning("clip %s: cannot record its end yet (%s); will retry", clip_id, exc)
                continue
            del self._unfinished[clip_id]
        for clip_id, events in list(self._unsettled.items()):
            try:
                self.files.settle_part(clip_id, events, RecoveryNotes())
            except (OSError, VaultIndexError) as exc:
                log.warning("clip %s: cannot settle yet (%s); will retry", clip_id, exc)
                continue
            del self._unsettled[clip_id]

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
            report = RecoveryNotes()
            self.files.reconcile(report)
            self._unsettled.clear()
            self._unfinished.clear()
            result = report.freeze()
            if not result.clean:
                log.warning("sealed store recovery: %s", result)
            return result

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
