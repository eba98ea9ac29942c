"""The simulated camera keeps the Camera seam's promises (timeline, Annex-B, keyframes)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Literal

import numpy as np
import pytest

from device.camera import CameraFrame, EncoderSettings, make_camera
from device.camera.base import parameter_sets, split_nal_units
from device.camera.scenes import SCENES, scene
from device.camera.sim import SimCamera
from device.clock import ManualClock
from device.config import CameraSettings
from device.errors import CameraError

START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
ENCODER = EncoderSettings(bitrate=400_000, keyframe_interval_s=1.0)


def small(
    scene_name: Literal["visitor", "passerby", "empty"] = "visitor", seed: int = 1, fps: int = 10
) -> CameraSettings:
    return CameraSettings(
        scene=scene_name,
        seed=seed,
        width=320,
        height=240,
        fps=fps,
        lores_width=160,
        lores_height=120,
        realtime=False,
    )


def read_frames(camera: SimCamera, count: int) -> list[CameraFrame]:
    camera.start()
    frames = []
    for _ in range(count):
        frame = camera.read()
        assert frame is not None
        frames.append(frame)
    camera.stop()
    return frames


def test_timestamps_follow_the_frame_index_not_the_wall_clock() -> None:
    camera = SimCamera(small(), ManualClock(START), encoder=ENCODER)
    frames = read_frames(camera, 25)
    for i, frame in enumerate(frames):
        assert frame.index == i
        assert frame.timestamp == START + timedelta(seconds=i / 10)
        assert frame.lores.shape == (120, 160)
        assert frame.lores.dtype == np.uint8


def test_every_frame_yields_one_access_unit_and_keyframes_carry_parameter_sets() -> None:
    frames = read_frames(SimCamera(small(), ManualClock(START), encoder=ENCODER), 25)
    packets = [p for f in frames for p in f.packets]
    assert len(packets) == 25
    assert [p.pts_s for p in packets] == pytest.approx([i / 10 for i in range(25)])
    keyframes = [i for i, p in enumerate(packets) if p.keyframe]
    assert keyframes == [0, 10, 20]  # a fixed GOP of keyframe_interval_s, no scene cuts
    for i in keyframes:
        types = [unit[0] & 0x1F for unit in split_nal_units(packets[i].data)]
        assert types[:2] == [7, 8]  # SPS, PPS ...
        assert 5 in types  # ... then the IDR slice
        assert parameter_sets(packets[i].data).startswith(b"\x00\x00\x00\x01\x67")
    with pytest.raises(ValueError, match="SPS/PPS"):
        parameter_sets(packets[1].data)


def test_the_same_seed_renders_the_same_scene_and_another_seed_does_not() -> None:
    a = read_frames(SimCamera(small(seed=7), ManualClock(START), encoder=ENCODER), 3)
    b = read_frames(SimCamera(small(seed=7), ManualClock(START), encoder=ENCODER), 3)
    c = read_frames(SimCamera(small(seed=8), ManualClock(START), encoder=ENCODER), 3)
    assert all(np.array_equal(x.lores, y.lores) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(a[0].lores, c[0].lores)


def test_the_scripted_bell_press_reaches_the_bell_callback_on_its_frame() -> None:
    presses: list[datetime] = []
    camera = SimCamera(small(), ManualClock(START), encoder=ENCODER, on_bell=presses.append)
    read_frames(camera, 100)
    assert scene("visitor").bell_presses(10.0) == [8.0]
    assert presses == [START + timedelta(seconds=8.0)]


def test_the_visitor_is_drawn_only_while_the_script_says_they_are_in_view() -> None:
    frames = read_frames(SimCamera(small(), ManualClock(START), encoder=ENCODER), 100)
    empty = frames[10].lores.astype(np.int16)  # t = 1 s, nobody there
    at_door = frames[90].lores.astype(np.int16)  # t = 9 s, waiting at the door
    assert np.abs(at_door - empty).max() > 40
    assert np.abs(frames[20].lores.astype(np.int16) - empty).mean() < 3  # only noise


def test_scripts_of_the_three_scenes() -> None:
    assert SCENES["visitor"].motion_spans(30.0) == [(5.0, 19.5)]
    assert SCENES["passerby"].motion_spans(30.0) == [(3.0, 9.0)]
    assert SCENES["empty"].motion_spans(600.0) == []
    assert SCENES["visitor"].bell_presses(100.0) == [8.0, 53.0, 98.0]  # the scene repeats


def test_read_before_start_and_unknown_scene_are_clear_errors() -> None:
    camera = SimCamera(small(), ManualClock(START), encoder=ENCODER)
    with pytest.raises(CameraError, match="before start"):
        camera.read()
    with pytest.raises(KeyError, match="known scenes: visitor, passerby, empty"):
        scene("burglar")


def test_factory_builds_the_simulator_and_names_a_missing_pi_library() -> None:
    camera = make_camera(small(), ManualClock(START), encoder=ENCODER)
    assert isinstance(camera, SimCamera)
    assert (camera.width, camera.height, camera.fps) == (320, 240, 10.0)
    pi = CameraSettings(source="pi")
    try:
        import picamera2  # noqa: F401
    except ImportError:
        with pytest.raises(CameraError, match="picamera2"):
            make_camera(pi, ManualClock(START), encoder=ENCODER)
