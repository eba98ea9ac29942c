"""PacketSink: the hand-over from picamera2's encoder thread never raises, never lets a
broken GOP through, and keeps the seam's promise of SPS/PPS before every keyframe."""

from __future__ import annotations

import numpy as np

from device.camera.pi_output import PacketSink, header_prefix

SPS = b"\x00\x00\x00\x01\x67\x42\x00\x1e"
PPS = b"\x00\x00\x00\x01\x68\xce\x3c\x80"
IDR = b"\x00\x00\x00\x01\x65\x88\x84"
P = b"\x00\x00\x00\x01\x41\x9a"


def test_an_overrun_drops_up_to_the_next_keyframe() -> None:
    sink = PacketSink(3)
    sink.accept(SPS + PPS + IDR, True, 0)
    sink.accept(P, False, 100)
    sink.accept(P, False, 200)
    sink.accept(P, False, 300)  # queue full: dropped, and the GOP with it
    sink.accept(P, False, 400)  # would not decode without 300: dropped
    assert [u.timestamp_us for u in sink.drain()] == [0, 100, 200]
    sink.accept(P, False, 500)  # still waiting for a keyframe
    sink.accept(SPS + PPS + IDR, True, 600)
    sink.accept(P, False, 700)
    assert [u.timestamp_us for u in sink.drain()] == [600, 700]
    assert sink.dropped == 3
    assert sink.dead is None


def test_a_keyframe_without_parameter_sets_gets_the_last_ones() -> None:
    sink = PacketSink(8)
    sink.accept(SPS + PPS + IDR, True, 0)
    sink.accept(IDR, True, 1000)
    first, second = sink.drain()
    assert first.data == SPS + PPS + IDR
    assert second.data == SPS + PPS + IDR


def test_a_first_keyframe_without_parameter_sets_kills_the_output() -> None:
    sink = PacketSink(8)
    sink.accept(IDR, True, 0)
    assert sink.dead is not None
    assert "SPS/PPS" in sink.dead
    sink.accept(SPS + PPS + IDR, True, 100)  # a dead output takes nothing more
    assert sink.drain() == []


def test_bad_calls_from_the_encoder_flag_the_output_dead_without_raising() -> None:
    for frame, timestamp, reason in [
        (None, 0, "no buffer"),
        (object(), 0, "not a buffer"),
        (P, None, "timestamp"),
        (P, True, "timestamp"),
    ]:
        sink = PacketSink(8)
        sink.accept(frame, False, timestamp)
        assert reason in (sink.dead or ""), (frame, timestamp)


def test_any_buffer_is_accepted_and_copied() -> None:
    sink = PacketSink(8)
    array = np.frombuffer(SPS + PPS + IDR, dtype=np.uint8).copy()
    sink.accept(array, True, 0)
    array[:] = 0
    assert sink.drain()[0].data == SPS + PPS + IDR


def test_memoryview_buffers_are_copied() -> None:
    sink = PacketSink(8)
    buffer = bytearray(SPS + PPS + IDR)
    sink.accept(memoryview(buffer), True, 0)
    buffer[:] = b"\x00" * len(buffer)  # picamera2 reuses its mmap'd buffer
    assert sink.drain()[0].data == SPS + PPS + IDR


def test_header_prefix_stops_at_the_first_slice() -> None:
    aud = b"\x00\x00\x00\x01\x09\xf0"
    sei = b"\x00\x00\x01\x06\x05\x01"
    assert header_prefix(aud + SPS + PPS + IDR) == aud + SPS + PPS
    assert header_prefix(SPS + sei + PPS + b"\x00\x00\x01\x65\x88") == SPS + sei + PPS
    assert header_prefix(SPS + IDR) is None  # no PPS before the slice
    assert header_prefix(IDR + SPS + PPS) is None  # parameter sets after the slice
    assert header_prefix(b"") is None
