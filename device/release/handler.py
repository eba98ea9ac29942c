"""The release handler: token bytes in, a durable decision out.

`handle(data)` never raises for anything in `data`. It first decides, then applies the
decision; deciding writes nothing but the release-log checkpoint a valid proof
advances (`LogGate.check`).

Deciding (`device.release.decision`): bytes identical to a token this device already
accepted, or to one waiting in the deferred queue, are a re-delivery (the cloud
re-publishes a token until it hears a result, ADR 0011): they are not judged again.
Under a trust root (v2) whose `log` section carries a witness policy, the message may be
an envelope with the token's release-log proof (`protocol.release_envelope`); before the
token is judged, `LogGate.check` verifies the proof against the checkpoint this doorbell
holds, and a refusal (a missing proof is `not_logged`) is a rejection with the
`LogRejectionCode` under the bytes' own id: nothing is uploaded (docs/protocol.md
section 11, ADR 0014). Without a log policy a proof is ignored. Any other bytes go
through `decision.judge`: the protocol's `verify_any` (`verify_token` under a v1 root,
`verify_release` under v2, ADR 0013) with the trust root, the clock and the
owner-tightened limits, then the clips of the window and the delivered keys.

Applying, after the token's sha256 is recorded in the audit log (`token_received`):

- a re-delivery: a finished job's result is queued once more (the same bytes), otherwise
  only the audit log records it;
- `clock_unsynchronized`: the bytes wait in the durable deferred queue and a `deferred`
  result is queued; `recheck_deferred` judges them again once the clock is synchronized
  (a token that expired meanwhile is then rejected with `expired`);
- a rejection: a `rejected` result with the rule's code (`malformed` for an unexpected
  exception), under the bytes' own id (`sha256-<32 hex>`) when it was made before the
  signatures verified (`decision.UNVERIFIED_CODES`), never under the jti they claim;
- acceptance: the window's clips are marked pending upload; then, in ONE transaction,
  the jti and seq are recorded and a job is created listing the clips. Only after that
  does anything act on the token: `JobRunner` re-seals (with the keys opened here,
  handed over in memory, `device.release.handover`), uploads and publishes; for
  preservation it pins the clips.

Every result names the sha256 of the token bytes it judged (`token_sha256`). Results go
to the durable outbox; `ReleaseService` publishes them. Raises only EnvironmentFault
(the release database or audit log failing), in which case the caller must not
acknowledge the message so that the broker delivers it again.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from typing import Any

from device.clock import Clock
from device.config import ReleaseSettings
from device.errors import DoorbellError, EnvironmentFault
from device.release.decision import (
    Accept,
    Decision,
    Defer,
    Duplicate,
    Reject,
    Verdict,
    judge,
    redelivery,
    reject_unread,
)
from device.release.handover import Handover, Prepared
from device.release.jobs import IMMEDIATE, JobState
from device.release.log_gate import LogStateError, RootLogGate
from device.release.messages import result_payload, unverified_id
from device.release.records import ReleaseRecords
from device.release.vaultview import ClipVault
from protocol.errors import RejectionCode
from protocol.messages import ResultStatus
from protocol.release_envelope import EnvelopeError, ReleaseMessage, parse_release_message
from protocol.tlog.errors import LogRejected, LogRejectionCode, TlogError
from protocol.token import VerificationContext
from protocol.topics import DeviceTopics
from protocol.trust_root_v2 import AnyTrustRoot, TrustRootV2

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Outcome:
    """The handler's decision on one token."""

    status: Decision
    jti: str
    reason: str = ""
    detail: str = ""
    clips: tuple[str, ...] = field(default=())


@dataclass(frozen=True, slots=True)
class ContextSource:
    """What a verification context is made of: this device, the owner's limits
    (`[release]`), the token size cap, and the clock read at each decision."""

    device_id: str
    settings: ReleaseSettings
    clock: Clock
    max_token_bytes: int | None = None

    def context(self) -> VerificationContext:
        """The verification context at this instant (raises ValueError on a bad setting)."""
        s = self.settings
        extra: dict[str, Any] = {}
        if self.max_token_bytes is not None:
            extra["max_token_bytes"] = self.max_token_bytes
        return VerificationContext(
            device_id=self.device_id,
            now=self.clock.now(),
            clock_synchronized=self.clock.synchronized(),
            skew_s=s.clock_skew_s,
            allowed_bases=None if s.allowed_bases is None else frozenset(s.allowed_bases),
            max_window_s={str(k): v for k, v in s.max_window_s.items()},
            max_token_life_s={str(k): v for k, v in s.max_token_life_s.items()},
            **extra,
        )


