"""Stand-in of picamera2.encoders: `Encoder`, `H264Encoder`, `Quality`.

`H264Encoder` plays the VideoCore hardware encoder: frames handed to `encode()` are
queued and encoded on the encoder's own thread (picamera2's V4L2 poll thread), and each
access unit goes to every output through `outputframe(frame, keyframe, timestamp,
packet, audio)` with the timestamp in microseconds since the first encoded frame.
"""

from __future__ import annotations

import enum
import queue
import threading
from fractions import Fraction
from typing import Any

import av
import numpy as np

from picamera2._standin import RIG, from_strided
from picamera2.outputs import Output


class Quality(enum.Enum):
    VERY_LOW = 0
    LOW = 1
    MEDIUM = 2
    HIGH = 3
    VERY_HIGH = 4


class Encoder:
    """Base class: owns the outputs and the running flag."""

    def __init__(self) -> None:
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


class H264Encoder(Encoder):
    """Hardware H.264 (VideoCore), played by libx264 on a thread of its own."""

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
        super().__init__()
        RIG.record(f"H264Encoder(bitrate={bitrate}, repeat={repeat}, iperiod={iperiod})")
        self.bitrate = bitrate
        self.repeat = repeat
        self.iperiod = iperiod
        self.framerate = framerate
        self.qp = qp
        self.profile = profile
        self._frames: queue.Queue[tuple[np.ndarray[Any, Any], int] | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._ctx: Any = None
        RIG.encoders.append(self)

    def _start(self) -> None:
        if self.format != "YUV420":
            raise RuntimeError(f"stand-in encoder needs YUV420 input, not {self.format}")
        rate = Fraction(self.framerate or 30).limit_denominator(1001)
        ctx = av.CodecContext.create("libx264", "w")
        ctx.width = self.width
        ctx.height = self.height
        ctx.pix_fmt = "yuv420p"
        ctx.time_base = Fraction(1, 1_000_000)
        ctx.framerate = rate
        if self.bitrate:
            ctx.bit_rate = self.bitrate
        gop = self.iperiod or 60
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
        if not self.repeat:
            ctx.flags |= av.codec.context.Flags.global_header
        ctx.open()
        self._ctx = ctx
        self._thread = threading.Thread(target=self._poll, name="standin-h264", daemon=True)
        self._thread.start()

    def _encode(self, stream: Any, request: Any) -> None:
        timestamp_us = self._timestamp(request)
        image = from_strided(request.make_array(stream), self.width, self.height)
        self._frames.put((image, timestamp_us))

    def _poll(self) -> None:
        while True:
            item = self._frames.get()
            if item is None:
                packets = self._ctx.encode(None)
            else:
                image, timestamp_us = item
                frame = av.VideoFrame.from_ndarray(image, format="yuv420p")
                frame.pts = timestamp_us
                packets = self._ctx.encode(frame)
            for packet in packets:
                if RIG.encoder_stalled:
                    continue
                self.outputframe(bytes(packet), packet.is_keyframe, packet.pts)
            if item is None:
                return

    def _stop(self) -> None:
        self._frames.put(None)
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._thread = None
