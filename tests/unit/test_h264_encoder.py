"""`H264Encoder` reuses one input frame: the same access units as a frame per call."""

from __future__ import annotations

import av
import numpy as np
import pytest

from device.camera.base import EncoderSettings
from device.camera.h264 import H264Encoder

SETTINGS = EncoderSettings(bitrate=300_000, keyframe_interval_s=1.0)


def pictures(width: int, height: int, count: int) -> list[np.ndarray]:
    rng = np.random.default_rng(5)
    shape = (height * 3 // 2, width)
    return [rng.integers(0, 256, shape, dtype=np.uint8) if i % 4 == 0
            else np.full(shape, 9 * i, dtype=np.uint8) for i in range(count)]


def encode_with_a_frame_per_call(images: list[np.ndarray], width: int, height: int) -> list[bytes]:
    ctx = H264Encoder(width=width, height=height, fps=10, settings=SETTINGS)._ctx
    out: list[bytes] = []
    for i, image in enumerate(images):
        frame = av.VideoFrame.from_ndarray(image, format="yuv420p")
        frame.pts = i
        out.extend(bytes(packet) for packet in ctx.encode(frame))
    return out


@pytest.mark.parametrize(("width", "height"), [(64, 48), (100, 62), (1280, 720)])
def test_the_reused_frame_encodes_what_a_frame_per_call_encodes(width: int, height: int) -> None:
    images = pictures(width, height, 12)
    encoder = H264Encoder(width=width, height=height, fps=10, settings=SETTINGS)
    reused = [packet.data for i, image in enumerate(images) for packet in encoder.encode(image, i)]
    assert reused == encode_with_a_frame_per_call(images, width, height)

