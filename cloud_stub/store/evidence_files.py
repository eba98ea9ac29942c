"""Evidence on disk: resumable staging files and the content-addressed store.

Layout under the deployment's evidence directory::

    staging/<jti>/<clip_id>.part     bytes received so far (the size is the resume offset)
    sha256/<aa>/<aabbcc...>          accepted files, named by the sha256 of their bytes

Each staging file's SHA-256 is carried along as it is appended (continued from the
request body's own hash state, so a clip sent in one PUT is hashed once, as it
arrived), and the manifest's check uses it when it covers exactly the file's bytes;
after a restart, or when an append failed half way, the file is read back and hashed
instead (`staged_digest`).

Appends are serialized per file by a lock and made durable before the new offset is
reported, so an offset the device was told is always on disk: the device trusts a PUT's
success to move on, and once it has sent a clip's last chunk it never sends those bytes
again, so an acknowledged byte that a crash could lose would fail the manifest's size
and hash check and lose the release. The sync is ``fdatasync`` (the data and the file
size, which is the resume offset; not the timestamps), ``fsync`` where it is missing.
Accepted files get their content address as a hard link after their hash was checked,
and the directories are fsync'd once all of a manifest's files are linked, before the
acceptance is committed to the store; a file that is already there with the same hash
is not rewritten. The staging names are removed only after that commit, so a failed
commit leaves the upload as it was and the device's retry of the manifest succeeds; a
crash in between leaves at worst a stored file that nothing names yet, which the retry
reuses.
Nothing here decides whether an upload is allowed: that is `evidence.py`.
"""

from __future__ import annotations

import collections
import hashlib
import logging
import os
import re
import shutil
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from cloud_stub.errors import Conflict, EnvironmentFault, HostileInputError, TooLarge

log = logging.getLogger(__name__)

CLIP_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
JTI = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
RESERVED_NAMES = frozenset({"manifest"})
READ_BLOCK = 1024 * 1024


def check_clip_id(clip_id: str) -> str:
    """Raises `HostileInputError` for a clip id that could not be a safe file name."""
    if not CLIP_ID.match(clip_id) or clip_id in RESERVED_NAMES or ".." in clip_id:
        raise HostileInputError(
            f"clip id {clip_id[:40]!r} must be 1-128 letters, digits, '.', '_' or '-'",
            code="bad_clip_id",
        )
    return clip_id


def check_jti(jti: str) -> str:
    if not JTI.match(jti):
        raise HostileInputError("the token id is not a UUID", code="bad_jti")
    return jti


_sync_data = getattr(os, "fdatasync", os.fsync)


class HashState(Protocol):
    """A running SHA-256 (what `hashlib.sha256()` returns)."""

    def update(self, data: bytes, /) -> None: ...

    def copy(self) -> HashState: ...

    def hexdigest(self) -> str: ...


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass(frozen=True, slots=True)
class StagedFile:
    clip_id: str
    path: Path
    size: int


