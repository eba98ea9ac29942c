"""Stand-in of picamera2.request.CompletedRequest (picamera2 0.3.36, picamera2/request.py).

Reference counted as upstream: a request starts with one reference (the camera's own,
dropped once it has been handed out), `acquire()` adds one (an encoder that still needs
the buffer, a caller of `capture_request`), `release()` drops one; only at zero does the
buffer go back to the sensor. A holder that never releases starves the sensor of
buffers (`RIG.dropped_frames`), as on a Pi.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from picamera2._standin import RIG


class CompletedRequest:
    """Buffers of all streams of one sensor frame."""

    def __init__(
        self,
        arrays: dict[str, npt.NDArray[np.uint8]],
        metadata: dict[str, Any],
        on_free: Callable[[], None] | None = None,
    ) -> None:
        self._arrays = arrays
        self._on_free = on_free
        self._metadata = metadata
        self.ref_count = 1
        self._lock = threading.Lock()
        with RIG.lock:
            RIG.held_buffers += 1

    def acquire(self) -> None:
        with self._lock:
            if self.ref_count == 0:
                raise RuntimeError("CompletedRequest: acquiring lock with ref_count 0")
            self.ref_count += 1

    def release(self) -> None:
        with self._lock:
            self.ref_count -= 1
            if self.ref_count < 0:
                raise RuntimeError("CompletedRequest: lock now has negative ref_count")
            returned = self.ref_count == 0
        if returned:
            with RIG.lock:
                RIG.held_buffers -= 1
            if self._on_free is not None:
                self._on_free()

    def make_array(self, name: str) -> npt.NDArray[np.uint8]:
        if self.ref_count == 0:
            raise RuntimeError("request has been released")
        if name not in self._arrays:
            raise RuntimeError(f"Stream {name!r} is not defined")
        return np.copy(self._arrays[name])

    def get_metadata(self) -> dict[str, Any]:
        return dict(self._metadata)
