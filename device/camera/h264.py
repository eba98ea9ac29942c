"""Software H.264 encoding for the cameras that have no hardware encoder.

libx264 through PyAV, tuned like a doorbell's hardware encoder: `ultrafast` +
`zerolatency` (a packet comes out for every frame put in, no B-frames, no lookahead), a
fixed GOP of `keyframe_interval_s` with scene-cut keyframes disabled (so pre-roll and
clip boundaries fall on a predictable grid), one thread (the agent has one core to
spend), and Annex-B output whose every IDR carries SPS and PPS (libx264 repeats the
headers when no global header is requested), which is what the `Camera` seam promises.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import av
import av.error
import numpy as np
import numpy.typing as npt

from device.camera.base import EncodedPacket, EncoderSettings
from device.errors import CameraError

Yuv420Image = npt.NDArray[np.uint8]
"""A planar I420 image: shape (height * 3 // 2, width), Y then U then V."""


class H264Encoder:
    """Encode I420 frames to Annex-B H.264 access units, one per frame.

    The caller numbers frames from 0. A packet's `pts_s` is ``index / fps`` unless the
    caller passes the frame's capture offset (a live camera with jitter or dropped
    frames): it is then quantised to the frame grid, kept strictly increasing. Raises
    CameraError when libx264 is unavailable or rejects a frame.
    """

    def __init__(self, *, width: int, height: int, fps: float, settings: EncoderSettings) -> None:
        if width % 2 or height % 2:
            raise CameraError(f"H.264 needs an even frame size, got {width}x{height}")
        self.width = width
        self.height = height
        self.fps = fps
        gop = max(1, round(settings.keyframe_interval_s * fps))
        rate = Fraction(fps).limit_denominator(1001)
        try:
            ctx = av.CodecContext.create("libx264", "w")
        except (av.error.FFmpegError, ValueError) as exc:
            raise CameraError(f"libx264 is not available in this PyAV build: {exc}") from exc
        assert isinstance(ctx, av.VideoCodecContext)
        ctx.width = width
        ctx.height = height
        ctx.pix_fmt = "yuv420p"
        ctx.time_base = 1 / rate
        ctx.framerate = rate
        ctx.bit_rate = settings.bitrate
        ctx.gop_size = gop
        ctx.thread_count = 1
        ctx.options = {
            "preset": "ultrafast",
            "tune": "zerolatency",
            "keyint": str(gop),
            "min-keyint": str(gop),
            "scenecut": "0",
            "bframes": "0",
            "threads": "1",
            "vbv-maxrate": str(settings.bitrate // 1000),
            "vbv-bufsize": str(settings.bitrate // 1000),
        }
        try:
            ctx.open()
        except av.error.FFmpegError as exc:
            raise CameraError(f"cannot open libx264 at {width}x{height}: {exc}") from exc
        self._ctx = ctx
        self._rate = rate
        self._last_pts = -1
        self._frame = av.VideoFrame(width, height, "yuv420p")

    def _picture(self, image: Yuv420Image) -> av.VideoFrame:
        """`image` copied into the one reused input frame.

        A new frame per call (`VideoFrame.from_ndarray`) would map and unmap 1.4 MiB at
        720p on every frame. libx264 copies the picture into its own before `encode`
        returns; should libavcodec still hold the buffer, `make_writable` gives the
        frame a new one first (docs/adr/0019-agent-memory-and-uplink-benchmarks.md).
        """
        frame = self._frame
        frame.make_writable()
        h, w = self.height, self.width
        flat = image.reshape(-1)
        luma, chroma = h * w, (h // 2) * (w // 2)
        sources = (
            flat[:luma].reshape(h, w),
            flat[luma : luma + chroma].reshape(h // 2, w // 2),
            flat[luma + chroma :].reshape(h // 2, w // 2),
        )
        for plane, source in zip(frame.planes, sources, strict=True):
            rows = np.frombuffer(memoryview(plane), np.uint8, plane.line_size * plane.height)
            view = rows.reshape(plane.height, plane.line_size)[:, : plane.width]
            np.copyto(view, source)
        return frame

    def encode(
        self, image: Yuv420Image, index: int, pts_s: float | None = None
    ) -> tuple[EncodedPacket, ...]:
        """Encode frame `index`; returns the access units that came out (normally one)."""
        if image.shape != (self.height * 3 // 2, self.width) or image.dtype != np.uint8:
            raise CameraError(
                f"encoder expects I420 {self.width}x{self.height} uint8, got {image.shape}"
            )
        frame = self._picture(image)
        pts = index if pts_s is None else round(pts_s * self._rate)
        pts = max(pts, self._last_pts + 1)
        self._last_pts = pts
        frame.pts = pts
        try:
            packets = self._ctx.encode(frame)
        except av.error.FFmpegError as exc:
            raise CameraError(f"libx264 rejected frame {index}: {exc}") from exc
        return tuple(self._convert(packet) for packet in packets)

    def flush(self) -> tuple[EncodedPacket, ...]:
        """Drain the encoder at the end of the stream."""
        try:
            packets = self._ctx.encode(None)
        except av.error.FFmpegError as exc:
            raise CameraError(f"libx264 failed to flush: {exc}") from exc
        return tuple(self._convert(packet) for packet in packets)

    def _convert(self, packet: av.Packet[Any]) -> EncodedPacket:
        pts = packet.pts if packet.pts is not None else 0
        return EncodedPacket(
            data=bytes(packet), pts_s=float(pts / self._rate), keyframe=packet.is_keyframe
        )
