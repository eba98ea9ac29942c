"""What every rule of the policy uses: its violation, durations as reasons say them, and
what counts as a blank field."""

from __future__ import annotations

from datetime import timedelta

from cloud_stub.policy.codes import Code
from cloud_stub.policy.errors import PolicyViolation
from protocol.token import exact_seconds


def violation(code: Code, reason: str) -> PolicyViolation:
    return PolicyViolation(code, reason)


def in_hours(delta: timedelta) -> str:
    """A duration for a reason: whole hours as hours, anything else in exact seconds, so
    a real excess is never rounded away ("259200.5 s", not "72 h")."""
    seconds = delta.total_seconds()
    if delta % timedelta(hours=1) == timedelta(0):
        return f"{seconds / 3600:g} h"
    return f"{exact_seconds(seconds)} s"


def is_blank(value: object) -> bool:
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    if isinstance(value, (list, tuple)):
        return not value
    return False
