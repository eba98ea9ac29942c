"""The release side's durable records, as one object: replay state, jobs and outbox, and
the audit log. All three live under `{state_dir}/release/` (`ReleaseLayout`)."""

from __future__ import annotations

from dataclasses import dataclass

from device.release.audit import AuditLog
from device.release.jobs import JobStore
from device.release.replay import ReplayState


@dataclass(frozen=True, slots=True)
class ReleaseRecords:
    """`replay` (accepted jtis, seq, token hashes), `jobs` (deferred tokens, jobs, the
    outbox) and `audit` (the hash-chained log). Read-only views for `decision.judge`
    and `decision.redelivery` are the methods below."""

    replay: ReplayState
    jobs: JobStore
    audit: AuditLog

    def accepted_jti(self, sha256: str) -> str | None:
        return self.replay.accepted_jti(sha256)

    def is_deferred(self, sha256: str) -> bool:
        return self.jobs.is_deferred(sha256)

    def token_sha256(self, jti: str) -> str | None:
        """The sha256 of an accepted token's bytes, which every result names."""
        return self.replay.token_sha256(jti)
