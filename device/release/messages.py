"""The device's outgoing MQTT payloads, built with `protocol.messages` (which re-parses
every message it builds, so the device never emits what the cloud would refuse).

Text that came from a hostile token (a rejection's detail) is cleaned of control
characters and bounded before it is published. A token rejected before its signatures
verified (or whose jti cannot be read) is reported under `sha256-<first 32 hex of its
bytes>`, never under the jti it claims; every result names the sha256 of the token
bytes it judged (`token_sha256`), so the cloud believes it only for bytes it issued.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from protocol.errors import MessageError
from protocol.messages import (
    MAX_DETAIL,
    MAX_HEALTH_ITEMS,
    DeviceState,
    HealthValue,
    NoticeMessage,
    ResultMessage,
    ResultStatus,
    StatusMessage,
    printable,
)
from protocol.token import CaseRef, Window

log = logging.getLogger(__name__)


def clean_text(text: str, limit: int = MAX_DETAIL) -> str:
    """Control and invisible formatting characters become '?' (what the protocol's
    string fields refuse), and the text is cut to `limit` characters."""
    return printable(text, limit)


def unverified_id(sha256: str) -> str:
    """The id a result uses for a token whose jti could not be read."""
    return f"sha256-{sha256[:32]}"


def result_payload(
    *, jti: str, status: str, reason: str, detail: str, clips: Sequence[str] = (),
    token_sha256: str = "",
) -> bytes:
    """`{"v":1, "jti", "status", "reason", "detail", "clips", "token_sha256"}` (the last
    the sha256 of the token bytes judged; left out when unknown). Raises MessageError
    only for a jti, status or reason this module's callers never produce."""
    message = ResultMessage(
        jti=jti,
        status=ResultStatus(status),
        reason=reason,
        detail=clean_text(detail),
        clips=tuple(clips),
        token_sha256=token_sha256,
    )
    try:
        return message.to_bytes()
    except MessageError:
        log.exception("result for %s could not be built with its detail; sending without", jti)
        return ResultMessage(jti=jti, status=ResultStatus(status), reason=reason,
                             token_sha256=token_sha256).to_bytes()


def notice_payload(
    *,
    jti: str,
    basis: str,
    case: CaseRef,
    window: Window,
    clips: Sequence[str],
    released_at: datetime,
) -> bytes:
    """`{"v":1, "jti", "basis", "case", "window", "clips", "released_at"}`."""
    return NoticeMessage(
        jti=jti,
        basis=basis,
        case=case,
        window=window,
        clips=tuple(clips),
        released_at=released_at.replace(microsecond=0),
    ).to_bytes()


def _flatten(prefix: str, value: Any, out: dict[str, HealthValue]) -> None:
    if isinstance(value, Mapping):
        for key, item in value.items():
            name = f"{prefix}_{key}" if prefix else str(key)
            _flatten(name, item, out)
        return
    name = "".join(c if c.isalnum() else "_" for c in prefix.lower())[:64].strip("_")
    if not name or name in ("v", "state") or len(out) >= MAX_HEALTH_ITEMS:
        return
    if isinstance(value, bool | int) or value is None:
        out[name] = value
    elif isinstance(value, float):
        out[name] = value if math.isfinite(value) else None
    elif isinstance(value, str):
        out[name] = clean_text(value, 256)


# What the retained status may tell the cloud (and anyone the ACL lets read it): whether
# the device works, never what it saw. Clip counts and times, bell presses, motion,
# "recording" and storage use would show the cloud when someone came to the door, which
# the owner has not agreed to share; they stay in the local status (`doorbell-agent
# status`) and, when the owner opts in, Home Assistant on their own broker.
CLOUD_HEALTH_FIELDS = frozenset(
    {
        "device",
        "storage_full",
        "camera_source",
        "camera_state",
        "camera_errors",
        "clock_synchronized",
        "clock_simulated",
    }
)
CLOUD_HEALTH_PREFIXES = ("release_",)


def cloud_health(flat: Mapping[str, HealthValue]) -> dict[str, HealthValue]:
    """The subset of flattened health that `CLOUD_HEALTH_FIELDS` allows (deny by default)."""
    return {
        name: value
        for name, value in flat.items()
        if name in CLOUD_HEALTH_FIELDS or name.startswith(CLOUD_HEALTH_PREFIXES)
    }


def status_payload(online: bool, health: Mapping[str, Any]) -> bytes:
    """The retained `status`: state plus the health flattened to snake_case scalars
    (nested names joined with `_`, other values dropped, at most 64 items), reduced to
    the fields that say whether the device works (`cloud_health`)."""
    everything: dict[str, HealthValue] = {}
    _flatten("", health, everything)
    flat = cloud_health(everything)
    state = DeviceState.online if online else DeviceState.offline
    try:
        return StatusMessage(state=state, health=flat).to_bytes()
    except MessageError:
        log.exception("health could not be published; sending the bare state")
        return StatusMessage(state=state).to_bytes()
