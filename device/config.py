"""The agent's configuration: one TOML file, typed and closed.

An unknown key, a missing required key or an ill-typed value raises `ConfigError`
whose message names the key (dotted path) and the file. Every key, its default and
its meaning: docs/agent-config.md. The sections are frozen records checked by
`device.config_schema`, standard library only (ADR 0019: no pydantic on the device).
Owner settings under ``[release]`` may only tighten the trust root's limits; the
release code enforces that, this file only types them.
"""

from __future__ import annotations

import os
import stat
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from device.config_schema import PositiveInt, SchemaError, Section, setting
from device.errors import ConfigError


class AgentSettings(Section):
    device_id: str = "sim-doorbell"
    state_dir: Path = Path("/var/lib/doorbell")
    control_socket: Path | None = None  # default: {state_dir}/agent.sock


class CameraSettings(Section):
    source: Literal["sim", "file", "v4l2", "pi"] = "sim"
    scene: Literal["visitor", "passerby", "empty"] = "visitor"
    seed: int = 1
    width: int = setting(1280, ge=64, le=4096)
    height: int = setting(720, ge=64, le=4096)
    fps: int = setting(30, ge=1, le=120)
    lores_width: int = setting(320, ge=32, le=1280)
    lores_height: int = setting(240, ge=32, le=960)
    file: Path | None = None
    v4l2_device: str = "/dev/video0"
    realtime: bool = True  # pace simulated/file frames at the frame rate


class MotionSettings(Section):
    threshold: int = setting(25, ge=1, le=255)  # per-pixel difference, 0..255
    min_area: float = setting(0.004, gt=0, lt=1)  # fraction of the frame that must change
    blur: int = setting(5, ge=1, le=31)  # Gaussian kernel size (odd)
    background_alpha: float = setting(0.05, gt=0, le=1)  # running-average weight
    exclusion_zones: list[tuple[float, float, float, float]] = []  # x, y, w, h as fractions
    start_frames: int = setting(2, ge=1, le=30)  # consecutive changed frames to start
    quiet_s: float = setting(1.0, gt=0, le=60)  # no change for this long ends motion
    downscale: int = setting(2, ge=1, le=8)  # analyse blocks of NxN lores pixels

    @classmethod
    def _check_field(cls, name: str, value: Any, checked: Mapping[str, Any]) -> None:
        if name != "exclusion_zones":
            return
        for x, y, w, h in value:
            if not (0 <= x < 1 and 0 <= y < 1 and w > 0 and h > 0 and x + w <= 1 and y + h <= 1):
                raise ValueError(f"zone {[x, y, w, h]} is not inside the frame (fractions 0..1)")


class RecorderSettings(Section):
    pre_roll_s: float = setting(5.0, ge=0, le=30)
    post_roll_s: float = setting(10.0, ge=0.5, le=300)
    max_clip_s: float = setting(120.0, ge=5, le=3600)
    keyframe_interval_s: float = setting(1.0, gt=0, le=10)
    bitrate: int = setting(2_000_000, ge=100_000)


class StorageSettings(Section):
    max_age_days: float = setting(30, gt=0)
    quota_bytes: int = setting(8 * 1024**3, gt=0)
    min_free_bytes: int = setting(256 * 1024**2, ge=0)


class KeySettings(Section):
    owner_recipient: str  # age1...
    escrow_recipient: str  # age1... of the cloud's escrow identity
    epoch_s: int = setting(3600, ge=60, le=86400)
    identity_key: Path | None = None  # Ed25519 PEM from the device bundle
    transport_identity: Path | None = None  # age identity from the device bundle


class MqttSettings(Section):
    enabled: bool = False
    host: str = "localhost"
    port: int = setting(8883, ge=1, le=65535)
    prefix: str = "doorbell/v1"
    ca_cert: Path | None = None
    client_cert: Path | None = None
    client_key: Path | None = None
    keepalive_s: int = setting(30, ge=5, le=3600)
    session_expiry_s: int = setting(7 * 86400, ge=0)
    max_payload_bytes: int = setting(256 * 1024, ge=1024, le=16 * 1024**2)
    inbound_queue: int = setting(64, ge=1, le=10_000)


Basis = Literal["warrant", "emergency", "preservation"]  # the legal bases of a release


class ReleaseSettings(Section):
    trust_root: Path | None = None
    cloud_url: str | None = None  # not read: bundles of older enrolments carry it
    # Owner tightening: None keeps the trust root's limit, a number may only lower it.
    allowed_bases: list[Basis] | None = None
    max_window_s: dict[Basis, PositiveInt] = {}
    max_token_life_s: dict[Basis, PositiveInt] = {}
    clock_skew_s: int = setting(60, ge=0, le=600)
    # "kernel": trust the clock only once NTP has synchronized it (adjtimex; ADR 0009).
    # "unsafe-assume-synchronized": development machines and containers only.
    clock: Literal["kernel", "unsafe-assume-synchronized"] = "kernel"


class ButtonSettings(Section):
    kind: Literal["sim", "gpio"] = "sim"
    pin: int = setting(17, ge=0, le=40)
    pull_up: bool = True
    bounce_s: float = setting(0.05, ge=0, le=2)


