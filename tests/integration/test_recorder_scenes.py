"""Recording the three simulated scenes end to end with the real agent and sealed store.

The scene scripts (device.camera.scenes) are the ground truth: each clip must start
one pre-roll before the motion the script describes (on a keyframe, so within one GOP
= 1 s), end one post-roll after it, and carry the events the script caused.
"""

from __future__ import annotations

import json
import subprocess
from datetime import timedelta
from pathlib import Path
from typing import Any

from device.camera.scenes import SCENES
from tests.fixtures.agent import T0, TEST_CAMERA, TEST_RECORDER, AgentEnv

PRE = TEST_RECORDER["pre_roll_s"]
POST = TEST_RECORDER["post_roll_s"]
TOLERANCE = timedelta(seconds=1)


def scene_time(seconds: float) -> timedelta:
    return timedelta(seconds=seconds)


def ffprobe(path: Path, *entries: str) -> Any:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-of", "json", "-show_entries", ":".join(entries), str(path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return json.loads(out)


def test_visitor_yields_one_clip_covering_the_visit_with_pre_roll_and_the_bell(
    agent_env: AgentEnv,
) -> None:
    clips = agent_env.run("visitor", 30.0)
    assert len(clips) == 1
    clip = clips[0]
    [(enter, leave)] = SCENES["visitor"].motion_spans(30.0)
    assert clip.end is not None
    assert abs(clip.start - (T0 + scene_time(enter - PRE))) <= TOLERANCE
    assert clip.start <= T0 + scene_time(enter - PRE)  # the pre-roll is never cut short
    assert abs(clip.end - (T0 + scene_time(leave + POST))) <= TOLERANCE
    kinds = [event.kind for event in clip.events]
    assert kinds == ["motion_start", "button", "motion_end"]
    [bell] = SCENES["visitor"].bell_presses(30.0)
    button = next(e for e in clip.events if e.kind == "button")
    assert abs(button.at - (T0 + scene_time(bell))) <= timedelta(seconds=1 / TEST_CAMERA["fps"])
    motion_start = next(e for e in clip.events if e.kind == "motion_start")
    assert abs(motion_start.at - (T0 + scene_time(enter))) <= TOLERANCE
    assert clip.state == "sealed"
    assert clip.complete


def test_passerby_yields_one_short_clip(agent_env: AgentEnv) -> None:
    clips = agent_env.run("passerby", 30.0)
    assert len(clips) == 1
    clip = clips[0]
    [(enter, leave)] = SCENES["passerby"].motion_spans(30.0)
    assert clip.end is not None
    # The pre-roll is limited by the start of the stream (3 s of motion-free video).
    assert abs(clip.start - (T0 + scene_time(max(0.0, enter - PRE)))) <= TOLERANCE
    assert abs(clip.end - (T0 + scene_time(leave + POST))) <= TOLERANCE
    assert (clip.end - clip.start) <= scene_time(leave + POST) + TOLERANCE
    assert [e.kind for e in clip.events] == ["motion_start", "motion_end"]


def test_empty_scene_with_noise_and_lighting_drift_yields_no_clip(agent_env: AgentEnv) -> None:
    assert agent_env.run("empty", 60.0) == []
    status = json.loads((agent_env.state_dir / "status.json").read_text())
    assert status["camera"]["frames"] >= 60 * TEST_CAMERA["fps"]
    assert status["clips_sealed"] == 0
    assert status["recording"] is False


def test_the_owner_opens_a_sealed_clip_with_age_and_gets_the_configured_h264(
    agent_env: AgentEnv, tmp_path: Path
) -> None:
    agent_env.write_config(camera={"width": 640, "height": 360})
    [clip] = agent_env.run("visitor", 30.0)
    sealed = agent_env.clip_path(clip.id)
    plain = tmp_path / "clip.mp4"
    result = agent_env.decrypt(sealed, plain)
    assert result.returncode == 0, result.stderr
    info = ffprobe(plain, "stream=codec_name,width,height,r_frame_rate", "format=duration")
    [stream] = info["streams"]
    assert stream["codec_name"] == "h264"
    assert (stream["width"], stream["height"]) == (640, 360)
    assert stream["r_frame_rate"] == "15/1"
    assert clip.end is not None
    expected = (clip.end - clip.start).total_seconds()
    duration = float(info["format"]["duration"])
    assert abs(duration - expected) <= 1 / 15 + 1e-3
    frames = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-select_streams",
            "v",
            "-show_entries",
            "frame=key_frame,pict_type",
            "-of",
            "csv=p=0",
            str(plain),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert frames[0].startswith("1")  # the first frame decoded is a keyframe (IDR)
    assert len(frames) == round(expected * 15)
    assert plain.read_bytes()[4:8] == b"ftyp"
    # Fragmented: the header has no samples; fragments follow.
    head = plain.read_bytes()
    assert b"mvex" in head[:4096]
    assert head.count(b"moof") >= int(expected) - 1


def test_visitor_with_the_default_pre_and_post_roll(agent_env: AgentEnv) -> None:
    # recorder defaults: 5 s pre-roll, 10 s post-roll (the numbers)
    agent_env.write_config(recorder={"pre_roll_s": 5.0, "post_roll_s": 10.0})
    clips = agent_env.run("visitor", 40.0)
    assert len(clips) == 1
    [(enter, leave)] = SCENES["visitor"].motion_spans(40.0)
    clip = clips[0]
    assert clip.end is not None
    assert clip.start == T0 + scene_time(enter - 5.0)  # the keyframe at 0 s: all of it
    assert abs(clip.end - (T0 + scene_time(leave + 10.0))) <= TOLERANCE
    assert [e.kind for e in clip.events] == ["motion_start", "button", "motion_end"]
