"""Stand-in of picamera2.encoders (picamera2 0.3.36).

Upstream binds `H264Encoder` at import: the V4L2 hardware encoder on VC4 (Pi 4, Zero 2),
`LibavH264Encoder` on PiSP (Pi 5). The stand-in looks the platform up in
`RIG.platform` when the name is used, so a test can choose the Pi it plays.
"""

from __future__ import annotations

from typing import Any

from picamera2._standin import RIG
from picamera2.encoders.encoder import Encoder, Quality
from picamera2.encoders.h264_encoder import H264Encoder as _V4L2H264Encoder
from picamera2.encoders.libav_h264_encoder import LibavH264Encoder


def __getattr__(name: str) -> Any:
    if name == "H264Encoder":
        return _V4L2H264Encoder if RIG.platform == "VC4" else LibavH264Encoder
    raise AttributeError(name)


__all__ = ["Encoder", "H264Encoder", "LibavH264Encoder", "Quality"]
