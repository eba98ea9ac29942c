"""The retained status tells the cloud whether the device works, never what it saw.

Attack: a curious cloud insider (docs/threat-model.md) reads every device's retained
status and would learn when visitors came if it carried clip times, bell presses or
motion. Only the allow-listed health fields may leave the device.
"""

from __future__ import annotations

import json
from typing import Any

from device.release.messages import CLOUD_HEALTH_FIELDS, status_payload

AGENT_STATUS: dict[str, Any] = {
    "v": 1,
    "device": "porch-cam",
    "recording": True,
    "storage": {"full": False, "reason": None, "free_bytes": 10, "used_bytes": 5, "clips": 3},
    "last_clip": {"id": "c1", "start": "2026-11-29T10:00:00+00:00", "events": ["button"]},
    "clips_sealed": 3,
    "clips_failed": 0,
    "camera": {"source": "sim", "state": "ok", "frames": 900, "errors": 0},
    "button_presses": 2,
    "motion": {"active": True, "starts": 4},
    "clock": {"now": "2026-11-29T10:00:05+00:00", "synchronized": True, "simulated": False},
    "services": {"homeassistant": {"connected": True}},
    "release": {"jobs_running": 0, "deferred": 1, "outbox": 0, "clock_synchronized": True},
}


def test_status_carries_health_and_nothing_about_visits() -> None:
    body = json.loads(status_payload(True, AGENT_STATUS))
    assert body["state"] == "online"
    health = {k: v for k, v in body.items() if k not in ("v", "state")}
    assert health == {
        "device": "porch-cam",
        "storage_full": False,
        "camera_source": "sim",
        "camera_state": "ok",
        "camera_errors": 0,
        "clock_synchronized": True,
        "clock_simulated": False,
        "release_jobs_running": 0,
        "release_deferred": 1,
        "release_outbox": 0,
        "release_clock_synchronized": True,
    }
    text = json.dumps(body)
    for leak in ("recording", "last_clip", "button", "motion", "clips", "used_bytes", "now"):
        assert leak not in text, leak


def test_unknown_fields_are_denied_by_default() -> None:
    body = json.loads(status_payload(True, {"visitor_face_count": 1, "device": "porch-cam"}))
    assert "visitor_face_count" not in body
    assert body["device"] == "porch-cam"
    assert "visitor_face_count" not in CLOUD_HEALTH_FIELDS
