"""Where the release side keeps its durable state under the agent's state directory."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class ReleaseLayout:
    """`{state_dir}/release/`: the audit log and the SQLite release state."""

    state_dir: Path

    @property
    def root(self) -> Path:
        return self.state_dir / "release"

    @property
    def audit_log(self) -> Path:  # hash-chained JSON lines
        return self.root / "audit.jsonl"

    @property
    def state_db(self) -> Path:  # replay state, deferred tokens, jobs, scheduled notices
        return self.root / "release.sqlite3"

    @property
    def work(self) -> Path:  # re-sealed clips waiting for upload, one folder per job
        return self.root / "work"

    def work_file(self, jti: str, clip_id: str) -> Path:
        """Where the job of `jti` keeps `clip_id` re-sealed to the requester."""
        return self.work / jti / f"{clip_id}.age"

    @property
    def trust_roots(self) -> Path:  # the trust roots applied after the bundle's (ADR 0013)
        return self.root / "trust-roots"