def check_private_file(path: Path) -> None:
    """Raise ValueError naming `path` unless it is a regular file that only its owner may
    read or write (mode 0600 or 0400) and that is owned by this process's user or root.

    For secrets the agent reads from its own files (the Home Assistant broker password,
    a TLS client key): a file that group or others may read has leaked already."""
    try:
        info = path.stat()
    except OSError as exc:
        raise ValueError(f"{path}: cannot read: {exc.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        raise ValueError(f"{path} is not a regular file")
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o077:
        raise ValueError(
            f"{path} is mode {mode:04o}: group or others may read or change it; it must be "
            f"0600 or 0400 (chmod 0600 {path})"
        )
    if info.st_uid not in (os.geteuid(), 0):
        raise ValueError(
            f"{path} is owned by uid {info.st_uid}, not by the agent's user "
            f"(uid {os.geteuid()}) or root"
        )


def _check_readable(path: Path) -> None:
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        raise ValueError(f"{path}: cannot read: {exc.strerror}") from None


HA_PORT = 1883  # plain MQTT, Home Assistant's Mosquitto add-on default
HA_TLS_PORT = 8883  # MQTT over TLS (IANA's port, the add-on's TLS listener)


class _PortByTls(int):
    """The default of `home_assistant.port`, which follows `tls` (1883 in the document)."""


_PORT_BY_TLS = _PortByTls(HA_PORT)


class HomeAssistantSettings(Section):
    """The owner's Home Assistant broker. `port` defaults to 8883 with ``tls = true`` and
    to 1883 without; an explicit port is kept either way. The files are checked at load
    time only when the bridge is enabled (a disabled bridge reads none of them)."""

    enabled: bool = False
    host: str = "localhost"
    port: int = setting(_PORT_BY_TLS, ge=1, le=65535)
    tls: bool = False  # recommended: without it presses, motion and the password cross in clear
    ca_file: Path | None = None  # None with tls: the system trust store
    client_cert: Path | None = None  # mutual TLS, with client_key
    client_key: Path | None = None
    username: str | None = None
    password: str | None = None  # in clear in agent.toml: prefer password_file
    password_file: Path | None = None  # mode 0600/0400, owned by the agent's user or root
    discovery_prefix: str = "homeassistant"

    @classmethod
    def _check_field(cls, name: str, value: Any, checked: Mapping[str, Any]) -> None:
        """The files only when the bridge is enabled (a disabled bridge reads none)."""
        if value is None or not checked.get("enabled"):
            return
        if name in ("password_file", "client_key"):
            check_private_file(value)
        elif name in ("ca_file", "client_cert"):
            _check_readable(value)

    @classmethod
    def _resolve(cls, checked: dict[str, Any]) -> dict[str, Any]:
        """No port given: 8883 with TLS, else 1883."""
        if checked.get("port") is _PORT_BY_TLS:
            checked["port"] = HA_TLS_PORT if checked.get("tls") is True else HA_PORT
        return checked

    def _check_whole(self) -> None:
        if self.password is not None and self.password_file is not None:
            raise ValueError(
                "password and password_file are both set: keep only password_file"
            )
        if (self.password is not None or self.password_file is not None) and not self.username:
            raise ValueError("password or password_file is set without username")
        if (self.client_cert is None) != (self.client_key is None):
            raise ValueError("client_cert and client_key go together: set both or neither")
        if not self.tls:
            given = [
                key
                for key in ("ca_file", "client_cert", "client_key")
                if getattr(self, key) is not None
            ]
            if given:
                raise ValueError(f"{', '.join(given)} set but tls is false: set tls = true")

    def broker_password(self) -> str | None:
        """The password to present: `password`, or `password_file`'s content without
        its final line break (checked again: the file may have changed since load).
        Raises ConfigError naming the key and the file."""
        if self.password_file is None:
            return self.password
        path = self.password_file
        try:
            check_private_file(path)
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise ConfigError(f"home_assistant.password_file: {path} is not UTF-8 text") from None
        except ValueError as exc:
            raise ConfigError(f"home_assistant.password_file: {exc}") from None
        except OSError as exc:
            raise ConfigError(
                f"home_assistant.password_file: {path}: cannot read: {exc.strerror}"
            ) from None
        password = text.removesuffix("\n").removesuffix("\r")
        if not password:
            raise ConfigError(f"home_assistant.password_file: {path} is empty")
        return password


class AgentConfig(Section):
    agent: AgentSettings = AgentSettings()
    camera: CameraSettings = CameraSettings()
    motion: MotionSettings = MotionSettings()
    recorder: RecorderSettings = RecorderSettings()
    storage: StorageSettings = StorageSettings()
    keys: KeySettings
    mqtt: MqttSettings = MqttSettings()
    release: ReleaseSettings = ReleaseSettings()
    button: ButtonSettings = ButtonSettings()
    home_assistant: HomeAssistantSettings = HomeAssistantSettings()


def _describe(error: SchemaError, path: Path) -> str:
    lines = []
    for problem in error.problems:
        key = ".".join(problem.loc) or "(top level)"
        if problem.kind == "unknown":
            lines.append(f"{path}: unknown key '{key}'")
        elif problem.kind == "missing":
            lines.append(f"{path}: missing required key '{key}'")
        else:
            lines.append(f"{path}: key '{key}': {problem.message}")
    return "; ".join(lines)


def parse_config(text: str, path: Path) -> AgentConfig:
    """Parse TOML text. Raises ConfigError naming the key and `path`."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    try:
        return AgentConfig.model_validate(raw)
    except SchemaError as exc:
        raise ConfigError(_describe(exc, path)) from exc


def load_config(path: Path) -> AgentConfig:
    """Read and parse the config file. Raises ConfigError (also for an unreadable file)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: config is not UTF-8 text") from exc
    return parse_config(text, path)
