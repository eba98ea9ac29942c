"""PiCamera against the picamera2 stand-in, up to a sealed clip the owner can play.

tests/standins/picamera2 keeps picamera2 0.3.36's names, signatures, defaults and call
order (tests/standins/README.md lists each behaviour and its upstream file); both of its
H.264 encoders (the V4L2 one of a Pi 4 on its poll thread, the libav one of a Pi 5 on the
camera's thread) encode with libx264 (PyAV), so real H.264 access units go through
PiCamera's Output. The end-to-end test runs the real
agent with `camera.source = "pi"` and `button.kind = "gpio"` (both stand-ins), presses
the button, and opens the sealed clip with the `age` CLI and the owner's key: ffprobe
must see H.264 at the configured size. tests/standins is on sys.path only in this file's
tests (the `standins` fixture).
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from device.agent import Agent
from device.camera.base import EncodedPacket, EncoderSettings, parameter_sets
from device.camera.factory import make_camera
from device.camera.pi import PiCamera
from device.clock import ManualClock, OffsetClock
from device.config import CameraSettings
from device.errors import CameraError
from tests.fixtures.agent import AgentEnv

STANDINS = Path(__file__).resolve().parents[1] / "standins"
SETTINGS = CameraSettings(
    source="pi", width=320, height=240, fps=10, lores_width=160, lores_height=120
)
ENCODER = EncoderSettings(bitrate=400_000, keyframe_interval_s=1.0)
EXPECTED_START = [
    "Picamera2.global_camera_info()",
    "Picamera2()",
    "create_video_configuration()",
    "configure()",
    "H264Encoder(bitrate=400000, repeat=True, iperiod=10, framerate=10.0)",
    "start_recording()",
    "start_encoder()",
    "start()",
]
EXPECTED_STOP = ["stop_recording()", "stop()", "stop_encoder()", "close()", "stop()"]


def purge_standins() -> None:
    for name in list(sys.modules):
        if name.split(".")[0] in ("picamera2", "gpiozero", "lgpio"):
            del sys.modules[name]


@pytest.fixture
def standins(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, Any]]:
    """(picamera2 rig, gpiozero rig) with tests/standins on sys.path for this test only."""
    monkeypatch.syspath_prepend(str(STANDINS))
    purge_standins()
    import gpiozero
    from gpiozero._standin import RIG as GPIO
    from gpiozero.pins.lgpio import LGPIOFactory
    from picamera2._standin import RIG as CAMERA

    CAMERA.reset()
    GPIO.reset()
    # The header's chip is chosen once per process; here gpiochip0 of a Pi 4.
    gpiozero.Device.pin_factory = LGPIOFactory(chip=0)
    yield CAMERA, GPIO
    purge_standins()


def decode(packets: list[EncodedPacket]) -> list[Any]:
    codec = av.CodecContext.create("h264", "r")
    frames: list[Any] = []
    for packet in packets:
        frames.extend(codec.decode(av.Packet(packet.data)))
    frames.extend(codec.decode(None))
    return frames


def test_real_h264_flows_through_the_output_in_picamera2_call_order(
    standins: tuple[Any, Any],
) -> None:
    rig, _ = standins
    camera = PiCamera(SETTINGS, OffsetClock(), encoder=ENCODER)
    camera.start()
    try:
        frames = [camera.read() for _ in range(25)]
    finally:
        camera.stop()
    camera.stop()  # idempotent
    assert rig.calls == EXPECTED_START + EXPECTED_STOP
    assert rig.held_buffers == 0  # every captured request went back to libcamera
    assert rig.dropped_frames == 0

    shots = [frame for frame in frames if frame is not None]
    assert [frame.index for frame in shots] == list(range(25))
    # Frame times follow the sensor: exactly one frame period apart.
    steps = {
        round((b.timestamp - a.timestamp).total_seconds(), 6) for a, b in itertools.pairwise(shots)
    }
    assert steps == {0.1}
    # The lores image is the Y plane, cropped out of picamera2's padded rows.
    from picamera2._standin import flat_scene

    assert shots[20].lores.shape == (120, 160)
    assert shots[20].lores.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(shots[20].lores, flat_scene(2.0, 160, 120)[:120])

    packets = [packet for frame in shots for packet in frame.packets]
    assert len(packets) >= 20
    assert packets[0].keyframe
    assert parameter_sets(packets[0].data)  # SPS and PPS in front of every IDR
    keyframes = [packet for packet in packets if packet.keyframe]
    assert len(keyframes) >= 2
    for key in keyframes:
        assert parameter_sets(key.data)
    pts = [packet.pts_s for packet in packets]
    assert pts == sorted(pts)
    assert len(set(pts)) == len(pts)
    assert pts[0] == 0.0  # the first packet encodes frame 0
    decoded = decode(packets)
    assert len(decoded) == len(packets)
    assert {(frame.width, frame.height) for frame in decoded} == {(320, 240)}


@pytest.mark.slow
def test_the_agent_seals_a_pi_clip_the_owner_opens_with_age(
    standins: tuple[Any, Any], agent_env: AgentEnv
) -> None:
    camera_rig, gpio = standins
    # The press must land while the square crosses (scene time 1.5 s to 3.5 s): the scene
    # itself says when the sensor reaches 2.5 s, however long the agent took to start.
    crossing = camera_rig.scene
    midway = threading.Event()

    def scene(t: float, width: int, height: int) -> Any:
        if t >= 2.5:
            midway.set()
        return crossing(t, width, height)

    camera_rig.scene = scene
    agent_env.write_config(
        camera={
            "source": "pi",
            "width": 320,
            "height": 240,
            "fps": 10,
            "lores_width": 160,
            "lores_height": 120,
        },
        recorder={"pre_roll_s": 1.0, "post_roll_s": 1.0, "bitrate": 400_000},
        button={"kind": "gpio", "pin": 17, "pull_up": True, "bounce_s": 0.05},
    )
    agent = Agent.from_config(agent_env.config(), clock=OffsetClock())
    runner = threading.Thread(target=agent.run, kwargs={"duration_s": 6.0})
    runner.start()
    try:
        assert midway.wait(timeout=60), "the stand-in sensor never reached 2.5 s"
        assert gpio.press(17)
    finally:
        runner.join(timeout=30)
    assert not runner.is_alive()

    clips = agent_env.clips()
    assert len(clips) == 1
    clip = clips[0]
    assert clip.state.value == "sealed"
    assert clip.complete
    kinds = [event.kind for event in clip.events]
    assert "motion_start" in kinds
    assert "button" in kinds
    assert clip.end is not None
    assert clip.end - clip.start >= timedelta(seconds=2)

    sealed = agent_env.clip_path(clip.id)
    assert b"ftyp" not in sealed.read_bytes()  # sealed, not plaintext
    playable = agent_env.root / "clip.mp4"
    result = agent_env.decrypt(sealed, playable)
    assert result.returncode == 0, result.stderr
    probe = json.loads(
        subprocess.run(
            [
                "ffprobe",
                "-v",
                "error",
                "-of",
                "json",
                "-count_frames",
                "-show_entries",
                "stream=codec_name,width,height,nb_read_frames:format=format_name,duration",
                str(playable),
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    stream = probe["streams"][0]
    assert (stream["codec_name"], stream["width"], stream["height"]) == ("h264", 320, 240)
    assert int(stream["nb_read_frames"]) >= 20
    assert "mp4" in probe["format"]["format_name"]
    assert float(probe["format"]["duration"]) >= 2.0


def test_a_failure_on_the_encoder_thread_surfaces_in_read(standins: tuple[Any, Any]) -> None:
    rig, _ = standins
    camera = PiCamera(SETTINGS, OffsetClock(), encoder=ENCODER)
    camera.start()
    try:
        camera.read()
        # picamera2 hands the output something that is not a buffer: the output must
        # not raise on the encoder's thread, only flag itself dead.
        broken = threading.Thread(target=rig.encoders[-1].outputframe, args=(None, True, 0))
        broken.start()
        broken.join()
        with pytest.raises(CameraError, match=r"H\.264 output failed: .*no buffer"):
            camera.read()
    finally:
        camera.stop()


def test_a_stalled_encoder_is_reported(standins: tuple[Any, Any]) -> None:
    rig, _ = standins
    mono = [0.0]
    camera = PiCamera(SETTINGS, OffsetClock(), encoder=ENCODER, monotonic=lambda: mono[0])
    camera.start()
    try:
        camera.read()
        camera.read()
        rig.encoder_stalled = True
        time.sleep(0.3)
        camera.read()  # drains what came before the stall
        mono[0] += 6.0
        with pytest.raises(CameraError, match="delivered nothing"):
            camera.read()
    finally:
        camera.stop()


def test_a_wall_clock_step_ends_the_timeline(standins: tuple[Any, Any]) -> None:
    clock = ManualClock(datetime(1970, 1, 1, 0, 1, tzinfo=UTC))  # a Pi before NTP
    camera = PiCamera(SETTINGS, clock, encoder=ENCODER)
    camera.start()
    try:
        camera.read()
        clock.set(datetime(2026, 5, 4, 9, 30, tzinfo=UTC), synchronized=True)
        with pytest.raises(CameraError, match="wall clock stepped"):
            camera.read()
    finally:
        camera.stop()


def test_no_camera_attached_is_named(standins: tuple[Any, Any]) -> None:
    rig, _ = standins
    rig.cameras = []
    camera = PiCamera(SETTINGS, OffsetClock(), encoder=ENCODER)
    with pytest.raises(CameraError, match="no camera found"):
        camera.start()
    assert rig.calls == ["Picamera2.global_camera_info()"]


def test_a_camera_in_use_is_released_and_named(standins: tuple[Any, Any]) -> None:
    first = PiCamera(SETTINGS, OffsetClock(), encoder=ENCODER)
    first.start()
    try:
        second = PiCamera(SETTINGS, OffsetClock(), encoder=ENCODER)
        with pytest.raises(CameraError, match="in use"):
            second.start()
    finally:
        first.stop()


def test_impossible_sizes_are_refused_before_the_camera_opens(standins: tuple[Any, Any]) -> None:
    rig, _ = standins
    with pytest.raises(CameraError, match="lores stream cannot be larger"):
        PiCamera(
            SETTINGS.model_copy(update={"lores_width": 640, "lores_height": 480}),
            OffsetClock(),
            encoder=ENCODER,
        )
    with pytest.raises(CameraError, match="even size"):
        PiCamera(SETTINGS.model_copy(update={"width": 321}), OffsetClock(), encoder=ENCODER)
    assert rig.calls == []


def test_read_before_start_is_an_error(standins: tuple[Any, Any]) -> None:
    camera = PiCamera(SETTINGS, OffsetClock(), encoder=ENCODER)
    with pytest.raises(CameraError, match="before start"):
        camera.read()


def test_missing_picamera2_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    purge_standins()
    monkeypatch.setitem(sys.modules, "picamera2", None)  # import picamera2 -> ImportError
    with pytest.raises(CameraError) as info:
        make_camera(SETTINGS, OffsetClock(), encoder=ENCODER)
    assert "sudo apt install python3-picamera2" in str(info.value)
    assert "--system-site-packages" in str(info.value)


@pytest.mark.parametrize("platform", ["VC4", "PISP"])
def test_the_encoder_runs_at_the_configured_frame_rate(
    standins: tuple[Any, Any], platform: str
) -> None:
    # picamera2 gives the V4L2 encoder min(sensor limit, 30) fps and the libav one 30:
    # at 10 fps, rate control would spend a third of the bitrate.
    rig, _ = standins
    rig.platform = platform
    camera = PiCamera(SETTINGS, OffsetClock(), encoder=ENCODER)
    camera.start()
    try:
        frames = [camera.read() for _ in range(12)]
    finally:
        camera.stop()
    encoder = rig.encoders[-1]
    assert type(encoder).__name__ == ("H264Encoder" if platform == "VC4" else "LibavH264Encoder")
    assert encoder.framerate == 10.0
    packets = [packet for frame in frames if frame is not None for packet in frame.packets]
    assert packets
    assert packets[0].keyframe
    assert rig.held_buffers == 0


def test_a_stalled_camera_raises_within_the_capture_timeout_and_flushes(
    standins: tuple[Any, Any],
) -> None:
    rig, _ = standins
    camera = PiCamera(SETTINGS, OffsetClock(), encoder=ENCODER)
    camera.start()
    outcome: list[BaseException | None] = []

    def read_stalled() -> None:
        try:
            for _ in range(3):  # the newest frame from before the stall may be queued
                camera.read()
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    try:
        camera.read()
        rig.sensor_stalled = True  # the cable comes loose: no frame ever completes
        reader = threading.Thread(target=read_stalled, daemon=True)
        reader.start()
        reader.join(timeout=15)
        assert not reader.is_alive(), "read() waited for ever on a stalled camera"
        assert len(outcome) == 1
        assert isinstance(outcome[0], CameraError)
        assert "no frame from the camera in 2.0 s" in str(outcome[0])
        assert "cancel_all_and_flush()" in rig.calls
        rig.sensor_stalled = False  # the camera comes back: nothing holds its buffers
        time.sleep(0.5)
    finally:
        camera.stop()
    assert rig.held_buffers == 0
    assert rig.dropped_frames == 0


def test_a_failed_start_stops_the_encoder_it_started(standins: tuple[Any, Any]) -> None:
    rig, _ = standins
    rig.fail_start = "Failed to start camera"
    camera = PiCamera(SETTINGS, OffsetClock(), encoder=ENCODER)
    with pytest.raises(CameraError, match="Failed to start camera"):
        camera.start()
    (encoder,) = rig.encoders
    assert not encoder.running
    assert not encoder.thread_alive
    assert rig.calls[-3:] == ["stop_encoder()", "close()", "stop()"]
    rig.fail_start = None
    camera.start()  # the retry opens the camera again: the first one was closed
    camera.stop()


def test_a_busy_camera_names_picamera2s_error(standins: tuple[Any, Any]) -> None:
    first = PiCamera(SETTINGS, OffsetClock(), encoder=ENCODER)
    first.start()
    try:
        second = PiCamera(SETTINGS, OffsetClock(), encoder=ENCODER)
        with pytest.raises(CameraError, match="Camera __init__ sequence did not complete"):
            second.start()
    finally:
        first.stop()


def test_requests_never_released_starve_the_stand_in_sensor(standins: tuple[Any, Any]) -> None:
    # The stand-in's buffer pool is what makes the other tests' `dropped_frames == 0` and
    # `held_buffers == 0` mean something: a holder that never releases starves it.
    rig, _ = standins
    from picamera2 import Picamera2

    camera = Picamera2()
    camera.configure(
        camera.create_video_configuration(
            main={"size": (320, 240), "format": "YUV420"},
            controls={"FrameRate": 30.0},
            buffer_count=3,
        )
    )
    camera.start()
    try:
        held = [camera.capture_request(wait=2.0) for _ in range(3)]
        with pytest.raises(TimeoutError):
            camera.capture_request(wait=0.5)  # every buffer is held: no frame completes
        assert rig.dropped_frames > 0
        camera.cancel_all_and_flush()
        for request in held:
            request.release()
        camera.capture_request(wait=2.0).release()  # buffers back: frames flow again
    finally:
        camera.close()
    assert rig.held_buffers == 0


def read_past_the_queued_frame(camera: PiCamera) -> None:
    for _ in range(3):  # the newest frame from before the stall may still be queued
        camera.read()


def test_a_frame_that_completes_as_the_job_is_flushed_is_released(
    standins: tuple[Any, Any],
) -> None:
    # Between the capture timeout and the flush a frame may still complete: the job
    # then holds a request nobody asked for, which must go back to the sensor.
    rig, _ = standins
    camera = PiCamera(SETTINGS, OffsetClock(), encoder=ENCODER)
    camera.start()
    try:
        camera.read()
        rig.sensor_stalled = True
        rig.frame_at_flush = True
        with pytest.raises(CameraError, match="no frame from the camera"):
            read_past_the_queued_frame(camera)
        assert not rig.frame_at_flush  # the race was played
    finally:
        camera.stop()
    assert rig.held_buffers == 0
