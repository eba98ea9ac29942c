"""Stand-in of picamera2.encoders.h264_encoder.H264Encoder (picamera2 0.3.36): the V4L2
hardware encoder of a Pi 4 or Zero 2 (/dev/video11), played by libx264.

As upstream (v4l2_encoder.py): `encode()` runs on the camera's event-loop thread,
acquires the request and queues it; the encoder's own poll thread encodes, hands each
buffer that holds a picture to the outputs (a buffer with only an SPS and a PPS, which
the hardware emits at low bitrates, is dropped: `_check_for_picture`), then releases
the request. `framerate` defaults to None; `Picamera2.start_encoder` fills it in.
"""

from __future__ import annotations

import queue
import threading
from typing import Any

from picamera2._standin import RIG
from picamera2.encoders.encoder import Encoder, encode_frame, x264_context


def check_for_picture(buf: bytes) -> bool:
    """upstream `V4L2Encoder._check_for_picture`."""
    if len(buf) > 64:
        return True
    start_code = b"\x00\x00\x00\x01"
    pos = 0
    while (pos := buf.find(start_code, pos)) != -1:
        pos += 4
        if pos < len(buf) and buf[pos] & 15 in {5, 1}:
            return True
    return False


class H264Encoder(Encoder):  # type: ignore[misc]  # Encoder: a stand-in module, untyped for mypy
    """Hardware H.264 (VideoCore), played by libx264 on a poll thread of its own."""

    def __init__(
        self,
        bitrate: int | None = None,
        repeat: bool = True,
        iperiod: int | None = None,
        framerate: float | None = None,
        enable_sps_framerate: bool = False,
        qp: int | None = None,
        profile: str | None = None,
    ) -> None:
        super().__init__(framerate=framerate)
        RIG.record(
            f"H264Encoder(bitrate={bitrate}, repeat={repeat}, iperiod={iperiod}, "
            f"framerate={framerate})"
        )
        self.bitrate = bitrate
        self.repeat = repeat
        self.iperiod = iperiod
        self.qp = qp
        self.profile = profile
        self._frames: queue.Queue[tuple[Any, Any, int] | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._ctx: Any = None
        RIG.encoders.append(self)

    @property
    def thread_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _start(self) -> None:
        self._ctx = x264_context(self, self.iperiod or 60)
        self._thread = threading.Thread(target=self._poll, name="V4L2Encoder.thread_poll")
        self._thread.daemon = True
        self._thread.start()

    def _encode(self, stream: Any, request: Any) -> None:
        request.acquire()
        self._frames.put((request, stream, self._timestamp(request)))

    def _poll(self) -> None:
        while True:
            item = self._frames.get()
            if item is None:
                packets = self._ctx.encode(None)
            else:
                request, stream, timestamp_us = item
                try:
                    packets = encode_frame(self._ctx, request, stream, self, timestamp_us)
                finally:
                    request.release()
            for packet in packets:
                data = bytes(packet)
                if RIG.encoder_stalled or not check_for_picture(data):
                    continue
                self.outputframe(data, packet.is_keyframe, packet.pts)
            if item is None:
                return

    def _stop(self) -> None:
        self._frames.put(None)
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._thread = None
