"""Stand-in of picamera2.request.CompletedRequest: a frame's buffers and metadata."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from picamera2._standin import RIG


class CompletedRequest:
    """Buffers of all streams of one sensor frame. `release()` returns them to libcamera."""

    def __init__(self, arrays: dict[str, npt.NDArray[np.uint8]], metadata: dict[str, Any]) -> None:
        self._arrays = arrays
        self._metadata = metadata
        self._released = False
        with RIG.lock:
            RIG.unreleased += 1

    def make_array(self, name: str) -> npt.NDArray[np.uint8]:
        if self._released:
            raise RuntimeError("request has been released")
        if name not in self._arrays:
            raise RuntimeError(f"Stream {name!r} is not defined")
        return np.copy(self._arrays[name])

    def get_metadata(self) -> dict[str, Any]:
        return dict(self._metadata)

    def release(self) -> None:
        if not self._released:
            self._released = True
            with RIG.lock:
                RIG.unreleased -= 1
