"""Errors of the recorder, under the agent's roots (`device.errors`)."""

from __future__ import annotations

from device.errors import EnvironmentFault, HostileInputError


class SinkFailed(EnvironmentFault):
    """The clip's writer raised while taking bytes, an event or the end: the clip is dead.

    `cause` is the underlying exception (for example `StorageFull`); `from_writer` says
    whether the clip writer itself failed (then the store has already ended the clip)
    or the muxer did (then what was sealed so far can still be finished).
    """

    def __init__(self, message: str, cause: BaseException, *, from_writer: bool = True) -> None:
        super().__init__(message)
        self.cause = cause
        self.from_writer = from_writer


class BadStream(HostileInputError):
    """The camera handed over packets that break the seam's contract (no SPS/PPS, time
    running backwards); the recorder skips them rather than writing a broken file."""


__all__ = ["BadStream", "SinkFailed"]