class ReleaseHandler:
    """Judges tokens. Thread-compatible: the service calls it from one worker thread.
    `log_gate` is None only where no trust root can carry a log policy (a root that does
    is then an EnvironmentFault)."""

    def __init__(
        self,
        *,
        root: AnyTrustRoot,
        topics: DeviceTopics,
        verification: ContextSource,
        records: ReleaseRecords,
        vault: ClipVault,
        transport_identity: str,
        log_gate: RootLogGate | None = None,
        handover: Handover | None = None,
    ) -> None:
        self._root = root
        self._topics = topics
        self._verification = verification
        self._records = records
        self._vault = vault
        self._transport_identity = transport_identity
        self._log_gate = log_gate
        self._handover = handover

    @property
    def root(self) -> AnyTrustRoot:
        return self._root

    def use_root(self, root: AnyTrustRoot) -> None:
        """Judge the next tokens under `root` (applied by the rotation rule)."""
        self._root = root

    def log_status(self) -> dict[str, Any] | None:
        """The release-log gate's status for the device's status (None without a log
        policy). Raises EnvironmentFault when the root's policy cannot be used."""
        if self._log_gate is None:
            self._no_gate()
            return None
        return self._log_gate.status(self._root)

    def context(self) -> VerificationContext:
        """The verification context at this instant (raises ValueError on a bad setting)."""
        return self._verification.context()

    # ------------------------------------------------------------------------------
    def handle(self, data: bytes, *, oversized: int = 0, source: str = "mqtt") -> Outcome:
        """Decide on one token, then apply the decision. Raises only EnvironmentFault
        (see the module docstring)."""
        if oversized:
            sha = hashlib.sha256(data).hexdigest()
            received: dict[str, Any] = {"sha256": sha, "bytes": oversized, "source": source}
            verdict: Verdict = reject_unread(
                sha, RejectionCode.oversized, f"payload of {oversized} bytes was not kept"
            )
        else:
            try:
                parsed = parse_release_message(data)
            except EnvelopeError as exc:
                sha = hashlib.sha256(data).hexdigest()
                received = {"sha256": sha, "bytes": len(data), "source": source}
                verdict = reject_unread(sha, RejectionCode.malformed, f"release envelope: {exc}")
            else:
                # the sha256 of the token's own bytes (never of the envelope): what results name
                sha = hashlib.sha256(parsed.token).hexdigest()
                received = {"sha256": sha, "bytes": len(data), "source": source,
                            "log_proof": parsed.log is not None}
                verdict = (
                    redelivery(parsed.token, sha, self._records)
                    or self._check_log(parsed, sha)
                    or self._judge(parsed.token, sha, deferred=False)
                )
        try:
            self._records.audit.append("token_received", received)
        except BaseException:
            _wipe(verdict)
            raise
        return self._apply(verdict, data)

    def recheck_deferred(self) -> list[Outcome]:
        """Judge the deferred tokens again once the clock is synchronized."""
        if not self._verification.clock.synchronized():
            return []
        outcomes = []
        jobs = self._records.jobs
        for sha, data in jobs.deferred():
            verdict = self._judge(parse_release_message(data).token, sha, deferred=True)
            outcome = self._apply(verdict, data)
            if outcome.status is not Decision.deferred:
                jobs.drop_deferred(sha)
            outcomes.append(outcome)
        return outcomes

    # -- deciding ------------------------------------------------------------------
    def _judge(self, token: bytes, sha: str, *, deferred: bool) -> Accept | Reject | Defer:
        return judge(
            token, sha, root=self._root, context=self.context(), replay=self._records.replay,
            vault=self._vault, transport_identity=self._transport_identity, deferred=deferred,
        )

    def _no_gate(self) -> None:
        root = self._root
        if isinstance(root, TrustRootV2) and root.log_policy is not None:
            raise EnvironmentFault("the trust root has a log policy but the release handler "
                                   "has no identity key or state directory to check proofs")

    def _check_log(self, parsed: ReleaseMessage, sha: str) -> Reject | None:
        """The release-log check, before the token is judged: None when there is no log
        policy or the proof holds (the newer checkpoint then stored), else the rejection
        under the bytes' own id (nothing has verified the jti the token claims). A token
        without a proof is `not_logged`."""
        if self._log_gate is None:
            self._no_gate()
            return None
        gate = self._log_gate.gate(self._root)
        if gate is None:
            return None
        if parsed.log is None:
            return Reject(unverified_id(sha), sha, LogRejectionCode.not_logged,
                          "the token came without a release-log proof")
        try:
            gate.check(parsed.token, parsed.log)
        except LogRejected as exc:
            return Reject(unverified_id(sha), sha, exc.code, exc.detail)
        except LogStateError as exc:
            raise EnvironmentFault(f"release-log state: {exc}") from exc
        except TlogError as exc:  # a proof that breaks a format rule in an unforeseen way
            return Reject(unverified_id(sha), sha, LogRejectionCode.log_proof_malformed,
                          str(exc))
        return None

    # -- applying ------------------------------------------------------------------
    def _apply(self, verdict: Verdict, message: bytes) -> Outcome:
        if isinstance(verdict, Accept):
            return self._accept(verdict)
        if isinstance(verdict, Reject):
            return self._reject(verdict)
        if isinstance(verdict, Defer):
            return self._defer(verdict, message)
        return self._duplicate(verdict)

    def _duplicate(self, verdict: Duplicate) -> Outcome:
        """Identical to an accepted token: no verification, no job, no seq change; if the
        job has ended, its own final `result` payload is queued again (unless it still
        waits in the outbox), so a cloud that lost it hears it. While the job runs, or
        while the bytes wait in the deferred queue, the result will come when they end:
        only the audit entry is written."""
        jobs = self._records.jobs
        if not verdict.accepted:
            action = "waiting_for_clock"
        elif (job := jobs.job(verdict.jti)) is None:
            action = "no_job"  # cannot happen: the job is created with the record
        elif job.state is JobState.running:
            action = "job_running"
        elif job.result is None:
            action = "no_result_kept"  # cannot happen for jobs this version ended
        elif jobs.enqueue_once(self._topics.result, job.result, retain=False, due_at=IMMEDIATE):
            action = "result_queued_again"
        else:
            action = "result_already_queued"
        self._records.audit.append("decision", {
            "sha256": verdict.sha256, "jti": verdict.jti, "status": Decision.duplicate,
            "code": "", "action": action,
        })
        log.info("token %s delivered again (%s)", verdict.jti, action)
        return Outcome(Decision.duplicate, verdict.jti, detail=action)

    def _accept(self, verdict: Accept) -> Outcome:
        claims, sha = verdict.claims, verdict.sha256
        claims_json = json.dumps(claims.to_payload(), sort_keys=True, separators=(",", ":"))
        spans = [(c.id, c.start, c.end or c.start) for c in verdict.clips]
        ids = tuple(c.id for c in verdict.clips)
        handed = False
        try:
            if ids and not claims.is_preservation:
                # before the job exists (the job thread may start it at once and clears
                # the marks when it ends): retention must not remove these clips meanwhile
                try:
                    self._vault.mark_pending_upload(ids)
                except DoorbellError as exc:
                    log.warning("cannot mark clips of %s as pending upload: %s", claims.jti, exc)
            if verdict.keys is not None and self._handover is not None:
                # before the job exists, too: its first pass takes what was opened here
                self._handover.put(claims.jti, Prepared(verdict.keys,
                                                        {c.id: c for c in verdict.clips}))
                handed = True
            self._records.replay.record(
                claims.jti,
                claims.seq,
                claims.basis,
                sha256=sha,
                also=lambda conn: self._records.jobs.create_job(
                    claims.jti, claims.basis, claims_json, spans, conn=conn
                ),
            )
        except BaseException:
            if handed and self._handover is not None:
                taken = self._handover.take(claims.jti)
                if taken is not None:
                    taken.clear()
            _wipe(verdict)
            raise
        if not handed:
            _wipe(verdict)
        self._records.audit.append("decision", {
            "sha256": sha, "jti": claims.jti, "seq": claims.seq, "basis": claims.basis,
            "status": Decision.accepted, "code": "", "clips": list(ids),
        })
        log.info("accepted %s token %s for %d clip(s)", claims.basis, claims.jti, len(ids))
        return Outcome(Decision.accepted, claims.jti, clips=ids)

    def _defer(self, verdict: Defer, message: bytes) -> Outcome:
        jti, sha, detail = verdict.jti, verdict.sha256, verdict.detail
        code = RejectionCode.clock_unsynchronized.value
        if verdict.again:
            return Outcome(Decision.deferred, jti, code, detail)
        fresh = self._records.jobs.defer(sha, message)
        self._records.audit.append(
            "decision", {"sha256": sha, "jti": jti, "status": Decision.deferred, "code": code},
        )
        if fresh:
            log.warning(
                "token %s deferred: %s; it is checked again once the clock is synchronized "
                "(NTP; docs/adr/0009-clock-and-deferral.md)", jti, detail,
            )
            self._queue_result(jti, sha, ResultStatus.deferred, code, detail)
        return Outcome(Decision.deferred, jti, code, detail)

    def _reject(self, verdict: Reject) -> Outcome:
        jti, code, detail = verdict.report_as, verdict.code.value, verdict.detail
        self._records.audit.append("decision", {
            "sha256": verdict.sha256, "jti": jti, "status": Decision.rejected, "code": code,
            "detail": detail[:300],
        })
        self._queue_result(jti, verdict.sha256, ResultStatus.rejected, code, detail)
        log.info("rejected token %s (%s): %s", jti or verdict.sha256[:16], code, detail)
        return Outcome(Decision.rejected, jti, code, detail)

    def _queue_result(
        self, jti: str, sha: str, status: ResultStatus, reason: str, detail: str
    ) -> None:
        payload = result_payload(jti=jti, status=status, reason=reason, detail=detail,
                                 clips=(), token_sha256=sha)
        self._records.jobs.enqueue(self._topics.result, payload, retain=False, due_at=IMMEDIATE)


def _wipe(verdict: Verdict) -> None:
    """Forget the keys an acceptance opened, when nothing takes them over."""
    if isinstance(verdict, Accept) and verdict.keys is not None:
        verdict.keys.clear()
