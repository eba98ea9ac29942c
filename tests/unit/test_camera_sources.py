"""The file and webcam cameras: what can be tested without hardware."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from device.camera import EncoderSettings, make_camera
from device.camera.base import split_nal_units
from device.camera.file import FileCamera
from device.camera.v4l2 import V4L2Camera
from device.clock import ManualClock
from device.config import CameraSettings
from device.errors import CameraError

START = datetime(2026, 5, 4, tzinfo=UTC)
ENCODER = EncoderSettings(bitrate=300_000, keyframe_interval_s=1.0)


def settings(**values: object) -> CameraSettings:
    base: dict[str, object] = {
        "width": 320,
        "height": 240,
        "fps": 10,
        "lores_width": 160,
        "lores_height": 120,
        "realtime": False,
    }
    base.update(values)
    return CameraSettings.model_validate(base)


@pytest.fixture
def video(tmp_path: Path) -> Path:
    """A 3 s, 25 fps VP9 WebM at 400x300: another codec, rate and size than we record."""
    path = tmp_path / "doorstep.webm"
    subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=400x300:rate=25:duration=3",
            "-c:v",
            "libvpx-vp9",
            "-deadline",
            "realtime",
            "-b:v",
            "200k",
            str(path),
        ],
        check=True,
    )
    return path


def test_file_camera_replays_any_video_as_the_seam_promises(video: Path) -> None:
    camera = make_camera(settings(source="file", file=video), ManualClock(START), encoder=ENCODER)
    assert isinstance(camera, FileCamera)
    camera.start()
    frames = []
    while (frame := camera.read()) is not None:
        frames.append(frame)
    camera.stop()
    assert camera.fps == 25.0  # the file's own rate
    assert len(frames) == 75
    assert frames[-1].timestamp == START + timedelta(seconds=74 / 25)
    assert all(f.lores.shape == (120, 160) and f.lores.dtype == np.uint8 for f in frames)
    packets = [p for f in frames for p in f.packets]
    assert len(packets) == 75
    keyframes = [i for i, p in enumerate(packets) if p.keyframe]
    assert keyframes == [0, 25, 50]
    assert [u[0] & 0x1F for u in split_nal_units(packets[25].data)][:2] == [7, 8]


def test_file_camera_names_a_missing_or_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(CameraError, match=r"needs camera\.file"):
        make_camera(settings(source="file"), ManualClock(START), encoder=ENCODER)
    missing = FileCamera(settings(file=tmp_path / "nope.mp4"), ManualClock(START), encoder=ENCODER)
    with pytest.raises(CameraError, match=r"cannot open video file .*nope\.mp4"):
        missing.start()
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"this is not a video" * 100)
    with pytest.raises(CameraError, match=r"junk\.mp4"):
        FileCamera(settings(file=junk), ManualClock(START), encoder=ENCODER).start()


def test_v4l2_camera_says_clearly_that_the_device_is_missing() -> None:
    camera = make_camera(
        settings(source="v4l2", v4l2_device="/dev/video-doorbell-missing"),
        ManualClock(START),
        encoder=ENCODER,
    )
    assert isinstance(camera, V4L2Camera)
    with pytest.raises(CameraError, match="/dev/video-doorbell-missing does not exist"):
        camera.start()
    with pytest.raises(CameraError, match="before start"):
        camera.read()


def test_v4l2_camera_refuses_a_path_that_is_not_a_video_device(tmp_path: Path) -> None:
    fake = tmp_path / "video0"
    fake.write_bytes(b"")
    camera = V4L2Camera(settings(v4l2_device=str(fake)), ManualClock(START), encoder=ENCODER)
    with pytest.raises(CameraError, match="cannot open V4L2 device"):
        camera.start()
