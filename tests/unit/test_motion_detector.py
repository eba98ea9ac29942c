"""Motion detection: what must not trigger (noise, daylight drift, a light switching on,
excluded zones) and what must (an object moving in view)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from device.config import MotionSettings, parse_config
from device.errors import ConfigError
from device.motion import MotionDetector, MotionUpdate

W, H, FPS = 160, 120, 15
T0 = datetime(2026, 5, 4, tzinfo=UTC)
Frame = npt.NDArray[np.uint8]


def background(rng: np.random.Generator) -> npt.NDArray[np.float64]:
    rows = np.linspace(150, 100, H)[:, None] + np.zeros((1, W))
    return rows + rng.normal(0, 6, (H, W))  # a textured wall


def noisy(base: npt.NDArray[np.float64], rng: np.random.Generator, sigma: float = 3.0) -> Frame:
    return np.clip(base + rng.normal(0, sigma, base.shape), 0, 255).astype(np.uint8)


def feed(detector: MotionDetector, frames: list[Frame]) -> list[MotionUpdate]:
    return [
        detector.update(frame, T0 + timedelta(seconds=i / FPS)) for i, frame in enumerate(frames)
    ]


def with_square(
    base: npt.NDArray[np.float64], x: int, y: int, size: int = 16
) -> npt.NDArray[np.float64]:
    out = base.copy()
    out[y : y + size, x : x + size] = 30
    return out


def test_sensor_noise_alone_never_triggers() -> None:
    rng = np.random.default_rng(1)
    base = background(rng)
    updates = feed(
        MotionDetector(MotionSettings(), width=W, height=H),
        [noisy(base, rng, 4.0) for _ in range(300)],
    )
    assert not any(u.changed or u.active for u in updates)


def test_slow_lighting_drift_never_triggers() -> None:
    rng = np.random.default_rng(2)
    base = background(rng)
    # 60 levels over 20 s: much faster than daylight, still not a visitor.
    frames = [noisy(base + 60 * i / (20 * FPS), rng) for i in range(20 * FPS)]
    updates = feed(MotionDetector(MotionSettings(), width=W, height=H), frames)
    assert not any(u.active for u in updates)


def test_a_light_switching_on_does_not_trigger() -> None:
    rng = np.random.default_rng(3)
    base = background(rng)
    frames = [noisy(base, rng) for _ in range(30)] + [noisy(base + 45, rng) for _ in range(30)]
    updates = feed(MotionDetector(MotionSettings(), width=W, height=H), frames)
    assert not any(u.active for u in updates)


def test_a_moving_object_starts_motion_and_quiet_ends_it() -> None:
    rng = np.random.default_rng(4)
    base = background(rng)
    still = [noisy(base, rng) for _ in range(20)]
    moving = [noisy(with_square(base, 10 + 4 * i, 50), rng) for i in range(30)]
    gone = [noisy(base, rng) for _ in range(60)]
    updates = feed(MotionDetector(MotionSettings(), width=W, height=H), still + moving + gone)
    starts = [i for i, u in enumerate(updates) if u.started]
    ends = [i for i, u in enumerate(updates) if u.ended]
    assert len(starts) == 1
    assert 20 <= starts[0] <= 22  # start_frames = 2 consecutive changed frames
    assert len(ends) == 1
    end = updates[ends[0]]
    assert end.ended_at is not None
    # It ended quiet_s (1 s) after the last changed frame, which is near the exit.
    assert ends[0] - round((end.ended_at - T0).total_seconds() * FPS) == FPS
    assert all(u.active for u in updates[starts[0] : ends[0]])
    assert max(u.score for u in updates) > 0.004


def test_a_single_glitched_frame_is_not_motion() -> None:
    rng = np.random.default_rng(5)
    base = background(rng)
    frames = [noisy(base, rng) for _ in range(20)]
    frames[10] = noisy(with_square(base, 40, 40, 40), rng)
    updates = feed(MotionDetector(MotionSettings(), width=W, height=H), frames)
    assert updates[10].changed
    assert not any(u.active for u in updates)


def test_motion_inside_an_exclusion_zone_is_ignored_and_outside_it_is_not() -> None:
    rng = np.random.default_rng(6)
    base = background(rng)
    # The street: the top third of the frame, where cars pass.
    settings = MotionSettings(exclusion_zones=[(0.0, 0.0, 1.0, 0.33)])
    in_zone = [noisy(with_square(base, 10 + 4 * i, 5), rng) for i in range(30)]
    outside = [noisy(with_square(base, 10 + 4 * i, 80), rng) for i in range(30)]
    quiet = [noisy(base, rng) for _ in range(10)]
    zoned = feed(MotionDetector(settings, width=W, height=H), quiet + in_zone)
    assert not any(u.active for u in zoned)
    unzoned = feed(MotionDetector(MotionSettings(), width=W, height=H), quiet + in_zone)
    assert any(u.active for u in unzoned)  # the same frames do trigger without the zone
    zoned_outside = feed(MotionDetector(settings, width=W, height=H), quiet + outside)
    assert any(u.active for u in zoned_outside)


def test_a_frame_of_the_wrong_size_is_refused() -> None:
    detector = MotionDetector(MotionSettings(), width=W, height=H)
    with pytest.raises(ValueError, match=r"expects \(120, 160\)"):
        detector.update(np.zeros((H, W + 1), dtype=np.uint8), T0)


def test_an_exclusion_zone_outside_the_frame_is_a_config_error_naming_the_key() -> None:
    text = (
        '[keys]\nowner_recipient = "age1o"\nescrow_recipient = "age1e"\n'
        "[motion]\nexclusion_zones = [[0.5, 0.5, 0.6, 0.1]]\n"
    )
    with pytest.raises(ConfigError, match=r"agent\.toml: key 'motion\.exclusion_zones'"):
        parse_config(text, Path("agent.toml"))