class EvidenceFiles:
    """The evidence directory. Raises `EnvironmentFault` when the disk fails."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self._guard = threading.Lock()
        # (jti, clip id) -> (bytes covered, SHA-256 of exactly those bytes of the file)
        self._running: dict[tuple[str, str], tuple[int, HashState]] = {}
        # no appends to a token while its manifest is being accepted (count of attempts
        # under way) or once it was (in this process; the store says so after a restart)
        self._accepting: collections.Counter[str] = collections.Counter()
        self._accepted: set[str] = set()

    def _lock(self, jti: str, clip_id: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault((jti, clip_id), threading.Lock())

    def staging_dir(self, jti: str) -> Path:
        return self.root / "staging" / check_jti(jti)

    def staging_path(self, jti: str, clip_id: str) -> Path:
        return self.staging_dir(jti) / f"{check_clip_id(clip_id)}.part"

    def blob_path(self, sha256: str) -> Path:
        if not re.fullmatch(r"[0-9a-f]{64}", sha256):
            raise HostileInputError("not a sha256 hex digest", code="bad_sha256")
        return self.root / "sha256" / sha256[:2] / sha256

    def offset(self, jti: str, clip_id: str) -> int:
        """Bytes held for this clip (0 when none)."""
        try:
            return self.staging_path(jti, clip_id).stat().st_size
        except FileNotFoundError:
            return 0
        except OSError as exc:
            raise EnvironmentFault(f"cannot read the upload state: {exc}") from exc

    def staged(self, jti: str) -> list[StagedFile]:
        """Every staging file of a token, by clip id."""
        directory = self.staging_dir(jti)
        if not directory.is_dir():
            return []
        out = []
        for path in sorted(directory.glob("*.part")):
            out.append(StagedFile(path.name[: -len(".part")], path, path.stat().st_size))
        return out

    def staged_total(self, jti: str) -> int:
        return sum(f.size for f in self.staged(jti))

    def append(self, jti: str, clip_id: str, offset: int, data: bytes, cap: int,
               data_hash: HashState | None = None) -> int:
        """Append ``data`` at ``offset`` and return the new offset, durably.

        ``data_hash`` is the SHA-256 state after exactly ``data`` (the request body's),
        if the caller has it; it saves hashing the first bytes of a file twice.
        Raises `Conflict` (code ``wrong_offset``, the true offset in the message and in
        ``.offset``) when ``offset`` is not the bytes held, and `TooLarge` when the token's
        total would pass ``cap`` bytes.
        """
        path = self.staging_path(jti, clip_id)
        key = (jti, clip_id)
        with self._lock(jti, clip_id):
            if self._accepting[jti] or jti in self._accepted:
                raise Conflict("the evidence of this token is being or was accepted",
                               code="closed")
            current = self.offset(jti, clip_id)
            if offset != current:
                raise WrongOffset(current)
            total = self.staged_total(jti) + len(data)
            if total > cap:
                raise TooLarge(
                    f"the upload would hold {total} bytes; this token allows at most {cap}",
                    code="token_size_cap",
                )
            running = self._running.pop(key, None)
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
                try:
                    view = memoryview(data)
                    while view:
                        written = os.write(fd, view)
                        view = view[written:]
                    _sync_data(fd)
                finally:
                    os.close(fd)
                if current == 0:
                    _fsync_dir(path.parent)
            except OSError as exc:
                # part of `data` may be on disk: the running hash no longer covers the
                # file, and the manifest's check will read it back
                raise EnvironmentFault(f"cannot store the upload: {exc}") from exc
            new_offset = current + len(data)
            if current == 0:
                state = data_hash.copy() if data_hash is not None else hashlib.sha256(data)
            elif running is not None and running[0] == current:
                state = running[1]
                state.update(data)
            else:
                return new_offset
            self._running[key] = (new_offset, state)
            return new_offset

    def staged_digest(self, jti: str, clip_id: str, size: int) -> str:
        """The SHA-256 of a staging file of ``size`` bytes: the running hash when it covers
        exactly those bytes, else the file read back."""
        with self._lock(jti, clip_id):
            running = self._running.get((jti, clip_id))
            if running is not None and running[0] == size:
                return running[1].copy().hexdigest()
        return self.digest(self.staging_path(jti, clip_id))

    def digest(self, path: Path) -> str:
        h = hashlib.sha256()
        try:
            with path.open("rb") as fh:
                while block := fh.read(READ_BLOCK):
                    h.update(block)
        except OSError as exc:
            raise EnvironmentFault(f"cannot read {path.name}: {exc}") from exc
        return h.hexdigest()

    def close(self, jti: str) -> None:
        """Refuse further appends to the token's files and wait for those under way, so
        the files the manifest is checked against (and then shares its inodes with, see
        `link_all`) no longer change. Every `close` ends with `reopen` (the acceptance
        failed) or `finish_accepted`."""
        with self._guard:
            self._accepting[jti] += 1
            locks = [lock for key, lock in self._locks.items() if key[0] == jti]
        for lock in locks:
            with lock:
                pass

    def reopen(self, jti: str) -> None:
        """One acceptance attempt failed; appends resume once no other is under way and
        none succeeded."""
        with self._guard:
            self._end_attempt(jti)

    def _end_attempt(self, jti: str) -> None:
        """One `close` is over (hold `_guard`)."""
        self._accepting[jti] -= 1
        if self._accepting[jti] <= 0:
            del self._accepting[jti]

    def link_all(self, files: Sequence[tuple[Path, str]]) -> list[Path]:
        """Give checked staging files their content addresses as hard links and make
        them durable before returning: every directory that gained an entry is fsync'd
        once, after all the links, so accepting a manifest of many clips costs one
        journal commit instead of one per clip. An address that exists already holds the
        same bytes (its name is their hash) and is kept. The staging names stay, so an
        acceptance whose store commit fails can be retried as it was; `finish_accepted`
        ends them once it is committed. Returns the addresses, in order."""
        targets: list[Path] = []
        touched: dict[Path, None] = {}  # ordered: new directories' parents after them
        try:
            for staged, sha256 in files:
                target = self.blob_path(sha256)
                if not target.parent.is_dir():
                    target.parent.mkdir(parents=True, exist_ok=True)
                    touched[target.parent] = None
                    touched[target.parent.parent] = None
                try:
                    os.link(staged, target)
                    touched[target.parent] = None
                except FileExistsError:
                    pass
                targets.append(target)
            for directory in touched:
                _fsync_dir(directory)
        except OSError as exc:
            raise EnvironmentFault(f"cannot store evidence: {exc}") from exc
        return targets

    def finish_accepted(self, jti: str, targets: Sequence[Path]) -> None:
        """After the acceptance is committed: the stored files become read-only and the
        token's staging directory goes. Failures here lose nothing (the store and the
        files are already consistent) and are only logged."""
        with self._guard:
            self._accepted.add(jti)
            self._end_attempt(jti)
        for target in targets:
            try:
                os.chmod(target, 0o440)
            except OSError as exc:
                log.warning("cannot make %s read-only: %s", target.name[:12], exc)
        self.discard_staging(jti)

    def discard_staging(self, jti: str) -> list[str]:
        """Remove a token's staging directory; returns the clip ids it held."""
        directory = self.staging_dir(jti)
        dropped = [f.clip_id for f in self.staged(jti)]
        with self._guard:
            for key in [k for k in self._running if k[0] == jti]:
                del self._running[key]
        if directory.exists():
            shutil.rmtree(directory, ignore_errors=True)
        return dropped

    def read_blob(self, sha256: str) -> Iterator[bytes]:
        path = self.blob_path(sha256)
        try:
            with path.open("rb") as fh:
                while block := fh.read(READ_BLOCK):
                    yield block
        except OSError as exc:
            raise EnvironmentFault(f"cannot read evidence {sha256[:12]}: {exc}") from exc


class WrongOffset(Conflict):
    """The device's offset is not the bytes held; ``offset`` is the true resume point."""

    code = "wrong_offset"

    def __init__(self, offset: int) -> None:
        super().__init__(f"the upload holds {offset} bytes; resume at offset {offset}")
        self.offset = offset
