"""Errors of the release side of the agent.

They hang under the agent's two roots (`device.errors`): a token or a message that
cannot be trusted is a `HostileInputError`; a broker, a cloud or a disk failing under us
is an `EnvironmentFault` and may be retried. Third-party errors (paho, httpx, sqlite3,
pyrage) are translated into these at the seam that calls the library.
"""

from __future__ import annotations

from device.errors import EnvironmentFault, HostileInputError, TransportError


class ReleaseStateError(EnvironmentFault):
    """The durable release state (replay, jobs, audit log) could not be read or written."""


class AuditLogBroken(HostileInputError):
    """The audit log's hash chain does not hold; `line` is the first broken line (1-based)."""

    def __init__(self, line: int, reason: str) -> None:
        super().__init__(f"audit log broken at line {line}: {reason}")
        self.line = line
        self.reason = reason


class UploadRefused(HostileInputError):
    """The cloud refused an upload for a reason a retry cannot fix (4xx other than 409)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"cloud refused the upload ({status}): {detail}")
        self.status = status
        self.detail = detail


class UploadFailed(TransportError):
    """The upload did not complete within its bounded retries."""


__all__ = [
    "AuditLogBroken",
    "ReleaseStateError",
    "TransportError",
    "UploadFailed",
    "UploadRefused",
]
