"""What the agent's status says: its counters and the JSON-ready document built from
them (no footage, no keys). `status.json` and the control socket's `status` both show
this document; docs/architecture.md describes its fields."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from device.clock import Clock
from device.recorder import ClipSummary


@dataclass(slots=True)
class Counters:
    """What the camera loop and the button counted since start."""

    frames: int = 0
    camera_errors: int = 0
    started_at: datetime | None = None
    presses: int = 0
    motion_starts: int = 0


def clip_summary(last: ClipSummary | None) -> dict[str, Any] | None:
    if last is None:
        return None
    return {
        "id": getattr(last.record, "id", None),
        "start": last.start.isoformat(),
        "end": last.end.isoformat(),
        "bytes": last.bytes,
        "events": [kind for kind, _ in last.events],
        "outcome": last.outcome,
    }


@dataclass(frozen=True, slots=True)
class Recording:
    """The recorder's side of the status."""

    recording: bool
    last_clip: ClipSummary | None
    clips_sealed: int
    clips_failed: int


def status_document(*, device_id: str, recording: Recording, storage: dict[str, Any],
                    camera_source: str, camera_state: str, counters: Counters,
                    motion_active: bool, clock: Clock, simulated: bool,
                    services: dict[str, Any]) -> dict[str, Any]:
    """The agent's health as JSON-ready data, version 1."""
    return {
        "v": 1,
        "device": device_id,
        "recording": recording.recording,
        "storage": storage,
        "last_clip": clip_summary(recording.last_clip),
        "clips_sealed": recording.clips_sealed,
        "clips_failed": recording.clips_failed,
        "camera": {
            "source": camera_source,
            "state": camera_state,
            "frames": counters.frames,
            "errors": counters.camera_errors,
        },
        "button_presses": counters.presses,
        "motion": {"active": motion_active, "starts": counters.motion_starts},
        "clock": {
            "now": clock.now().isoformat(),
            "synchronized": clock.synchronized(),
            "simulated": simulated,
        },
        "services": services,
    }
