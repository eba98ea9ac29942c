"""What the recorder needs from the sealed store: a clip writer per clip.

Structural types only, so the recorder runs against the real `SealedStore` and against
any store a test builds. The store's own documentation says what each call raises; the
recorder treats any exception from them as a dead clip (see `Recorder`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol


class ClipWriter(Protocol):
    """One clip being sealed: plaintext bytes in, ciphertext to disk."""

    def write(self, data: bytes, /) -> object: ...

    def add_event(self, kind: str, at: datetime, /) -> object: ...

    def finish(self, end: datetime, /) -> object: ...

    def abort(self) -> object: ...


class ClipStore(Protocol):
    """Opens clip writers. Raises `StorageFull` when no space can be freed."""

    def open_clip(self, start: datetime, /) -> ClipWriter: ...
