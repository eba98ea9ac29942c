"""Keeping the clip files and their index rows in agreement (docs/adr/0005-storage-layout.md).

`ClipFiles` does the file side of the sealed store: it renames a finished ``.part`` to
``.age``, discards a clip, ends a failed clip as ``truncated``, and after a crash puts
every state the files and the rows can be left in back into agreement (`reconcile`),
writing what it did into a `RecoveryReport`. The store holds the lock around all of it.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from device.vault.clipfile import (
    CLIP_ID,
    PART_SUFFIX,
    SEALED_SUFFIX,
    clip_dir,
    fsync_dir,
    inspect,
    part_file,
    sealed_file,
)
from device.vault.index import ClipEvent, ClipIndex, ClipRecord, ClipState

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RecoveryReport:
    """What recovery (or settling a failed clip) did, clip ids by outcome."""

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
class RecoveryNotes:
    """A `RecoveryReport` being written."""

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


class ClipFiles:
    """The clip files under ``clips/`` and their rows in the index.

    Not locked: the store calls it under its own lock. Raises OSError and
    VaultIndexError as stated per method.
    """

    def __init__(self, clips_dir: Path, orphans_dir: Path, index: ClipIndex) -> None:
        self.clips_dir = clips_dir
        self.orphans_dir = orphans_dir
        self.index = index

    def publish(self, clip_id: str) -> None:
        """Rename the clip's ``.part`` to ``.age`` and fsync the directory. Raises OSError."""
        part = part_file(self.clips_dir, clip_id)
        os.replace(part, sealed_file(self.clips_dir, clip_id))
        fsync_dir(part.parent)

    def discard(self, clip_id: str) -> None:
        """Remove the clip's file, whichever it is, and its row."""
        for path in (part_file(self.clips_dir, clip_id), sealed_file(self.clips_dir, clip_id)):
            path.unlink(missing_ok=True)
        self.index.delete([clip_id])

    def settle_part(
        self, clip_id: str, events: Sequence[ClipEvent], report: RecoveryNotes
    ) -> None:
        """End a ``.part`` file as a truncated clip, or remove it when it holds nothing
        beyond the header. Raises OSError, VaultIndexError."""
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
        self.publish(clip_id)
        report.truncated.append(clip_id)

    def reconcile(self, report: RecoveryNotes) -> None:
        """Make the index and the files agree after a crash: every row against its files,
        every file without a row adopted or moved to ``orphans/``."""
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

    def _recover_row(
        self, record: ClipRecord, found: dict[str, Path], report: RecoveryNotes
    ) -> None:
        sealed, part = found.get(SEALED_SUFFIX), found.get(PART_SUFFIX)
        if record.state is ClipState.RECORDING:
            if part is not None:
                if sealed is not None:  # cannot happen in our order; keep the finished one
                    part.unlink()
                else:
                    self.settle_part(record.id, record.events, report)
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
                self.publish(record.id)
                report.completed.append(record.id)
            else:
                self.settle_part(record.id, record.events, report)
            return
        log.error("clip %s (%s) has no file any more; dropping its row", record.id, record.state)
        self.index.delete([record.id])
        report.dropped_rows.append(record.id)

    def _adopt(self, clip_id: str, found: dict[str, Path], report: RecoveryNotes) -> None:
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
            self.publish(clip_id)
        for other in found.values():
            if other != path:
                other.unlink(missing_ok=True)
        report.adopted.append(clip_id)

    def _quarantine(self, path: Path, reason: str, report: RecoveryNotes) -> None:
        self.orphans_dir.mkdir(exist_ok=True, mode=0o700)
        target = self.orphans_dir / path.name
        if target.exists():
            target = self.orphans_dir / f"{path.name}.{os.getpid()}-{id(report)}"
        log.warning("sealed store: moving %s to %s: %s", path, self.orphans_dir, reason)
        shutil.move(str(path), str(target))
        report.quarantined.append(path.name)

