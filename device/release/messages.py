"""The device's outgoing MQTT payloads (docs/architecture.md, "MQTT"): result, notice.

All are compact UTF-8 JSON objects with `"v": 1`. `detail` is bounded so that a hostile
token cannot make the device publish an arbitrarily large message.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from protocol.timefmt import format_time

MAX_DETAIL = 300


def _dump(body: Mapping[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":"), sort_keys=True).encode("utf-8")


def result_payload(
    *, jti: str, status: str, reason: str, detail: str, clips: Sequence[str] = ()
) -> bytes:
    """`{"v":1, "jti", "status", "reason", "detail", "clips"}`."""
    return _dump(
        {
            "v": 1,
            "jti": jti,
            "status": status,
            "reason": reason,
            "detail": detail[:MAX_DETAIL],
            "clips": list(clips),
        }
    )


def notice_payload(
    *,
    jti: str,
    basis: str,
    case: Mapping[str, Any],
    window: Mapping[str, Any],
    clips: Sequence[str],
    released_at: datetime,
) -> bytes:
    """`{"v":1, "jti", "basis", "case", "window", "clips", "released_at"}`."""
    return _dump(
        {
            "v": 1,
            "jti": jti,
            "basis": basis,
            "case": dict(case),
            "window": dict(window),
            "clips": list(clips),
            "released_at": format_time(released_at.replace(microsecond=0)),
        }
    )
