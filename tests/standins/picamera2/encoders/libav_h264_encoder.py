"""Stand-in of picamera2.encoders.libav_h264_encoder.LibavH264Encoder (picamera2
0.3.36): libx264 through PyAV, what `H264Encoder` is on a Pi 5.

As upstream: `framerate` defaults to 30 (so `start_encoder` never replaces it with
anything), and `encode()` encodes right there, on the camera's event-loop thread,
handing packets to the outputs as libav returns them.
"""

from __future__ import annotations

from typing import Any

from picamera2._standin import RIG
from picamera2.encoders.encoder import Encoder, encode_frame, x264_context


class LibavH264Encoder(Encoder):  # type: ignore[misc]  # Encoder: a stand-in module, untyped for mypy
    def __init__(
        self,
        bitrate: int | None = None,
        repeat: bool = True,
        iperiod: int | None = 30,
        framerate: float | None = 30,
        qp: int | None = None,
        profile: str | None = None,
    ) -> None:
        super().__init__(framerate=framerate)
        RIG.record(
            f"LibavH264Encoder(bitrate={bitrate}, repeat={repeat}, iperiod={iperiod}, "
            f"framerate={framerate})"
        )
        self.bitrate = bitrate
        self.repeat = repeat
        self.iperiod = iperiod
        self.qp = qp
        self.profile = profile
        self._ctx: Any = None
        RIG.encoders.append(self)

    @property
    def thread_alive(self) -> bool:
        return False  # no thread of its own

    def _start(self) -> None:
        self._ctx = x264_context(self, self.iperiod or (1 << 31) - 1)

    def _encode(self, stream: Any, request: Any) -> None:
        request.acquire()
        try:
            timestamp_us = self._timestamp(request)
            packets = encode_frame(self._ctx, request, stream, self, timestamp_us)
        finally:
            request.release()
        for packet in packets:
            if not RIG.encoder_stalled:
                self.outputframe(bytes(packet), packet.is_keyframe, packet.pts)

    def _stop(self) -> None:
        for packet in self._ctx.encode(None):
            self.outputframe(bytes(packet), packet.is_keyframe, packet.pts)
