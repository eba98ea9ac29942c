"""The `agent.toml` reference, generated from the configuration model (`device.config`).

`python -m device.config_reference > docs/agent-config.md` writes it; a test checks that
the document matches the model, and that every key of the model has a meaning here
and no meaning names a key the model lacks.
"""

from __future__ import annotations

import sys
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from device.config import AgentConfig
from device.config_schema import FieldSpec, Section

SECTIONS: dict[str, str] = {
    "agent": "The agent process: which device it is and where it keeps its state.",
    "camera": "Where frames come from. The default, `sim`, is the simulated camera: "
    "`doorbell-agent run` plays its `scene` in a loop (`visitor`: someone walks in at "
    "5 s, rings at 8 s and leaves by 19.5 s, every 45 s).",
    "motion": "Motion detection on the low-resolution grayscale stream.",
    "recorder": "Clips: pre-roll, post-roll, length and the H.264 encoder.",
    "storage": "Retention of the sealed clips.",
    "keys": "Whom clips are sealed to, and the device's own keys from its bundle.",
    "mqtt": "The link to the deployment's broker (the release side needs it).",
    "release": "Release tokens: the trust root, the owner's tightening of its limits, "
    "and the clock.",
    "button": "The doorbell button.",
    "home_assistant": "Optional Home Assistant discovery (metadata only: pressed, motion).",
}

MEANINGS: dict[str, str] = {
    "agent.device_id": "the device id the deployment enrolled (the bundle's `device-id`)",
    "agent.state_dir": "sealed clips, index, release state, audit log, `status.json`, "
    "`agent.sock` and the single-instance lock `agent.lock`",
    "agent.control_socket": "the control socket for `ring` and `status` (default "
    "`{state_dir}/agent.sock`)",
    "camera.source": "`sim` (the simulated camera), `file` (any video PyAV decodes), "
    "`v4l2` (a USB webcam) or `pi` (the camera module through picamera2)",
    "camera.scene": "the simulated scene `run` plays in a loop (source `sim` only)",
    "camera.seed": "changes the simulated scene's look, never its script",
    "camera.width": "main stream width in pixels (recorded)",
    "camera.height": "main stream height in pixels (recorded)",
    "camera.fps": "frames per second",
    "camera.lores_width": "low-resolution stream width (motion detection)",
    "camera.lores_height": "low-resolution stream height (motion detection)",
    "camera.file": "the video file of source `file`",
    "camera.v4l2_device": "the device node of source `v4l2`",
    "camera.realtime": "pace simulated and file frames at the frame rate",
    "motion.threshold": "per-pixel difference (0..255) that counts as change",
    "motion.min_area": "fraction of the frame that must change",
    "motion.blur": "Gaussian blur kernel size (odd)",
    "motion.background_alpha": "weight of a new frame in the running-average background",
    "motion.exclusion_zones": "areas to ignore, `[x, y, w, h]` as fractions of the frame",
    "motion.start_frames": "consecutive changed frames that start motion",
    "motion.quiet_s": "seconds without change that end motion",
    "motion.downscale": "analyse blocks of N x N low-resolution pixels",
    "recorder.pre_roll_s": "seconds of video kept before the trigger",
    "recorder.post_roll_s": "seconds recorded after the last motion or bell press",
    "recorder.max_clip_s": "longest clip; a longer visit continues in the next clip",
    "recorder.keyframe_interval_s": "seconds between keyframes",
    "recorder.bitrate": "H.264 bitrate in bits per second",
    "storage.max_age_days": "clips older than this are deleted (unless held)",
    "storage.quota_bytes": "the sealed clips never take more than this",
    "storage.min_free_bytes": "free space kept on the file system",
    "keys.owner_recipient": "the owner's age recipient (`age1...`): every clip is sealed "
    "to it",
    "keys.escrow_recipient": "the cloud's escrow recipient (`age1...`): the hourly vault "
    "keys are escrowed to it",
    "keys.epoch_s": "length of a vault key's epoch in seconds",
    "keys.identity_key": "the device's Ed25519 identity key (bundle `identity.key`, 0600)",
    "keys.transport_identity": "the device's age transport identity (bundle "
    "`transport.key`, 0600)",
    "mqtt.enabled": "run the release side over MQTT",
    "mqtt.host": "the broker's host name (as in its certificate)",
    "mqtt.port": "the broker's TLS port",
    "mqtt.prefix": "the deployment's topic prefix",
    "mqtt.ca_cert": "the deployment's CA certificate (bundle `ca.pem`)",
    "mqtt.client_cert": "the device's MQTT client certificate (bundle `mqtt.pem`)",
    "mqtt.client_key": "its key (bundle `mqtt.key`, 0600)",
    "mqtt.keepalive_s": "MQTT keepalive in seconds",
    "mqtt.session_expiry_s": "how long the broker keeps the device's session and queue",
    "mqtt.max_payload_bytes": "largest inbound MQTT payload accepted",
    "mqtt.inbound_queue": "inbound messages queued before the link applies back-pressure",
    "release.trust_root": "the deployment's trust root (bundle `trust-root.json`)",
    "release.cloud_url": "not read (bundles of older enrolments carry it; the agent warns "
    "at start-up): evidence goes to the upload URL each release token names, which the "
    "cloud derives from its `api.url`",
    "release.allowed_bases": "legal bases the owner accepts (default: all the trust root "
    "allows)",
    "release.max_window_s": "per basis, a longer window than the trust root's is refused",
    "release.max_token_life_s": "per basis, a longer token life than the trust root's is "
    "refused",
    "release.clock_skew_s": "tolerated clock difference when checking a token's times",
    "release.clock": "`kernel`: act on tokens only once NTP has synchronized the clock "
    "(ADR 0009); `unsafe-assume-synchronized`: development machines and containers only",
    "button.kind": "`sim` (the control socket's `ring`) or `gpio` (a push button)",
    "button.pin": "the GPIO (BCM) pin of a `gpio` button",
    "button.pull_up": "the button connects the pin to ground",
    "button.bounce_s": "debounce time in seconds",
    "home_assistant.enabled": "publish discovery and events to Home Assistant's broker",
    "home_assistant.host": "its broker's host",
    "home_assistant.port": "its port (default 8883 with `tls = true`, else 1883)",
    "home_assistant.tls": "connect over TLS (recommended)",
    "home_assistant.ca_file": "CA certificate for TLS (default: the system trust store)",
    "home_assistant.client_cert": "client certificate for mutual TLS (with `client_key`)",
    "home_assistant.client_key": "its key (0600)",
    "home_assistant.username": "broker user name",
    "home_assistant.password": "broker password in clear (prefer `password_file`)",
    "home_assistant.password_file": "file holding the broker password (0600 or 0400)",
    "home_assistant.discovery_prefix": "Home Assistant's discovery prefix",
}

