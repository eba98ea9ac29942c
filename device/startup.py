"""The store's side of the agent's start-up, off the first frame's path.

The daemon (`doorbell-agent run`) opens its camera and puts the first frame into the
pre-roll before it opens the sealed store: the store's libraries (age, cryptography,
SQLite) load, the store opens and its crash recovery runs in a thread of its own while
frames keep going into the pre-roll, which lives in memory only
(docs/adr/0019-agent-memory-and-uplink-benchmarks.md, "Start-up").

`StoreGate` is the store as the recorder sees it. A clip that wants to open before
start-up has ended waits for it (the camera loop blocks; the pre-roll keeps the video
from before the trigger), so nothing is written before recovery has ended, and no clip
is lost to the start-up. When recovery itself cannot run (a full disk), the gate raises
`StorageFull` as it always did. The instance lock is taken before any of this, by
`Agent.from_config`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from device.clock import Clock
from device.config import AgentConfig
from device.errors import StorageFull
from device.recorder.sink import ClipWriter

if TYPE_CHECKING:  # the store's modules load when the store opens, not at import
    from device.vault import SealedStore

log = logging.getLogger(__name__)


class StoreGate:
    """The store once it is open, its recovery state, and the start-up that opens it.

    Built empty; `open(store)` publishes the store, after its first recovery attempt.
    `start(work)` runs `work` (open, recover, publish, start the services) once, in a
    daemon thread; `begin()` starts it if it has not started yet. A failure of `work` is
    kept in `failure` for the camera loop to raise; the gate then counts as settled so
    that nothing waits for it forever.
    """

    def __init__(self) -> None:
        self.store: SealedStore | None = None
        self.recovered = False
        self.pending = ""
        self.failure: BaseException | None = None
        self._settled = threading.Event()
        self._work: Callable[[], None] | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def settled(self) -> bool:
        """True once the store is open and its first recovery attempt has ended (or
        start-up failed)."""
        return self._settled.is_set()

    def open(self, store: SealedStore) -> None:
        """Publish the store: from now on clips may open once `recover()` succeeded."""
        self.store = store
        self._settled.set()

    def open_recovered(self, config: AgentConfig, clock: Clock) -> SealedStore:
        """Open the configured store, run its crash recovery, then publish it.

        Raises what `open_store` and the recovery raise, but not StorageFull: a full
        disk leaves `recovered` False and `pending` saying why (see `recover`).
        """
        from device.vault import open_store

        store = open_store(config, clock=clock.now)
        try:
            self._recover(store)
        except BaseException:
            store.close()
            raise
        self.open(store)
        return store

    def recover(self) -> bool:
        """Run the published store's crash recovery; True once it has succeeded.

        On a full disk recovery itself may fail (the index cannot grow): clips then do
        not open (`StorageFull`), `pending` says why, and the agent tries again at its
        retention ticks. Other index errors are raised: the store cannot be trusted.
        """
        if self.recovered:
            return True
        if self.store is None:
            return False
        self._recover(self.store)
        return self.recovered

    def _recover(self, store: SealedStore) -> None:
        try:
            report = store.recover()
        except StorageFull as exc:
            self.pending = f"start-up recovery waits for space: {exc}"
            log.error("%s", self.pending)
            return
        self.recovered = True
        self.pending = ""
        if not report.clean:
            log.warning("start-up recovery: %s", report)

    def defer(self, work: Callable[[], None]) -> None:
        """Open the store later, in a thread, with `work` (see `begin`)."""
        self._work = work

    def begin(self) -> None:
        """Start the deferred start-up, once; nothing when there is none."""
        with self._lock:
            if self._work is None or self._thread is not None:
                return
            self._thread = threading.Thread(
                target=self._run, args=(self._work,), name="store-startup", daemon=True
            )
            self._thread.start()

    def join(self) -> None:
        """Wait for a start-up that is still running (before the agent stops)."""
        with self._lock:
            thread = self._thread
        if thread is not None:
            thread.join()

    def open_clip(self, start: datetime, /) -> ClipWriter:
        """The store's `open_clip`, once start-up has opened and recovered the store.

        Waits for a start-up still running (starting it if needed). Raises StorageFull
        while recovery waits for space, when start-up failed, or when there is neither
        a store nor a start-up to open one.
        """
        if not self.settled and self._work is not None:
            self.begin()
            self._settled.wait()
        if self.store is None or not self.recovered:
            raise StorageFull(self.pending or "the store has not been recovered yet")
        return self.store.open_clip(start)

    def _run(self, work: Callable[[], None]) -> None:
        try:
            work()
        except BaseException as exc:  # handed to the camera loop, which raises it
            log.error("start-up failed: %s", exc)
            self.failure = exc
        finally:
            self._settled.set()
