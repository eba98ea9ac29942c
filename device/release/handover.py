"""The opened keys and clip records of a just-accepted token, handed from the handler to
the job runner in memory, so that both are read once per acceptance.

`ReleaseHandler` opens the delivered epoch identities and lists the window's clips while
it judges a token; `JobRunner` re-seals with the same identities and records when it
runs that job's first pass. Nothing here touches the disk: a job resumed after a
restart (or retried after its first pass) opens the keys and lists the clips again,
and every pass clears the identities when it ends. Holding them from acceptance to the
first pass (usually at once; longer while another job uploads) exposes nothing new: the
same process holds the transport identity that opens them. `ReleaseService.stop` wipes
whatever is left.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from device.vault.index import ClipRecord


@dataclass(frozen=True, slots=True)
class Prepared:
    """Epoch id -> opened identity, and clip id -> the clip's record."""

    identities: dict[str, str] = field(repr=False)
    records: dict[str, ClipRecord]

    def clear(self) -> None:
        self.identities.clear()


class Handover:
    """Thread-safe: the handler puts on the intake thread, the runner takes on the job
    thread. A job's entry is taken once; `clear` drops (and wipes) whatever is left."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_jti: dict[str, Prepared] = {}

    def put(self, jti: str, prepared: Prepared) -> None:
        with self._lock:
            old = self._by_jti.pop(jti, None)
            self._by_jti[jti] = prepared
        if old is not None:
            old.clear()

    def take(self, jti: str) -> Prepared | None:
        with self._lock:
            return self._by_jti.pop(jti, None)

    def clear(self) -> None:
        with self._lock:
            left, self._by_jti = list(self._by_jti.values()), {}
        for prepared in left:
            prepared.clear()