HEADER = """# `agent.toml` reference

<!-- Generated by `python -m device.config_reference > docs/agent-config.md` from
device/config.py; tests/unit/test_config_reference.py checks it matches. -->

The agent reads one TOML file (`doorbell-agent --config FILE`, default
`/etc/doorbell/agent.toml`). Every key is optional except `keys.owner_recipient` and
`keys.escrow_recipient`; an unknown key, a missing required key or a value of the wrong
type stops the agent with a message naming the key and the file. `cloud-stub devices
enroll` writes a bundle's `agent.toml` with what enrolment knows (`[agent] device_id`,
`[keys]`, `[mqtt]`, `[release]`; `--install-dir` sets the paths, `--state-dir` sets
`agent.state_dir`); everything else keeps the defaults below.
"""


def _type(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        text = " or ".join(_type(a) for a in inner)
        return f"{text} (optional)" if len(inner) < len(args) else text
    if origin is typing.Literal:
        return "one of " + ", ".join(f'`"{a}"`' for a in args)
    if origin is typing.Annotated:
        return _type(args[0])
    if origin is list:
        return f"list of {_type(args[0])}"
    if origin is tuple:
        return f"[{', '.join(_type(a) for a in args)}]"
    if origin is dict:
        return f"table of {_type(args[0])} to {_type(args[1])}"
    names = {Path: "path", str: "string", int: "integer", float: "number", bool: "boolean"}
    if annotation in names:
        return names[annotation]
    return getattr(annotation, "__name__", str(annotation))


def _bounds(info: FieldSpec) -> str:
    parts = []
    for attr, sign in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
        value = getattr(info.bounds, attr, None)
        if value is not None:
            parts.append(f"{sign} {value}")
    return ", ".join(parts)


def _default(info: FieldSpec) -> str:
    if info.required:
        return "required"
    value = info.default
    if value is None:
        return "none"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, str | Path):
        return f'`"{value}"`'
    return f"`{value}`"


def keys() -> Iterator[tuple[str, str, FieldSpec]]:
    """(section, key, field) for every key of the model, in the model's order."""
    for section, info in AgentConfig.model_fields.items():
        model = info.annotation
        if not (isinstance(model, type) and issubclass(model, Section)):
            raise TypeError(f"section {section} is not a model")
        for key, field in model.model_fields.items():
            yield section, key, field


def render() -> str:
    out = [HEADER]
    current = ""
    for section, key, field in keys():
        if section != current:
            current = section
            out.append(f"\n## `[{section}]`\n\n{SECTIONS[section]}\n")
            out.append("| key | type | default | meaning |")
            out.append("|---|---|---|---|")
        bounds = _bounds(field)
        kind = _type(field.annotation) + (f", {bounds}" if bounds else "")
        meaning = MEANINGS[f"{section}.{key}"]
        out.append(f"| `{key}` | {kind} | {_default(field)} | {meaning} |")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
