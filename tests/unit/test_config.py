"""The agent configuration is closed: every error names the key and the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from device.config import load_config, parse_config
from device.errors import ConfigError

KEYS = '[keys]\nowner_recipient = "age1owner"\nescrow_recipient = "age1escrow"\n'


def test_defaults_follow_the_design() -> None:
    config = parse_config(KEYS, Path("agent.toml"))
    assert (config.camera.width, config.camera.height, config.camera.fps) == (1280, 720, 30)
    assert (config.camera.lores_width, config.camera.lores_height) == (320, 240)
    assert config.recorder.pre_roll_s == 5.0
    assert config.recorder.post_roll_s == 10.0
    assert config.recorder.max_clip_s == 120.0
    assert config.keys.epoch_s == 3600
    assert config.storage.max_age_days == 30


def test_unknown_key_is_named_with_its_file() -> None:
    with pytest.raises(ConfigError, match=r"agent\.toml: unknown key 'motion\.treshold'"):
        parse_config(KEYS + "[motion]\ntreshold = 3\n", Path("agent.toml"))


def test_ill_typed_key_is_named() -> None:
    with pytest.raises(ConfigError, match=r"key 'camera\.fps'"):
        parse_config(KEYS + '[camera]\nfps = "fast"\n', Path("agent.toml"))


def test_missing_required_key_is_named() -> None:
    with pytest.raises(ConfigError, match=r"missing required key 'keys\.escrow_recipient'"):
        parse_config('[keys]\nowner_recipient = "age1owner"\n', Path("agent.toml"))


def test_broken_toml_and_missing_file_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        parse_config("[keys\n", Path("agent.toml"))
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "absent.toml")
