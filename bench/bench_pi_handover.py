"""Cost of the Pi camera's hand-over, per frame, against plain copies of the same bytes.

On a Pi the encoder thread calls `PacketSink.accept` for every access unit and the
camera loop crops the lores Y plane out of picamera2's padded YUV420 buffer, 30 times a
second, on a CPU far slower than this one. Both must cost next to nothing beside the
copy that cannot be avoided (picamera2 reuses its mmap'd buffers, so the bytes must be
copied once):

1. `PacketSink.accept` + `drain` of a 2 Mbit/s 720p30 stream (a 60 KiB IDR with SPS/PPS
   every 30 frames, 7 KiB P-frames) against the same copies handed over without any
   checks (the ratio is the price of the checks, lock and keyframe scan). Target: the
   hand-over and the crop together take under 1 % of a 30 fps frame's 33 ms here (a Pi 4
   core is roughly 5-10x slower, which keeps it under 10 % there).
2. The Y-plane crop of a 320x240 YUV420 buffer with a 384-byte stride against
   `np.copy` of the whole buffer (for information; counted in the target below).

Best of five runs each, alternating. Run: .venv/bin/python bench/bench_pi_handover.py
"""

from __future__ import annotations

import os
import sys
import time
from collections import deque
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._report import ratio_line
from device.camera.pi_output import PacketSink

FRAMES = 3000  # 100 s of video at 30 fps
SPS_PPS = b"\x00\x00\x00\x01\x67\x64\x00\x28" + bytes(12) + b"\x00\x00\x00\x01\x68\xee\x3c\x80"


def stream() -> list[tuple[memoryview, bool, int]]:
    idr = SPS_PPS + b"\x00\x00\x00\x01\x65" + os.urandom(60 * 1024)
    p_frame = b"\x00\x00\x00\x01\x41" + os.urandom(7 * 1024)
    units = []
    for index in range(FRAMES):
        key = index % 30 == 0
        units.append((memoryview(idr if key else p_frame), key, index * 33_333))
    return units


def run_sink(units: list[tuple[memoryview, bool, int]]) -> float:
    sink = PacketSink(1024)
    start = time.perf_counter()
    for number, (data, key, ts) in enumerate(units):
        sink.accept(data, key, ts)
        if number % 2:  # the loop drains about once per frame
            sink.drain()
    sink.drain()
    elapsed = time.perf_counter() - start
    assert sink.dead is None
    assert sink.dropped == 0
    return elapsed


def run_copy(units: list[tuple[memoryview, bool, int]]) -> float:
    # The same copies, kept and handed over in the same rhythm, without any checks.
    kept: deque[tuple[bytes, bool, int]] = deque()
    start = time.perf_counter()
    for number, (data, key, ts) in enumerate(units):
        kept.append((bytes(data), key, ts))
        if number % 2:
            list(kept)
            kept.clear()
    return time.perf_counter() - start


def crop_times() -> tuple[float, float]:
    width, height, stride = 320, 240, 384
    buffer = np.random.default_rng(1).integers(
        0, 255, size=(height * 3 // 2, stride), dtype=np.uint8
    )
    start = time.perf_counter()
    for _ in range(FRAMES):
        plane = np.ascontiguousarray(buffer[:height, :width])
    crop = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(FRAMES):
        whole = np.copy(buffer)
    copy = time.perf_counter() - start
    assert plane.shape == (height, width)
    assert whole.shape == buffer.shape
    return crop, copy


def main() -> None:
    units = stream()
    sink_best, copy_best, crop_best, whole_best = (float("inf"),) * 4
    for _ in range(5):
        sink_best = min(sink_best, run_sink(units))
        copy_best = min(copy_best, run_copy(units))
        crop, whole = crop_times()
        crop_best = min(crop_best, crop)
        whole_best = min(whole_best, whole)
    per_frame = 1e6 / FRAMES
    print(
        ratio_line(
            "PacketSink accept+drain, per access unit",
            sink_best * per_frame,
            copy_best * per_frame,
            "us",
            "with checks vs without",
        )
    )
    print(
        ratio_line(
            "lores Y-plane crop 320x240 (stride 384), per frame",
            crop_best * per_frame,
            whole_best * per_frame,
            "us",
            "for information: vs copying it all",
        )
    )
    budget_us = 1e6 / 30
    share = (sink_best + crop_best) * per_frame / budget_us
    print(
        f"{'hand-over + crop, share of a 30 fps frame':<48} {share * 100:12.3f} %"
        f"        (target: < 1 % here: {'met' if share < 0.01 else 'MISSED'})"
    )


if __name__ == "__main__":
    main()
