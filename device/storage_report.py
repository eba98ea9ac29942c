"""The store's health as the agent's status shows it, read from the index sparingly."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from device.errors import DoorbellError

if TYPE_CHECKING:  # the store's modules load when the agent opens it, not at import
    from device.vault import SealedStore

STORAGE_STATUS_EVERY_S = 10.0  # wall-clock seconds between reads of the store's health


class StorageReport:
    """`read(clips_ended)`: the store's health, re-read at most every `every_s` seconds
    or after a clip ended (it lists the index, too costly for every status write). An
    index that cannot be read is reported, never raised."""

    def __init__(self, store: SealedStore, *, every_s: float = STORAGE_STATUS_EVERY_S) -> None:
        self._store = store
        self._every_s = every_s
        self._cache: tuple[int, float, dict[str, Any]] | None = None

    def read(self, clips_ended: int) -> dict[str, Any]:
        """A fresh dict: `full`, `reason`, and when the index answered `free_bytes`,
        `used_bytes` and `clips`."""
        mono = time.monotonic()
        cached = self._cache
        if cached is not None and cached[0] == clips_ended and mono - cached[1] < self._every_s:
            return dict(cached[2])
        try:
            health = self._store.health
            storage: dict[str, Any] = {
                "full": health.storage_full,
                "reason": health.reason,
                "free_bytes": health.free_bytes,
                "used_bytes": health.used_bytes,
                "clips": health.clips,
            }
        except DoorbellError as exc:
            storage = {"full": False, "reason": f"index unavailable: {exc}"}
        self._cache = (clips_ended, mono, dict(storage))
        return storage
