"""`FileCamera`: any video file PyAV can decode, replayed as a camera.

Frames are decoded, scaled to the configured main and analysis sizes by libswscale, and
re-encoded with the shared software H.264 encoder so that every camera hands the
recorder the same kind of packets. Timestamps are ``start + index / fps`` (the file's
own frame rate), like the simulator's; `camera.realtime` paces reading at that rate.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from fractions import Fraction
from pathlib import Path

import av
import av.error
import numpy as np

from device.camera.base import CameraFrame, ConfiguredGeometry, EncoderSettings
from device.camera.h264 import H264Encoder
from device.clock import Clock
from device.config import CameraSettings
from device.errors import CameraError


class FileCamera(ConfiguredGeometry):
    """Replays `camera.file`. Raises CameraError for a missing or undecodable file."""

    def __init__(self, settings: CameraSettings, clock: Clock, *, encoder: EncoderSettings) -> None:
        if settings.file is None:
            raise CameraError("camera.source = 'file' needs camera.file (a video file path)")
        self._path: Path = settings.file
        self._settings = settings
        self._clock = clock
        self._encoder_settings = encoder
        self._container: av.container.InputContainer | None = None
        self._frames: Iterator[av.VideoFrame] | None = None
        self._encoder: H264Encoder | None = None
        self._fps = float(settings.fps)
        self._start: datetime | None = None
        self._mono_start = 0.0
        self._index = 0

    @property
    def fps(self) -> float:  # the file's own rate, known once it is opened
        return self._fps

    def start(self) -> None:
        try:
            container = av.open(str(self._path), mode="r")
        except (av.error.FFmpegError, OSError) as exc:
            raise CameraError(f"cannot open video file {self._path}: {exc}") from exc
        if not container.streams.video:
            container.close()
            raise CameraError(f"{self._path} has no video stream")
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate
        self._fps = float(rate) if rate else float(self._settings.fps)
        self._container = container
        self._frames = container.decode(stream)
        self._encoder = H264Encoder(
            width=self.width,
            height=self.height,
            fps=float(Fraction(self._fps).limit_denominator(1001)),
            settings=self._encoder_settings,
        )
        self._start = self._clock.now()
        self._mono_start = time.monotonic()
        self._index = 0

    def read(self) -> CameraFrame | None:
        if self._frames is None or self._encoder is None or self._start is None:
            raise CameraError("FileCamera.read() before start()")
        try:
            decoded = next(self._frames, None)
        except av.error.FFmpegError as exc:
            raise CameraError(f"{self._path}: cannot decode frame {self._index}: {exc}") from exc
        if decoded is None:
            return None
        index = self._index
        t = index / self._fps
        if self._settings.realtime:
            delay = self._mono_start + t - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        s = self._settings
        main = decoded.reformat(width=s.width, height=s.height, format="yuv420p")
        image = np.ascontiguousarray(main.to_ndarray(), dtype=np.uint8)
        gray = decoded.reformat(width=s.lores_width, height=s.lores_height, format="gray")
        lores = np.ascontiguousarray(gray.to_ndarray(), dtype=np.uint8)
        packets = self._encoder.encode(image, index)
        self._index += 1
        return CameraFrame(
            timestamp=self._start + timedelta(seconds=t), index=index, lores=lores, packets=packets
        )

    def stop(self) -> None:
        if self._container is not None:
            self._container.close()
        self._container = None
        self._frames = None
        self._encoder = None
