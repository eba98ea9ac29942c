"""Errors of the recorder, under the agent's roots (`device.errors`)."""

from __future__ import annotations

from device.errors import EnvironmentFault, HostileInputError


class SinkFailed(EnvironmentFault):
    """The clip's writer raised while taking bytes, an event or the end: the clip is dead.

    `cause` is the writer's exception (for example `StorageFull`).
    """

    def __init__(self, message: str, cause: BaseException) -> None:
        super().__init__(message)
        self.cause = cause


class BadStream(HostileInputError):
    """The camera handed over packets that break the seam's contract (no SPS/PPS, time
    running backwards); the recorder skips them rather than writing a broken file."""


__all__ = ["BadStream", "SinkFailed"]
