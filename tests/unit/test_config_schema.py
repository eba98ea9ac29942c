"""The configuration's schema layer (device/config_schema.py): types as TOML types them,
every problem named at once, frozen sections, copies that replace without checking."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from device.config import CameraSettings, MotionSettings, ReleaseSettings, parse_config
from device.config_schema import SchemaError
from device.errors import ConfigError

KEYS = '[keys]\nowner_recipient = "age1owner"\nescrow_recipient = "age1escrow"\n'


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("fps = true", "Input should be a valid integer"),  # a bool is not an integer
        ("fps = 30.0", "Input should be a valid integer"),
        ('fps = "30"', "Input should be a valid integer"),  # nor is a string
        ("realtime = 1", "Input should be a valid boolean"),
        ('realtime = "yes"', "Input should be a valid boolean"),
        ("file = 3", "Input should be a valid path"),
        ('source = "usb"', "Input should be 'sim', 'file', 'v4l2' or 'pi'"),
        ("width = 63", "Input should be greater than or equal to 64"),
    ],
)
def test_a_value_of_the_wrong_type_or_out_of_bounds_is_named(line: str, message: str) -> None:
    key = line.split(" =")[0]
    with pytest.raises(ConfigError) as refused:
        parse_config(KEYS + f"[camera]\n{line}\n", Path("agent.toml"))
    assert str(refused.value) == f"agent.toml: key 'camera.{key}': {message}"


def test_an_integer_is_a_fine_number_and_a_string_a_fine_path() -> None:
    config = parse_config(
        KEYS + '[motion]\nquiet_s = 2\n[camera]\nfile = "clip.mp4"\n', Path("agent.toml")
    )
    assert config.motion.quiet_s == 2.0
    assert isinstance(config.motion.quiet_s, float)
    assert config.camera.file == Path("clip.mp4")


def test_every_problem_is_named_in_one_message() -> None:
    text = KEYS + '[camera]\nfps = 0\nsource = "usb"\ncolour = 1\n[release]\n' + (
        'allowed_bases = ["warrant", "bail"]\nmax_window_s = {warrant = 0}\n'
    )
    with pytest.raises(ConfigError) as refused:
        parse_config(text, Path("agent.toml"))
    assert str(refused.value).split("; ") == [
        "agent.toml: key 'camera.source': Input should be 'sim', 'file', 'v4l2' or 'pi'",
        "agent.toml: key 'camera.fps': Input should be greater than or equal to 1",
        "agent.toml: unknown key 'camera.colour'",
        "agent.toml: key 'release.allowed_bases.1': "
        "Input should be 'warrant', 'emergency' or 'preservation'",
        "agent.toml: key 'release.max_window_s.warrant': Input should be greater than 0",
    ]


def test_sections_built_in_code_are_checked_and_frozen() -> None:
    with pytest.raises(SchemaError, match="width: Input should be less than or equal to 4096"):
        CameraSettings(width=4097)
    zones = MotionSettings(exclusion_zones=[(0, 0, 1, 0.5)]).exclusion_zones
    assert zones == [(0.0, 0.0, 1.0, 0.5)]
    camera = CameraSettings()
    with pytest.raises(dataclasses.FrozenInstanceError):
        camera.fps = 10  # type: ignore[misc]


def test_a_copy_replaces_values_and_leaves_the_original() -> None:
    release = ReleaseSettings()
    copied = release.model_copy(update={"clock": "unsafe-assume-synchronized"})
    assert (release.clock, copied.clock) == ("kernel", "unsafe-assume-synchronized")
    assert copied.max_window_s == release.max_window_s
    with pytest.raises(TypeError, match="no key colour"):
        CameraSettings().model_copy(update={"colour": 1})
