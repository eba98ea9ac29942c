"""`V4L2Camera`: a USB webcam through OpenCV's V4L2 back end.

Frames are captured as BGR, converted to I420 for the shared software H.264 encoder and
to a scaled grayscale image for analysis. A live camera stamps frames with the clock at
capture; packet times follow the capture times (quantised to the frame grid), so a
dropped frame leaves a gap instead of stretching the video.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import cv2
import numpy as np

from device.camera.base import CameraFrame, ConfiguredGeometry, EncoderSettings
from device.camera.h264 import H264Encoder
from device.clock import Clock
from device.config import CameraSettings
from device.errors import CameraError

READ_FAILURES_TOLERATED = 30  # consecutive failed grabs before the camera counts as gone


class V4L2Camera(ConfiguredGeometry):
    """A webcam at `camera.v4l2_device`. Raises CameraError when it is missing or fails."""

    def __init__(self, settings: CameraSettings, clock: Clock, *, encoder: EncoderSettings) -> None:
        self._settings = settings
        self._clock = clock
        self._encoder_settings = encoder
        self._capture: cv2.VideoCapture | None = None
        self._encoder: H264Encoder | None = None
        self._origin: datetime | None = None
        self._index = 0

    def start(self) -> None:
        device = self._settings.v4l2_device
        target: int | str = int(device) if device.isdigit() else device
        if isinstance(target, str) and not Path(target).exists():
            raise CameraError(f"V4L2 device {device} does not exist (is the webcam plugged in?)")
        capture = cv2.VideoCapture(target, cv2.CAP_V4L2)
        if not capture.isOpened():
            capture.release()
            raise CameraError(f"cannot open V4L2 device {device} (busy, or not a video device)")
        s = self._settings
        capture.set(cv2.CAP_PROP_FRAME_WIDTH, s.width)
        capture.set(cv2.CAP_PROP_FRAME_HEIGHT, s.height)
        capture.set(cv2.CAP_PROP_FPS, s.fps)
        self._capture = capture
        self._encoder = H264Encoder(
            width=s.width, height=s.height, fps=s.fps, settings=self._encoder_settings
        )
        self._origin = None
        self._index = 0

    def read(self) -> CameraFrame | None:
        if self._capture is None or self._encoder is None:
            raise CameraError("V4L2Camera.read() before start()")
        for _ in range(READ_FAILURES_TOLERATED):
            ok, bgr = self._capture.read()
            if ok and bgr is not None:
                break
        else:
            raise CameraError(f"V4L2 device {self._settings.v4l2_device} stopped delivering frames")
        now = self._clock.now()
        if self._origin is None:
            self._origin = now
        s = self._settings
        if bgr.shape[:2] != (s.height, s.width):
            bgr = cv2.resize(bgr, (s.width, s.height), interpolation=cv2.INTER_AREA)
        i420 = np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420), dtype=np.uint8)
        gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
        lores = cv2.resize(gray, (s.lores_width, s.lores_height), interpolation=cv2.INTER_AREA)
        index = self._index
        offset = (now - self._origin).total_seconds()
        packets = self._encoder.encode(i420, index, pts_s=offset)
        self._index += 1
        return CameraFrame(
            timestamp=now, index=index, lores=np.asarray(lores, dtype=np.uint8), packets=packets
        )

    def stop(self) -> None:
        if self._capture is not None:
            self._capture.release()
        self._capture = None
        self._encoder = None
