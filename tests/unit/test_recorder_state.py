"""The recorder's state machine against an in-memory clip store, with crafted motion.

Real H.264 packets (libx264 at a tiny size) go through the real fMP4 muxer; only the
motion verdicts are scripted here, so each rule is tested on its own: pre-roll on a
keyframe, post-roll, the maximum length, events, and what a failing store does.
"""

from __future__ import annotations

import io
import itertools
import json
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path

import av
import numpy as np
import pytest

from device.camera import CameraFrame, EncodedPacket, EncoderSettings
from device.camera.base import parameter_sets, split_nal_units
from device.camera.h264 import H264Encoder
from device.config import RecorderSettings
from device.motion import MotionUpdate
from device.recorder import Recorder
from device.recorder.preroll import PreRoll
from tests.fixtures.memory_clips import MemoryClip, MemoryStore

FPS = 10
W, H = 64, 64
T0 = datetime(2026, 5, 4, 8, 0, tzinfo=UTC)
QUIET = MotionUpdate(
    changed=False, active=False, started=False, ended=False, score=0.0, last_change=None
)
LORES = np.zeros((8, 8), dtype=np.uint8)


@cache
def packets(seconds: int) -> tuple[EncodedPacket, ...]:
    encoder = H264Encoder(
        width=W,
        height=H,
        fps=FPS,
        settings=EncoderSettings(bitrate=100_000, keyframe_interval_s=1.0),
    )
    out: list[EncodedPacket] = []
    image = np.zeros((H * 3 // 2, W), dtype=np.uint8)
    for i in range(seconds * FPS):
        image[:H] = (i * 7) % 256
        out.extend(encoder.encode(image, i))
    return tuple(out)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def frames(seconds: int) -> Iterator[CameraFrame]:
    for i, packet in enumerate(packets(seconds)):
        yield CameraFrame(timestamp=at(i / FPS), index=i, lores=LORES, packets=(packet,))


def moving(t: float, *, started: bool = False) -> MotionUpdate:
    return MotionUpdate(
        changed=True, active=True, started=started, ended=False, score=0.1, last_change=at(t)
    )


def run(
    recorder: Recorder,
    seconds: int,
    *,
    motion: tuple[float, float] | None = None,
    presses: tuple[float, ...] = (),
    on_frame: dict[int, object] | None = None,
    store: MemoryStore | None = None,
) -> None:
    """Play `seconds` of video; motion is active over `motion` (scene seconds)."""
    for frame in frames(seconds):
        t = frame.index / FPS
        update = QUIET
        if motion is not None and motion[0] <= t < motion[1]:
            update = moving(t, started=frame.index == round(motion[0] * FPS))
        elif motion is not None and frame.index == round(motion[1] * FPS):
            update = MotionUpdate(
                changed=False,
                active=False,
                started=False,
                ended=True,
                score=0.0,
                last_change=at(motion[1] - 0.1),
                ended_at=at(motion[1] - 0.1),
            )
        pressed = [frame.timestamp for p in presses if frame.index == round(p * FPS)]
        if on_frame and frame.index in on_frame and store is not None:
            action = on_frame[frame.index]
            if action == "full":
                store.full = True
            elif action == "space":
                store.full = False
        recorder.process(frame, update, pressed)
    recorder.close()


def make(store: MemoryStore, **settings: float) -> Recorder:
    values = {"pre_roll_s": 3.0, "post_roll_s": 4.0, **settings}
    limits = RecorderSettings.model_validate(values)
    return Recorder(store, limits, width=W, height=H, fps=FPS, retry_s=2.0)


def probe(clip: MemoryClip, tmp_path: Path) -> tuple[float, list[str]]:
    path = tmp_path / "clip.mp4"
    path.write_bytes(bytes(clip.data))
    info = json.loads(
        subprocess.run(
            [
                "ffprobe",
                "-v",
                "error",
                "-of",
                "json",
                "-show_entries",
                "format=duration:stream=codec_name",
                str(path),
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    assert info["streams"][0]["codec_name"] == "h264"
    keys = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-select_streams",
            "v",
            "-show_entries",
            "frame=key_frame",
            "-of",
            "csv=p=0",
            str(path),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return float(info["format"]["duration"]), keys


def test_pre_roll_ring_starts_on_a_keyframe_and_covers_the_span() -> None:
    ring = PreRoll(3.0)
    ring.push(EncodedPacket(b"x", 0.0, keyframe=False))
    assert len(ring) == 0  # nothing to decode a lone delta frame against
    for packet in packets(10):
        ring.push(packet)
        held = ring.drain()
        for p in held:
            ring.push(p)
        assert held[0].keyframe
        span = held[-1].pts_s - held[0].pts_s
        if held[-1].pts_s >= 3.0:
            assert 3.0 <= span + 1e-9 < 3.0 + 1.0  # at least the pre-roll, at most one GOP more


def test_pre_roll_ring_stays_bounded_when_keyframes_stop() -> None:
    ring = PreRoll(3.0, max_gop_s=2.0)
    ring.push(EncodedPacket(b"k", 0.0, keyframe=True))
    for i in range(1, 200):  # 20 s of delta frames: the next keyframe never comes
        ring.push(EncodedPacket(b"d", i / 10, keyframe=False))
        held = ring.drain()
        for p in held:
            ring.push(p)
        assert not held or held[-1].pts_s - held[0].pts_s <= 3.0 + 2.0
    assert len(ring) <= 51
    ring.push(EncodedPacket(b"k", 20.0, keyframe=True))  # the stream recovers
    ring.push(EncodedPacket(b"d", 20.1, keyframe=False))
    held = ring.drain()
    assert held[0].keyframe
    assert held[0].pts_s == 20.0


def test_a_bell_press_alone_opens_a_clip_with_pre_roll_and_post_roll(tmp_path: Path) -> None:
    store = MemoryStore()
    run(make(store), 20, presses=(8.0,))
    [clip] = store.finished
    assert clip.start == at(5.0)  # the keyframe at or before 8.0 - 3
    assert clip.end is not None
    assert abs((clip.end - at(8.0 + 4.0)).total_seconds()) <= 1 / FPS
    assert clip.events == [("button", at(8.0))]
    duration, keys = probe(clip, tmp_path)
    assert keys[0].startswith("1")
    assert abs(duration - (clip.end - clip.start).total_seconds()) < 1e-3


def test_motion_clip_records_start_and_end_events_and_ends_after_post_roll() -> None:
    store = MemoryStore()
    run(make(store), 25, motion=(6.0, 12.0))
    [clip] = store.finished
    assert clip.start == at(3.0)
    assert clip.end is not None
    assert abs((clip.end - at(11.9 + 4.0)).total_seconds()) <= 1 / FPS + 1e-6
    assert [kind for kind, _ in clip.events] == ["motion_start", "motion_end"]
    assert clip.events[0][1] == at(6.0)


def test_a_press_during_post_roll_extends_the_same_clip() -> None:
    store = MemoryStore()
    run(make(store), 25, motion=(5.0, 7.0), presses=(9.0,))
    [clip] = store.finished
    assert [kind for kind, _ in clip.events] == ["motion_start", "motion_end", "button"]
    assert clip.end is not None
    assert abs((clip.end - at(9.0 + 4.0)).total_seconds()) <= 1 / FPS + 1e-6


def test_long_motion_is_cut_at_max_clip_s_into_contiguous_clips_on_keyframes(
    tmp_path: Path,
) -> None:
    store = MemoryStore()
    run(make(store, max_clip_s=5.0), 30, motion=(4.0, 30.0))
    clips = store.finished
    assert len(clips) >= 4
    for before, after in itertools.pairwise(clips):
        assert before.end == after.start  # no gap, no overlap
        assert ("continued", after.start) in after.events
    for clip in clips:
        assert clip.end is not None
        assert (clip.end - clip.start).total_seconds() <= 5.0 + 1e-6
        duration, keys = probe(clip, tmp_path)
        assert keys[0].startswith("1")
        assert abs(duration - (clip.end - clip.start).total_seconds()) < 1e-3


def test_storage_full_stops_new_clips_without_stopping_the_loop_and_recovers() -> None:
    store = MemoryStore(full=True)
    recorder = make(store)
    run(recorder, 12, motion=(4.0, 6.0), on_frame={}, store=store)
    assert store.clips == []
    assert recorder.storage_full
    # Space returns (retention freed some): the next trigger records again.
    store.full = False
    recorder2 = make(store)
    run(recorder2, 12, motion=(4.0, 6.0))
    assert len(store.finished) == 1
    assert not recorder2.storage_full


def test_space_returning_mid_motion_opens_a_clip_after_the_retry_delay() -> None:
    store = MemoryStore(full=True)
    recorder = make(store)
    run(recorder, 20, motion=(4.0, 14.0), on_frame={70: "space"}, store=store)
    [clip] = store.finished
    # Opened at the first retry after 7.0 s (retries every 2 s from 4.0 s: 8.0 s).
    assert clip.start <= at(8.0)
    assert clip.start >= at(8.0 - 3.0 - 1.0)
    assert not recorder.storage_full


def test_a_writer_failing_mid_clip_ends_that_clip_and_recording_continues() -> None:
    store = MemoryStore(fail_writes_after=3000)
    recorder = make(store)
    run(recorder, 40, motion=(4.0, 8.0), presses=(30.0,), on_frame={200: "space"}, store=store)
    first = store.clips[0]
    assert first.aborted  # the dead clip was ended, not left open
    assert recorder.clips_failed >= 1
    assert recorder.last_clip is not None
    assert recorder.storage_full  # the failure was a full disk


def test_a_writer_refusing_an_event_loses_the_label_not_the_video() -> None:
    class Refusing(MemoryStore):
        def open_clip(self, start: datetime, /) -> MemoryClip:
            clip = super().open_clip(start)

            def refuse(kind: str, at: datetime, /) -> None:
                raise ValueError("index unavailable")

            clip.add_event = refuse  # type: ignore[method-assign]
            return clip

    store = Refusing()
    recorder = make(store)
    run(recorder, 20, motion=(4.0, 6.0))
    [clip] = store.finished
    assert not clip.aborted
    assert clip.data[4:8] == b"ftyp"
    assert recorder.clips_failed == 0


@pytest.mark.parametrize("pre_roll", [0.0, 5.0])
def test_the_first_clip_never_starts_before_the_stream_or_off_a_keyframe(
    pre_roll: float, tmp_path: Path
) -> None:
    store = MemoryStore()
    run(make(store, pre_roll_s=pre_roll), 12, presses=(2.5,))
    [clip] = store.finished
    assert clip.start == (at(2.0) if pre_roll == 0.0 else at(0.0))
    _, keys = probe(clip, tmp_path)
    assert keys[0].startswith("1")


def test_a_trigger_soon_after_a_clip_continues_without_a_gap_or_duplicate_pre_roll() -> None:
    store = MemoryStore()
    run(make(store), 25, motion=(4.0, 6.0), presses=(11.0,))
    first, second = store.finished
    assert first.end is not None
    # The second clip would want 3 s of pre-roll (from 8 s) but that video is already in
    # the first clip: it starts on the keyframe at the first packet not yet recorded.
    assert second.start == first.end == at(10.0)
    assert [kind for kind, _ in second.events] == ["button"]


def test_a_reopened_camera_starts_a_new_timeline_and_recording_goes_on() -> None:
    store = MemoryStore()
    recorder = make(store)
    for frame in frames(10):  # the first camera: a press at 6 s
        pressed = [frame.timestamp] if frame.index == 60 else []
        recorder.process(frame, QUIET, pressed)
    recorder.new_stream()  # the camera failed and was reopened: pts start at 0 again
    assert len(store.finished) == 1  # the clip in progress was finished, not lost
    later = timedelta(seconds=30)
    for frame in frames(10):
        moved = CameraFrame(frame.timestamp + later, frame.index, frame.lores, frame.packets)
        pressed = [moved.timestamp] if frame.index == 50 else []
        recorder.process(moved, QUIET, pressed)
    recorder.close()
    first, second = store.finished
    assert first.end is not None
    assert first.end <= at(10.0)
    assert second.start == at(30.0 + 2.0)  # keyframe at or before 5 s - 3 s, new stream
    assert [kind for kind, _ in second.events] == ["button"]
    assert second.data[4:8] == b"ftyp"


def test_a_clip_describes_the_cameras_own_parameter_sets() -> None:
    # The mp4 stream has no encoder of its own: the avcC box holds the SPS and PPS the
    # camera sent with its keyframe, not those of an idle libx264 opened by the muxer.
    store = MemoryStore()
    run(make(store), 12, presses=(6.0,))
    [clip] = store.finished
    with av.open(io.BytesIO(bytes(clip.data))) as container:
        avcc = container.streams.video[0].codec_context.extradata
    assert avcc is not None
    units = split_nal_units(parameter_sets(packets(12)[0].data))
    assert [unit[0] & 0x1F for unit in units] == [7, 8]
    for unit in units:
        assert len(unit).to_bytes(2, "big") + unit in avcc
