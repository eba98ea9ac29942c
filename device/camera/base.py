"""The `Camera` seam: what the agent needs from any camera, and nothing more.

A camera delivers two views of the same moment:

- `CameraFrame.lores`: a small grayscale image (uint8, H x W) for motion analysis;
- `CameraFrame.packets`: the encoded main stream (H.264) that became available while
  this frame was captured. A hardware encoder (the Pi's) may hand packets over a few
  frames late, a software encoder at once; the recorder never assumes either.

Timeline contract (the recorder relies on it; ADR 0006):

- `CameraFrame.timestamp` is the capture time of the frame, timezone-aware UTC. For a
  live camera it is the wall clock at capture; for the simulator and for files it is
  the stream's start time plus ``index / fps``, so simulation may run faster than real
  time and still produce consistent times.
- `EncodedPacket.pts_s` is seconds since the stream's first frame (index 0): the
  packet encoding frame ``i`` has ``pts_s == (timestamp_i - timestamp_0)``. The
  recorder maps packets to wall time through the timestamp of frame 0.
- Packets come in decode order with no reordering (no B-frames: dts == pts), each one
  H.264 access unit in Annex-B byte-stream format. Every keyframe is an IDR access unit
  preceded in the same packet by its SPS and PPS, so a recording may start on any
  keyframe.

`read()` returns None at the end of the stream (a file or simulation ran out) and
raises `CameraError` when the camera fails. Hardware (picamera2, OpenCV capture) is
imported only by the module that needs it, through `make_camera`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import numpy as np
import numpy.typing as npt

from device.config import CameraSettings, RecorderSettings

LoresImage = npt.NDArray[np.uint8]

ANNEX_B_START = b"\x00\x00\x01"


@dataclass(frozen=True, slots=True)
class EncoderSettings:
    """What every main-stream encoder (software or the Pi's hardware) must honour.

    `bitrate` in bits per second; `keyframe_interval_s` is the fixed GOP length in
    seconds (a clip can only start on a keyframe, so this bounds pre-roll precision).
    """

    bitrate: int
    keyframe_interval_s: float

    @classmethod
    def from_recorder(cls, settings: RecorderSettings) -> EncoderSettings:
        return cls(bitrate=settings.bitrate, keyframe_interval_s=settings.keyframe_interval_s)


@dataclass(frozen=True, slots=True)
class EncodedPacket:
    """One H.264 access unit in Annex-B format.

    `pts_s` is seconds since the stream's first frame; `keyframe` is true for an IDR
    access unit, which carries its SPS and PPS.
    """

    data: bytes
    pts_s: float
    keyframe: bool


@dataclass(frozen=True, slots=True)
class CameraFrame:
    """One captured moment: the analysis image and the packets that became available."""

    timestamp: datetime
    index: int
    lores: LoresImage
    packets: tuple[EncodedPacket, ...]


class Camera(Protocol):
    """A source of frames. `start` before `read`; `stop` is idempotent.

    `start` raises `CameraError` when the device cannot be opened; `read` raises
    `CameraError` when it stops delivering and returns None at a clean end of stream.
    """

    @property
    def width(self) -> int: ...

    @property
    def height(self) -> int: ...

    @property
    def fps(self) -> float: ...

    def start(self) -> None: ...

    def read(self) -> CameraFrame | None: ...

    def stop(self) -> None: ...


class ConfiguredGeometry:
    """`width`, `height` and `fps` of a camera that delivers its configured settings
    (a file camera overrides `fps` with the file's own rate)."""

    _settings: CameraSettings

    @property
    def width(self) -> int:
        return self._settings.width

    @property
    def height(self) -> int:
        return self._settings.height

    @property
    def fps(self) -> float:
        return float(self._settings.fps)


def parameter_sets(keyframe: bytes) -> bytes:
    """The SPS and PPS NAL units (Annex-B, with start codes) at the head of a keyframe.

    This is the `extradata` an MP4 muxer needs. Raises ValueError when the access unit
    carries no SPS or no PPS (a camera breaking the seam's contract).
    """
    units = split_nal_units(keyframe)
    sps = [unit for unit in units if unit and unit[0] & 0x1F == 7]
    pps = [unit for unit in units if unit and unit[0] & 0x1F == 8]
    if not sps or not pps:
        raise ValueError("keyframe carries no SPS/PPS: the camera broke the Annex-B contract")
    return b"".join(b"\x00\x00\x00\x01" + unit for unit in (sps[0], pps[0]))


def split_nal_units(data: bytes) -> list[bytes]:
    """Split an Annex-B byte stream into NAL unit payloads (start codes removed)."""
    units: list[bytes] = []
    start = data.find(ANNEX_B_START)
    while start != -1:
        begin = start + len(ANNEX_B_START)
        nxt = data.find(ANNEX_B_START, begin)
        end = len(data) if nxt == -1 else nxt
        unit = data[begin:end]
        # A four-byte start code leaves one zero byte at the end of the previous unit.
        if nxt != -1 and unit.endswith(b"\x00"):
            unit = unit.rstrip(b"\x00")
        units.append(unit)
        start = nxt
    return units
