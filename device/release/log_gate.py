"""The doorbell's release-log gate: a token is acted on only with a valid log proof.

`LogGate.check(token, bundle)` runs `protocol.tlog.verify.verify_log_proof` against the
checkpoint this doorbell stored last and, when it passes, stores the newer checkpoint
atomically before returning (so the next check is against it, also after a crash). On
`log_inconsistent` it keeps the stored checkpoint, the offered bundle and the reason as
evidence under `{state_dir}/release/log/evidence/` and reports it in `status()` until an
operator clears the directory; the stored checkpoint is never replaced by one that does
not extend it. The first checkpoint comes with enrolment (`seed`). The caller must not
upload anything when `check` raises (docs/protocol.md section 11, ADR 0014).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from device.errors import EnvironmentFault
from device.release.log_tiles import TileFetch, http_tiles, refresh_consistency
from device.vault.outbox import write_atomic
from protocol.tlog.bundle import parse_bundle
from protocol.tlog.checkpoint import Checkpoint, open_checkpoint
from protocol.tlog.errors import LogRejected, LogRejectionCode, TlogError
from protocol.tlog.policy import WitnessPolicy, parse_policy, witnessed_names
from protocol.tlog.verify import LogVerdict, verify_log_proof
from protocol.trust_root_v2 import AnyTrustRoot, TrustRootV2

log = logging.getLogger(__name__)


class LogStateError(Exception):
    """The stored checkpoint cannot be read or written (names the file)."""


@dataclass(frozen=True)
class LogGateLayout:
    state_dir: Path

    @property
    def root(self) -> Path:
        return self.state_dir / "release" / "log"

    @property
    def checkpoint(self) -> Path:  # the last verified checkpoint note, replaced atomically
        return self.root / "checkpoint"

    @property
    def evidence(self) -> Path:  # one directory per inconsistency seen
        return self.root / "evidence"


class LogGate:
    """Checks tokens' log proofs against the stored checkpoint; keeps evidence."""

    def __init__(self, state_dir: Path, policy: WitnessPolicy, identity: Ed25519PublicKey,
                 *, tiles: TileFetch | None = None) -> None:
        if len(policy.logs) != 1:
            raise ValueError("the witness policy must name exactly one log")
        self.layout = LogGateLayout(state_dir)
        self.policy = policy
        self.origin = policy.logs[0].origin
        self.identity = identity
        self.tiles = tiles  # the log's tiles, for a proof from a stale size (log_tiles.py)
        self.layout.root.mkdir(parents=True, exist_ok=True, mode=0o700)

    # -- stored checkpoint -----------------------------------------------------

    def _verifiers(self) -> list[Any]:
        return [self.policy.logs[0].verifier, *self.policy.witness_verifiers]

    def stored(self) -> Checkpoint | None:
        path = self.layout.checkpoint
        if not path.exists():
            return None
        try:
            return open_checkpoint(path.read_bytes(), self._verifiers()).checkpoint
        except (OSError, TlogError) as exc:
            raise LogStateError(f"{path}: {exc}") from None

    def seed(self, note: bytes) -> Checkpoint:
        """Store the first checkpoint (from enrolment): signed by the log, with the quorum.
        Refused when one is stored already."""
        if self.layout.checkpoint.exists():
            raise LogStateError(f"{self.layout.checkpoint} exists: a checkpoint is stored")
        signed = open_checkpoint(note, self._verifiers())
        log = self.policy.logs[0].verifier
        names = witnessed_names(self.policy, (v for v, _ in signed.note.verified))
        if not signed.signed_by(log) or not self.policy.satisfied(names):
            raise LogRejected(
                LogRejectionCode.witness_quorum,
                "the first checkpoint lacks the log's signature or the witness quorum",
            )
        if signed.checkpoint.origin != self.origin:
            raise LogRejected(LogRejectionCode.log_origin, "the first checkpoint is another log's")
        write_atomic(self.layout.checkpoint, note)
        return signed.checkpoint

    # -- the check -------------------------------------------------------------

    def check(self, token: bytes, bundle: bytes) -> LogVerdict:
        """Raise LogRejected (nothing to upload) or return the verdict, the newer
        checkpoint already stored."""
        stored = self.stored()
        if self.tiles is not None:
            bundle = refresh_consistency(bundle, stored, self.tiles)
        try:
            verdict = verify_log_proof(
                token,
                bundle,
                policy=self.policy,
                origin=self.origin,
                stored=stored,
                identity=self.identity,
            )
        except LogRejected as exc:
            if exc.code is LogRejectionCode.log_inconsistent:
                self._keep_evidence(bundle, exc)
            raise
        if stored is None or verdict.checkpoint.size > stored.size:
            note = parse_bundle(bundle).proof.checkpoint
            write_atomic(self.layout.checkpoint, note)
        return verdict

    def _keep_evidence(self, bundle: bytes, exc: LogRejected) -> None:
        folder = self.layout.evidence / f"{time.time_ns()}"
        folder.mkdir(parents=True, mode=0o700)
        if self.layout.checkpoint.exists():
            write_atomic(folder / "stored-checkpoint", self.layout.checkpoint.read_bytes())
        write_atomic(folder / "offered-bundle", bundle)
        write_atomic(
            folder / "reason.json",
            json.dumps({"code": exc.code.value, "detail": exc.detail}, sort_keys=True).encode(),
        )

    def status(self) -> dict[str, Any]:
        """For the device's status: the stored size and any inconsistency kept."""
        stored = self.stored()
        kept = (
            sorted(p.name for p in self.layout.evidence.glob("*"))
            if (self.layout.evidence.exists())
            else []
        )
        return {
            "log_origin": self.origin,
            "log_size": None if stored is None else stored.size,
            "log_inconsistent": bool(kept),
            "log_evidence": kept,
        }


