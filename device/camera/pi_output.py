"""The hand-over from picamera2's encoder thread to the camera loop.

`PacketSink` is a bounded queue of H.264 access units: `accept` runs on picamera2's
encoder thread and never raises (a failure flags the sink dead), `drain` runs on the
camera loop. `make_output` builds the picamera2 `Output` that feeds it. A keyframe
always reaches the loop with its SPS and PPS in front (`header_prefix`); a loop too slow
for the queue loses units up to the next keyframe, never a corrupt GOP. picamera2 itself
is not imported here (`PiCamera` passes its `Output` class in).
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any, NamedTuple, cast

from device.camera.base import ANNEX_B_START


class _Unit(NamedTuple):  # a tuple: built on the encoder thread for every frame
    data: bytes
    keyframe: bool
    timestamp_us: int


def header_prefix(unit: bytes) -> bytes | None:
    """The bytes before the first slice of an Annex-B access unit, if they hold an SPS
    and a PPS; else None. Scans only up to the first slice (not the whole picture)."""
    seen: set[int] = set()
    at = unit.find(ANNEX_B_START)
    while at != -1 and at + 3 < len(unit):
        kind = unit[at + 3] & 0x1F
        if kind in (1, 5):  # a coded slice: the parameter sets must have come already
            end = at - 1 if at > 0 and unit[at - 1] == 0 else at
            return unit[:end] if {7, 8} <= seen else None
        seen.add(kind)
        at = unit.find(ANNEX_B_START, at + 3)
    return None


class PacketSink:
    """The bounded hand-over from picamera2's encoder thread to the camera loop.

    `accept` runs on the encoder thread and never raises; `drain` runs on the loop.
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("packet queue capacity must be at least 1")
        self._capacity = capacity
        self._lock = threading.Lock()
        self._queue: deque[_Unit] = deque()
        self._resync = False
        self._headers: bytes | None = None
        self.dead: str | None = None
        self.received = 0
        self.dropped = 0

    def accept(self, frame: object, keyframe: bool, timestamp_us: object) -> None:
        """Take one access unit from the encoder. Never raises (picamera2's thread)."""
        try:
            self._accept(frame, keyframe, timestamp_us)
        except Exception as exc:  # the encoder thread must never see an exception
            self.fail(f"{type(exc).__name__}: {exc}")

    def _accept(self, frame: object, keyframe: bool, timestamp_us: object) -> None:
        if self.dead is not None:
            return
        if frame is None:
            raise ValueError("the encoder delivered no buffer")
        try:
            # bytes, an mmap'd buffer, an ndarray: any object with the buffer protocol
            view = memoryview(cast(bytes, frame))
        except TypeError:
            raise TypeError(f"the encoder delivered {type(frame).__name__}, not a buffer") from None
        if not isinstance(timestamp_us, int) or isinstance(timestamp_us, bool):
            raise ValueError(f"the encoder delivered timestamp {timestamp_us!r}")
        data = view.tobytes()
        if not data:
            return
        key = bool(keyframe)
        if key:
            data = self._with_headers(data)
        with self._lock:
            self.received += 1
            if self._resync:
                if not key:
                    self.dropped += 1
                    return
                self._resync = False
            if len(self._queue) >= self._capacity:
                # The loop fell behind: drop this unit and everything up to the next
                # keyframe, so what reaches the recorder always decodes.
                self.dropped += 1
                self._resync = True
                return
            self._queue.append(_Unit(data, key, timestamp_us))

    def _with_headers(self, data: bytes) -> bytes:
        # repeat=True puts SPS/PPS before every IDR; if an encoder ever does not, the
        # last seen parameter sets are put back in front (the seam promises them).
        headers = header_prefix(data)
        if headers is not None:
            self._headers = headers
            return data
        if self._headers is None:
            raise ValueError("first keyframe carries no SPS/PPS (repeat=False?)")
        return self._headers + data

    def fail(self, reason: str) -> None:
        with self._lock:
            if self.dead is None:
                self.dead = reason
            self._queue.clear()

    def drain(self) -> list[_Unit]:
        with self._lock:
            units = list(self._queue)
            self._queue.clear()
            return units


def make_output(base: type, sink: PacketSink) -> Any:
    """An instance of a picamera2 `Output` subclass that feeds `sink`.

    Built at run time because the base class comes from the lazily imported picamera2.
    The signature is 0.3.x's: ``outputframe(frame, keyframe=True, timestamp=None,
    packet=None, audio=False)`` (0.3.12-0.3.22 pass only the first three).
    """

    def outputframe(
        self: Any,
        frame: object,
        keyframe: bool = True,
        timestamp: object = None,
        packet: object = None,
        audio: bool = False,
    ) -> None:
        if audio:
            return
        sink.accept(frame, keyframe, timestamp)

    cls = type("SealedPacketOutput", (base,), {"outputframe": outputframe})
    return cls()
