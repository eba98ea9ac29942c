"""Stand-in of picamera2.encoders.encoder (picamera2 0.3.36): `Encoder`, `Quality`,
and the libx264 context both H.264 stand-ins encode with (`x264_context`).

Each access unit goes to every output through `outputframe(frame, keyframe, timestamp,
packet, audio)` with the timestamp in microseconds since the first encoded frame, the
first frame's sensor time kept in `firsttimestamp`.
"""

from __future__ import annotations

import enum
import threading
from fractions import Fraction
from typing import Any

import av

from picamera2._standin import from_strided
from picamera2.outputs import Output


class Quality(enum.Enum):
    VERY_LOW = 0
    LOW = 1
    MEDIUM = 2
    HIGH = 3
    VERY_HIGH = 4


class Encoder:
    """Base class: owns the outputs and the running flag."""

    def __init__(self, framerate: float | None = 30) -> None:
        self.framerate = framerate
        self._output: list[Output] = []
        self._output_lock = threading.Lock()
        self._running = False
        self.width = 0
        self.height = 0
        self.stride = 0
        self.format: str | None = None
        self.name: str | None = None
        self.firsttimestamp: int | None = None
        self.frames_encoded = 0

    @property
    def running(self) -> bool:
        return self._running

    @property
    def output(self) -> Output | list[Output]:
        return self._output[0] if len(self._output) == 1 else self._output

    @output.setter
    def output(self, value: Output | list[Output]) -> None:
        outputs = value if isinstance(value, list) else [value]
        for out in outputs:
            if not isinstance(out, Output):
                raise RuntimeError("Must pass Output")
        self._output = outputs

    def start(self, quality: Quality | None = None) -> None:
        if self._running:
            raise RuntimeError("Encoder already running")
        self._setup(quality)
        self._running = True
        for out in self._output:
            out.start()
        self._start()

    def stop(self) -> None:
        if not self._running:
            raise RuntimeError("Encoder already stopped")
        self._running = False
        self._stop()
        for out in self._output:
            out.stop()

    def encode(self, stream: Any, request: Any) -> None:
        if self._running:
            self._encode(stream, request)
            self.frames_encoded += 1

    def outputframe(
        self,
        frame: Any,
        keyframe: bool = True,
        timestamp: int | None = None,
        packet: Any = None,
        audio: bool = False,
    ) -> None:
        with self._output_lock:
            for out in self._output:
                out.outputframe(frame, keyframe, timestamp, packet, audio)

    def _timestamp(self, request: Any) -> int:
        ts = int(request.get_metadata()["SensorTimestamp"] / 1000)
        if self.firsttimestamp is None:
            self.firsttimestamp = ts
            return 0
        return ts - self.firsttimestamp

    def _setup(self, quality: Quality | None) -> None:
        pass

    def _start(self) -> None:
        pass

    def _stop(self) -> None:
        pass

    def _encode(self, stream: Any, request: Any) -> None:
        pass



def x264_context(encoder: Any, gop: int) -> Any:
    """libx264 as picamera2's libav encoder sets it up: the stream's rate is the
    encoder's `framerate` (rate control spends `bitrate / framerate` per frame), time
    base 1 us, no B-frames, SPS/PPS repeated before each IDR unless repeat=False."""
    if encoder.format != "YUV420":
        raise RuntimeError(f"stand-in encoder needs YUV420 input, not {encoder.format}")
    ctx = av.CodecContext.create("libx264", "w")
    ctx.width = encoder.width
    ctx.height = encoder.height
    ctx.pix_fmt = "yuv420p"
    ctx.time_base = Fraction(1, 1_000_000)
    ctx.framerate = Fraction(encoder.framerate or 30).limit_denominator(1001)
    if encoder.bitrate:
        ctx.bit_rate = encoder.bitrate
    ctx.gop_size = gop
    ctx.options = {
        "preset": "ultrafast",
        "tune": "zerolatency",
        "keyint": str(gop),
        "min-keyint": str(gop),
        "scenecut": "0",
        "bframes": "0",
        "threads": "1",
    }
    if not encoder.repeat:
        ctx.flags |= av.codec.context.Flags.global_header
    ctx.open()
    return ctx


def encode_frame(ctx: Any, request: Any, stream: Any, encoder: Any, timestamp_us: int) -> Any:
    image = from_strided(request.make_array(stream), encoder.width, encoder.height)
    frame = av.VideoFrame.from_ndarray(image, format="yuv420p")
    frame.pts = timestamp_us
    return ctx.encode(frame)