class RootLogGate:
    """The gate of the trust root in force: built when a root (v2) with a log policy is
    first used, again when the policy changes, and seeded with enrolment's checkpoint
    (`seed`, the bundle's ``release-log-checkpoint``) while none is stored."""

    def __init__(self, state_dir: Path, identity: Ed25519PublicKey, *,
                 seed: Path | None = None) -> None:
        self._state_dir = state_dir
        self._identity = identity
        self._seed = seed
        self._gate: tuple[str, LogGate] | None = None  # (policy text, gate)

    def gate(self, root: AnyTrustRoot) -> LogGate | None:
        """The gate when `root` carries a log policy, else None: no log, tokens are
        judged as before (docs/protocol.md section 11). Raises EnvironmentFault when the
        policy cannot be used on this device."""
        if not isinstance(root, TrustRootV2) or root.log_policy is None:
            return None
        if self._gate is not None and self._gate[0] == root.log_policy:
            return self._gate[1]
        try:
            policy = parse_policy(root.log_policy.encode("ascii"))
            url = policy.logs[0].url if len(policy.logs) == 1 else None
            gate = LogGate(self._state_dir, policy, self._identity,
                           tiles=None if url is None else http_tiles(url))
        except (TlogError, ValueError, OSError) as exc:
            raise EnvironmentFault(f"the trust root's log policy is unusable: {exc}") from exc
        self._seed_gate(gate)
        self._gate = (root.log_policy, gate)
        return gate

    def _seed_gate(self, gate: LogGate) -> None:
        """Store enrolment's checkpoint when none is stored yet. Without one, the first
        proof the doorbell accepts becomes its checkpoint."""
        seed = self._seed
        if seed is None or not seed.is_file() or gate.layout.checkpoint.exists():
            return
        try:
            gate.seed(seed.read_bytes())
        except (TlogError, LogStateError, OSError) as exc:  # LogRejected: a TlogError
            log.error("release-log checkpoint %s not used: %s", seed, exc)

    def status(self, root: AnyTrustRoot) -> dict[str, Any] | None:
        """`LogGate.status()` for the device's status, the evidence as a count (None
        without a log policy). Raises EnvironmentFault as `gate` does."""
        gate = self.gate(root)
        if gate is None:
            return None
        try:
            status = gate.status()
        except LogStateError as exc:
            return {"log_error": str(exc)[:200]}
        status["log_evidence"] = len(status["log_evidence"])
        return status
