"""The test's handle on the stand-in camera: the scene, the call log, fault knobs.

Not part of picamera2's API: only tests import it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

I420 = npt.NDArray[np.uint8]
Scene = Callable[[float, int, int], I420]


def flat_scene(t: float, width: int, height: int) -> I420:
    """A grey wall with a bright square crossing it between 1.5 s and 3.5 s."""
    image = np.empty((height * 3 // 2, width), dtype=np.uint8)
    image[:height] = 90
    image[height:] = 128
    if 1.5 <= t <= 3.5:
        side = max(4, height // 3) & ~1
        x = int((t - 1.5) / 2.0 * (width - side)) & ~1
        y = (height - side) // 2 & ~1
        image[y : y + side, x : x + side] = 230
    return image


def stride_for(width: int) -> int:
    """libcamera pads YUV420 rows to a multiple of 64 bytes on the Pi."""
    return (width + 63) // 64 * 64


def to_strided(image: I420, width: int, height: int) -> I420:
    """A planar I420 image in picamera2's YUV420 array layout: (height * 3/2, stride),
    the Y rows padded to `stride`, then U and V as rows of stride/2 packed two per row."""
    stride = stride_for(width)
    half = stride // 2
    out = np.zeros((height * 3 // 2, stride), dtype=np.uint8)
    out[:height, :width] = image[:height]
    chroma = out[height:].reshape(-1)
    planes = image[height:].reshape(2, height // 2, width // 2)
    for number, plane in enumerate(planes):
        rows = chroma[number * half * (height // 2) : (number + 1) * half * (height // 2)]
        rows.reshape(height // 2, half)[:, : width // 2] = plane
    return out


def from_strided(strided: I420, width: int, height: int) -> I420:
    """The inverse of `to_strided`: a planar I420 image (height * 3/2, width)."""
    stride = strided.shape[1]
    half = stride // 2
    image = np.empty((height * 3 // 2, width), dtype=np.uint8)
    image[:height] = strided[:height, :width]
    chroma = strided[height:].reshape(-1)
    size = half * (height // 2)
    for number in range(2):
        plane = chroma[number * size : (number + 1) * size].reshape(height // 2, half)
        start = height + number * (height // 4)
        image[start : start + height // 4] = plane[:, : width // 2].reshape(height // 4, width)
    return image


@dataclass
class Rig:
    """Global state of the stand-in: the platform, what the sensor shows, fault knobs
    and what was called."""

    scene: Scene = flat_scene
    cameras: list[dict[str, object]] = field(
        default_factory=lambda: [
            {"Model": "imx708", "Location": 2, "Rotation": 180, "Id": "/base/imx708@1a", "Num": 0}
        ]
    )
    # picamera2.platform: "VC4" (Pi 4, Zero 2: V4L2 hardware encoder) or "PISP" (Pi 5:
    # libx264 through PyAV, picamera2.encoders.H264Encoder is LibavH264Encoder).
    platform: str = "VC4"
    # The sensor mode's shortest frame (imx708 at 1536x864 runs up to 120 fps).
    sensor_min_frame_duration_us: int = 8333
    calls: list[str] = field(default_factory=list)
    sensor_base_ns: int = 1_234_000_000_000
    held_buffers: int = 0  # sensor buffers whose request someone still holds
    dropped_frames: int = 0  # frames the sensor lost for want of a free buffer
    encoders: list[Any] = field(default_factory=list)  # every encoder built
    encoder_stalled: bool = False  # the encoder takes frames but delivers nothing
    sensor_stalled: bool = False  # the sensor delivers no frame at all (cable out)
    fail_start: str | None = None  # Picamera2.start() raises RuntimeError(this)
    # One frame completes just as cancel_all_and_flush() runs: the queued job gets it.
    frame_at_flush: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, call: str) -> None:
        with self.lock:
            self.calls.append(call)

    def reset(self) -> None:
        fresh = Rig()
        for name in fresh.__dataclass_fields__:
            if name != "lock":
                setattr(self, name, getattr(fresh, name))


RIG = Rig()
