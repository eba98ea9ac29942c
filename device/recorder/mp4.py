"""Fragmented MP4 muxing of Annex-B H.264 packets, streamed into any writer.

The mp4 muxer runs with ``frag_keyframe+empty_moov+default_base_moof``: the `moov` box
is written first with no samples, then one `moof`+`mdat` fragment per group of
pictures, so the output never needs a seek and every finished fragment is playable
even if the clip is cut short. The muxer needs the stream's SPS/PPS before the header
is written; they are taken from the first packet, which must be a keyframe.

The stream has no codec context (`add_mux_stream`, PyAV 18): PyAV takes the SPS/PPS
for the `avcC` box from that first packet. A stream added by codec name would open
that codec's encoder (libx264, about 5 MiB at 720p) when the header is written, only
to copy packets through, and its `avcC` would hold that idle encoder's parameter sets
rather than the camera's (docs/adr/0019-agent-memory-and-uplink-benchmarks.md).

libavformat writes through its own buffer into `_SinkFile`, a write-only file object
around the clip writer. An exception from the writer is caught there (raising through
C code would leave the muxer in an undefined state), remembered, and re-raised as
`SinkFailed` from the call that caused it.
"""

from __future__ import annotations

import contextlib
from fractions import Fraction
from typing import Any

import av
import av.error

from device.camera.base import EncodedPacket, parameter_sets
from device.recorder.errors import BadStream, SinkFailed
from device.recorder.sink import ClipWriter

TIME_BASE = Fraction(1, 90_000)  # the MPEG clock: exact for 25, 30 and 29.97 fps
MOVFLAGS = "frag_keyframe+empty_moov+default_base_moof"


class _SinkFile:
    """The file object libavformat writes into: write-only, no seek (a stream)."""

    def __init__(self, writer: ClipWriter) -> None:
        self._writer = writer
        self.error: BaseException | None = None
        self.bytes = 0

    def write(self, data: bytes | memoryview) -> int:
        if self.error is None:
            try:
                self._writer.write(bytes(data))
                self.bytes += len(data)
            except Exception as exc:  # any writer failure kills the clip, not the muxer
                self.error = exc
        return len(data)


class FragmentedMp4Muxer:
    """Mux one clip. Packet times are made relative to the first packet's `pts_s`.

    Raises BadStream when the first packet is not a keyframe with SPS/PPS or time runs
    backwards, SinkFailed when the writer fails (the clip is then dead).
    """

    def __init__(self, writer: ClipWriter, *, width: int, height: int, fps: float) -> None:
        self._sink = _SinkFile(writer)
        self._width, self._height = width, height
        self._frame = Fraction(1, 1) / Fraction(fps).limit_denominator(1001)
        self._container: Any = None
        self._stream: Any = None
        self._base: float | None = None
        self._last_pts = -1
        self.first_pts_s: float | None = None
        self.last_pts_s: float | None = None
        self.packets = 0

    @property
    def bytes_written(self) -> int:
        return self._sink.bytes

    def write(self, packet: EncodedPacket) -> None:
        if self._container is None:
            self._open(packet)
        assert self._base is not None
        pts = round((packet.pts_s - self._base) / TIME_BASE)
        if pts <= self._last_pts:
            raise BadStream(f"packet time {packet.pts_s:.3f}s does not increase; skipped")
        self._last_pts = pts
        av_packet = av.Packet(packet.data)
        av_packet.stream = self._stream
        av_packet.time_base = TIME_BASE
        av_packet.pts = pts
        av_packet.dts = pts
        av_packet.duration = round(self._frame / TIME_BASE)
        av_packet.is_keyframe = packet.keyframe
        try:
            self._container.mux(av_packet)
        except av.error.FFmpegError as exc:
            self._raise_sink_error()
            raise SinkFailed(
                f"mp4 muxer rejected a packet: {exc}", exc, from_writer=False
            ) from exc
        self._raise_sink_error()
        self.last_pts_s = packet.pts_s
        self.packets += 1

    def close(self) -> None:
        """Write the last fragment. Raises SinkFailed when the writer failed."""
        if self._container is None:
            return
        container, self._container = self._container, None
        try:
            container.close()
        except av.error.FFmpegError as exc:
            self._raise_sink_error()
            raise SinkFailed(f"mp4 muxer failed to finish: {exc}", exc, from_writer=False) from exc
        self._raise_sink_error()

    def discard(self) -> None:
        """Drop the muxer without writing more (the clip is being aborted)."""
        container, self._container = self._container, None
        if container is not None:
            self._sink.error = self._sink.error or RuntimeError("discarded")
            with contextlib.suppress(av.error.FFmpegError):
                container.close()

    def _open(self, first: EncodedPacket) -> None:
        if not first.keyframe:
            raise BadStream("a clip must start on a keyframe")
        try:
            parameter_sets(first.data)  # PyAV reads them from this packet for `avcC`
        except ValueError as exc:
            raise BadStream(str(exc)) from exc
        try:
            container = av.open(self._sink, mode="w", format="mp4", options={"movflags": MOVFLAGS})
            stream = container.add_mux_stream(
                "h264", rate=1 / self._frame, width=self._width, height=self._height
            )
            stream.time_base = TIME_BASE
        except av.error.FFmpegError as exc:
            raise SinkFailed(f"cannot start the mp4 muxer: {exc}", exc, from_writer=False) from exc
        self._container = container
        self._stream = stream
        self._base = first.pts_s
        self.first_pts_s = first.pts_s

    def _raise_sink_error(self) -> None:
        if self._sink.error is not None:
            raise SinkFailed(f"clip writer failed: {self._sink.error}", self._sink.error)
