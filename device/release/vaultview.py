"""What the release side needs of the vault, as a seam of a few methods.

`StoreVault` adapts the vault's `SealedStore` to it. Clip and epoch records are the
vault index's own dataclasses.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Protocol

from device.vault.index import ClipRecord, ClipState, EpochRecord
from device.vault.store import SealedStore

RELEASABLE: tuple[ClipState, ...] = (
    ClipState.SEALED,
    ClipState.TRUNCATED,
    ClipState.HELD,
    ClipState.RELEASED,
)


class ClipVault(Protocol):
    def list_clips(
        self,
        since: datetime | None = None,
        until: datetime | None = None,
        states: Iterable[ClipState] | None = None,
    ) -> Sequence[ClipRecord]: ...

    def sealed_path(self, clip_id: str) -> Path: ...

    def hold(self, clip_ids: Iterable[str], until: datetime) -> None: ...

    def mark_pending_upload(self, clip_ids: Iterable[str]) -> None: ...

    def clear_pending_upload(self, clip_ids: Iterable[str]) -> None: ...

    def epochs(self) -> Sequence[EpochRecord]: ...


class StoreVault:
    """The `SealedStore` seen through `ClipVault`. Raises what the store raises."""

    def __init__(self, store: SealedStore) -> None:
        self._store = store

    def list_clips(
        self,
        since: datetime | None = None,
        until: datetime | None = None,
        states: Iterable[ClipState] | None = None,
    ) -> Sequence[ClipRecord]:
        return self._store.list_clips(since, until, states)

    def sealed_path(self, clip_id: str) -> Path:
        return self._store.sealed_path(clip_id)

    def hold(self, clip_ids: Iterable[str], until: datetime) -> None:
        self._store.hold(clip_ids, until)

    def mark_pending_upload(self, clip_ids: Iterable[str]) -> None:
        self._store.mark_pending_upload(clip_ids)

    def clear_pending_upload(self, clip_ids: Iterable[str]) -> None:
        self._store.clear_pending_upload(clip_ids)

    def epochs(self) -> Sequence[EpochRecord]:
        return self._store.index.epochs()
