"""The release handler: token bytes in, a durable decision out.

`handle(data)` never raises for anything in `data`. It records the token's sha256 in the
audit log. Bytes identical to a token it already accepted, or to one waiting in the
deferred queue, are a re-delivery (the cloud re-publishes a token until it hears a
result, ADR 0011): they are not judged and nothing acts on them again; a finished job's
result is queued once more (the same bytes), otherwise only the audit log records the
re-delivery. Any other bytes go through the protocol's `verify_any` (`verify_token` under a v1 root,
`verify_release` under v2, ADR 0013) with the trust
root, the clock and the owner-tightened limits (a known jti with other bytes is
`replayed`), and then:

- `clock_unsynchronized`: the bytes wait in the durable deferred queue and a `deferred`
  result is queued; `recheck_deferred` runs them again once the clock is synchronized
  (a token that expired meanwhile is then rejected with `expired`);
- any other rejection, and any exception raised while judging hostile bytes: a
  `rejected` result with the rule's code (`malformed` for an unexpected exception),
  under the bytes' own id (`sha256-<32 hex>`) when it was made before the signatures
  verified (`UNVERIFIED_CODES`), never under the jti the bytes claim;
- acceptance: the delivered epoch keys are opened and checked against the recorded
  epoch recipients (`keys_mismatch`, `bad_keys`); then, in ONE transaction, the jti and
  seq are recorded and a job is created listing the clips that overlap the window. Only
  after that does anything act on the token: `JobRunner` re-seals, uploads and
  publishes; for preservation it pins the clips.

Under a trust root (v2) whose `log` section carries a witness policy, the message may be
an envelope with the token's release-log proof (`protocol.release_envelope`); before
anything else is done with the token, `LogGate.check` verifies the proof against the
checkpoint this doorbell holds, and a refusal (a missing proof is `not_logged`) is a
`rejected` result with the `LogRejectionCode` under the bytes' own id: nothing is
uploaded (docs/protocol.md section 11, ADR 0014). Without a log policy a proof is ignored
and tokens are judged as before.

Every result names the sha256 of the token bytes it judged (`token_sha256`). Results go
to the durable outbox; `ReleaseService` publishes them. Raises only
EnvironmentFault (the release database or audit log failing), in which case the caller
must not acknowledge the message so that the broker delivers it again.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from device.clock import Clock
from device.config import ReleaseSettings
from device.errors import DoorbellError, EnvironmentFault
from device.release.audit import AuditLog
from device.release.jobs import IMMEDIATE, JobStore
from device.release.log_gate import LogGate, LogStateError
from device.release.log_tiles import http_tiles
from device.release.messages import result_payload, unverified_id
from device.release.replay import ReplayState
from device.release.vaultview import RELEASABLE, ClipVault
from protocol.errors import KeyFormatError, RejectionCode, TokenRejected
from protocol.release_check import verify_any
from protocol.release_envelope import EnvelopeError, parse_release_message
from protocol.tlog.errors import LogRejected, LogRejectionCode, TlogError
from protocol.tlog.policy import parse_policy
from protocol.token import (
    ID_PATTERN,
    ReleaseClaims,
    VerificationContext,
    open_delivered_keys,
)
from protocol.topics import DeviceTopics
from protocol.trust_root_v2 import AnyTrustRoot, TrustRootV2

log = logging.getLogger(__name__)

UNVERIFIED_CODES = frozenset({
    RejectionCode.oversized,  # rule 1: nothing parsed
    RejectionCode.malformed,  # rule 2: before any signature
    RejectionCode.bad_header,  # rule 3
    RejectionCode.bad_signature,  # rule 4a
    RejectionCode.below_threshold,  # rule 4b
    RejectionCode.policy_signature_missing,  # trust root v2, rules 4b-4d: the signatures
    RejectionCode.review_signature_missing,  # a token needs did not all verify, so its
    RejectionCode.review_orgs_too_few,  # bytes vouch for no jti (a host can make these)
    RejectionCode.replayed,  # verified, but another token owns the jti
})
"""Rejections reported under the bytes' own id (`unverified_id`), never the claimed jti."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """The handler's decision on one token."""

    status: str  # accepted | rejected | deferred | duplicate (an identical re-delivery)
    jti: str
    reason: str = ""
    detail: str = ""
    clips: tuple[str, ...] = field(default=())


def claimed_jti(data: bytes) -> str:
    """The jti a token claims, read WITHOUT verification, for reporting only ("" if none)."""
    try:
        envelope = json.loads(data)
        payload = envelope["payload"]
        raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
        jti = json.loads(raw)["jti"]
    except (ValueError, KeyError, TypeError, binascii.Error, RecursionError):
        return ""
    return jti if isinstance(jti, str) and ID_PATTERN.fullmatch(jti) else ""


class ReleaseHandler:
    """Judges tokens. Thread-compatible: the service calls it from one worker thread."""

    def __init__(
        self,
        *,
        device_id: str,
        topics: DeviceTopics,
        root: AnyTrustRoot,
        settings: ReleaseSettings,
        clock: Clock,
        replay: ReplayState,
        jobs: JobStore,
        audit: AuditLog,
        vault: ClipVault,
        transport_identity: str,
        max_token_bytes: int | None = None,
        identity: Ed25519PublicKey | None = None,
        state_dir: Path | None = None,
        log_seed: Path | None = None,
    ) -> None:
        self._device_id = device_id
        self._topics = topics
        self._root = root
        self._settings = settings
        self._clock = clock
        self._replay = replay
        self._jobs = jobs
        self._audit = audit
        self._vault = vault
        self._transport_identity = transport_identity
        self._max_token_bytes = max_token_bytes
        self._identity = identity
        self._state_dir = state_dir
        self._log_seed = log_seed  # enrolment's first checkpoint note, if any
        self._gate: tuple[str, LogGate] | None = None  # (policy text, gate) of the root

    @property
    def root(self) -> AnyTrustRoot:
        return self._root

    def use_root(self, root: AnyTrustRoot) -> None:
        """Judge the next tokens under `root` (applied by the rotation rule)."""
        self._root = root

    def log_gate(self) -> LogGate | None:
        """The release-log gate when the trust root in force (v2) carries a log policy,
        else None: no log, tokens are judged as before (docs/protocol.md section 11).
        Raises EnvironmentFault when the policy cannot be used on this device."""
        root = self._root
        if not isinstance(root, TrustRootV2) or root.log_policy is None:
            return None
        if self._gate is not None and self._gate[0] == root.log_policy:
            return self._gate[1]
        if self._identity is None or self._state_dir is None:
            raise EnvironmentFault("the trust root has a log policy but the release handler "
                                   "has no identity key or state directory to check proofs")
        try:
            policy = parse_policy(root.log_policy.encode("ascii"))
            url = policy.logs[0].url if len(policy.logs) == 1 else None
            gate = LogGate(self._state_dir, policy, self._identity,
                           tiles=None if url is None else http_tiles(url))
        except (TlogError, ValueError, OSError) as exc:
            raise EnvironmentFault(f"the trust root's log policy is unusable: {exc}") from exc
        self._seed(gate)
        self._gate = (root.log_policy, gate)
        return gate

    def _seed(self, gate: LogGate) -> None:
        """Store enrolment's checkpoint when none is stored yet. Without one, the first
        proof the doorbell accepts becomes its checkpoint."""
        seed = self._log_seed
        if seed is None or not seed.is_file() or gate.layout.checkpoint.exists():
            return
        try:
            gate.seed(seed.read_bytes())
        except (TlogError, LogStateError, OSError) as exc:  # LogRejected: a TlogError
            log.error("release-log checkpoint %s not used: %s", seed, exc)

    def log_status(self) -> dict[str, Any] | None:
        """`LogGate.status()` for the device's status (None without a log policy)."""
        gate = self.log_gate()
        if gate is None:
            return None
        try:
            status = gate.status()
        except LogStateError as exc:
            return {"log_error": str(exc)[:200]}
        status["log_evidence"] = len(status["log_evidence"])
        return status

    def context(self) -> VerificationContext:
        """The verification context at this instant (raises ValueError on a bad setting)."""
        s = self._settings
        extra: dict[str, Any] = {}
        if self._max_token_bytes is not None:
            extra["max_token_bytes"] = self._max_token_bytes
        return VerificationContext(
            device_id=self._device_id,
            now=self._clock.now(),
            clock_synchronized=self._clock.synchronized(),
            skew_s=s.clock_skew_s,
            allowed_bases=None if s.allowed_bases is None else frozenset(s.allowed_bases),
            max_window_s={str(k): v for k, v in s.max_window_s.items()},
            max_token_life_s={str(k): v for k, v in s.max_token_life_s.items()},
            **extra,
        )

    # ------------------------------------------------------------------------------
    def handle(self, data: bytes, *, oversized: int = 0, source: str = "mqtt") -> Outcome:
        """Decide on one token. Raises only EnvironmentFault (see the module docstring)."""
        if oversized:
            sha = hashlib.sha256(data).hexdigest()
            self._audit.append("token_received",
                               {"sha256": sha, "bytes": oversized, "source": source})
            return self._reject(
                unverified_id(sha),
                sha,
                RejectionCode.oversized,
                f"payload of {oversized} bytes was not kept",
            )
        try:
            parsed = parse_release_message(data)
        except EnvelopeError as exc:
            sha = hashlib.sha256(data).hexdigest()
            self._audit.append("token_received",
                               {"sha256": sha, "bytes": len(data), "source": source})
            return self._reject(unverified_id(sha), sha, RejectionCode.malformed,
                                f"release envelope: {exc}")
        # the sha256 of the token's own bytes (never of the envelope): what results name
        token = parsed.token
        sha = hashlib.sha256(token).hexdigest()
        self._audit.append(
            "token_received",
            {"sha256": sha, "bytes": len(data), "source": source,
             "log_proof": parsed.log is not None},
        )
        return self._redelivered(token, sha) or self._judge(data, sha, deferred=False)

    def recheck_deferred(self) -> list[Outcome]:
        """Judge the deferred tokens again once the clock is synchronized."""
        if not self._clock.synchronized():
            return []
        outcomes = []
        for sha, data in self._jobs.deferred():
            outcome = self._judge(data, sha, deferred=True)
            if outcome.status != "deferred":
                self._jobs.drop_deferred(sha)
            outcomes.append(outcome)
        return outcomes

    # ------------------------------------------------------------------------------
    def _redelivered(self, data: bytes, sha: str) -> Outcome | None:
        """The `duplicate` outcome for bytes this device already holds, else None.

        Identical to an accepted token: no verification, no job, no seq change; if the
        job has ended, its own final `result` payload is queued again (unless it still
        waits in the outbox), so a cloud that lost it hears it. While the job runs, or
        while the bytes wait in the deferred queue, the result will come when they end:
        only the audit entry is written."""
        jti = self._replay.accepted_jti(sha)
        if jti is not None:
            job = self._jobs.job(jti)
            if job is None:
                action = "no_job"  # cannot happen: the job is created with the record
            elif job.state == "running":
                action = "job_running"
            elif job.result is None:
                action = "no_result_kept"  # cannot happen for jobs this version ended
            elif self._jobs.enqueue_once(
                self._topics.result, job.result, retain=False, due_at=IMMEDIATE
            ):
                action = "result_queued_again"
            else:
                action = "result_already_queued"
        elif self._jobs.is_deferred(sha):
            jti, action = claimed_jti(data) or unverified_id(sha), "waiting_for_clock"
        else:
            return None
        self._audit.append(
            "decision",
            {"sha256": sha, "jti": jti, "status": "duplicate", "code": "", "action": action},
        )
        log.info("token %s delivered again (%s)", jti, action)
        return Outcome("duplicate", jti, detail=action)

    def _check_log(self, message: bytes, sha: str) -> Outcome | None:
        """The release-log check, before anything else is done with a token: None when
        there is no log policy or the proof holds (the newer checkpoint then stored),
        else the `rejected` outcome under the bytes' own id (nothing has verified the
        jti the token claims). A token without a proof is `not_logged`."""
        gate = self.log_gate()
        if gate is None:
            return None
        parsed = parse_release_message(message)  # parsed once already by `handle`
        if parsed.log is None:
            return self._reject(unverified_id(sha), sha, LogRejectionCode.not_logged,
                                "the token came without a release-log proof")
        try:
            gate.check(parsed.token, parsed.log)
        except LogRejected as exc:
            return self._reject(unverified_id(sha), sha, exc.code, exc.detail)
        except LogStateError as exc:
            raise EnvironmentFault(f"release-log state: {exc}") from exc
        except TlogError as exc:  # a proof that breaks a format rule in an unforeseen way
            return self._reject(unverified_id(sha), sha, LogRejectionCode.log_proof_malformed,
                                str(exc))
        return None

    def _judge(self, message: bytes, sha: str, *, deferred: bool) -> Outcome:
        data = parse_release_message(message).token
        jti = claimed_jti(data) or unverified_id(sha)
        # a deferred token passed the log check when it arrived (its checkpoint is stored)
        refused = None if deferred else self._check_log(message, sha)
        if refused is not None:
            return refused
        try:
            claims = verify_any(
                data, root=self._root, context=self.context(), replay=self._replay
            )
            clips = self._clips_for(claims)
            if not claims.is_preservation:
                self._check_keys(claims)
        except TokenRejected as exc:
            if exc.code is RejectionCode.clock_unsynchronized:
                return self._defer(jti, sha, message, exc.detail, again=deferred)
            if exc.code in UNVERIFIED_CODES:
                # Refused before its signatures verified: nothing says these bytes are the
                # token whose jti they claim (a forgery may claim the jti of a release in
                # flight), so the result goes under the bytes' own id. So does `replayed`:
                # other bytes under a jti this device accepted; that token was not rejected.
                return self._reject(unverified_id(sha), sha, exc.code, exc.detail)
            return self._reject(jti, sha, exc.code, exc.detail)
        except EnvironmentFault:
            raise
        except Exception as exc:  # hostile bytes must never take the agent down
            log.exception("unexpected error while judging token %s", sha[:16])
            return self._reject(unverified_id(sha), sha, RejectionCode.malformed,
                                f"{type(exc).__name__} while verifying")
        return self._accept(claims, sha, clips)

    def _clips_for(self, claims: ReleaseClaims) -> list[tuple[str, datetime, datetime]]:
        window = claims.window
        out = []
        for clip in self._vault.list_clips(window.start, window.end, RELEASABLE):
            end = clip.end or clip.start
            if window.overlaps(clip.start, end):  # the rule the cloud checks the manifest by
                out.append((clip.id, clip.start, end))
        return out

    def _check_keys(self, claims: ReleaseClaims) -> None:
        recorded = {e.id: e.recipient for e in self._vault.epochs()}
        try:
            identities = open_delivered_keys(claims, self._transport_identity, recorded)
        except KeyFormatError as exc:
            raise EnvironmentFault(f"the device transport identity is unusable: {exc}") from exc
        identities.clear()  # opened again by the job runner, only while re-sealing

    def _accept(
        self, claims: ReleaseClaims, sha: str, clips: list[tuple[str, datetime, datetime]]
    ) -> Outcome:
        claims_json = json.dumps(claims.to_payload(), sort_keys=True, separators=(",", ":"))
        ids = tuple(c[0] for c in clips)
        if ids and not claims.is_preservation:
            # before the job exists (the job thread may start it at once and clears the
            # marks when it ends): retention must not remove these clips meanwhile
            try:
                self._vault.mark_pending_upload(ids)
            except DoorbellError as exc:
                log.warning("cannot mark clips of %s as pending upload: %s", claims.jti, exc)
        self._replay.record(
            claims.jti,
            claims.seq,
            claims.basis,
            sha256=sha,
            also=lambda conn: self._jobs.create_job(
                claims.jti, claims.basis, claims_json, clips, conn=conn
            ),
        )
        self._audit.append(
            "decision",
            {
                "sha256": sha,
                "jti": claims.jti,
                "seq": claims.seq,
                "basis": claims.basis,
                "status": "accepted",
                "code": "",
                "clips": list(ids),
            },
        )
        log.info("accepted %s token %s for %d clip(s)", claims.basis, claims.jti, len(ids))
        return Outcome("accepted", claims.jti, clips=ids)

    def _defer(self, jti: str, sha: str, data: bytes, detail: str, *, again: bool) -> Outcome:
        if again:
            return Outcome("deferred", jti, RejectionCode.clock_unsynchronized.value, detail)
        fresh = self._jobs.defer(sha, data)
        self._audit.append(
            "decision",
            {"sha256": sha, "jti": jti, "status": "deferred", "code": "clock_unsynchronized"},
        )
        if fresh:
            log.warning(
                "token %s deferred: %s; it is checked again once the clock is synchronized "
                "(NTP; docs/adr/0009-clock-and-deferral.md)", jti, detail,
            )
            self._queue_result(jti, sha, "deferred", RejectionCode.clock_unsynchronized.value,
                               detail)
        return Outcome("deferred", jti, RejectionCode.clock_unsynchronized.value, detail)

    def _reject(self, jti: str, sha: str, code: RejectionCode | LogRejectionCode,
                detail: str) -> Outcome:
        self._audit.append(
            "decision",
            {
                "sha256": sha,
                "jti": jti,
                "status": "rejected",
                "code": code.value,
                "detail": detail[:300],
            },
        )
        self._queue_result(jti, sha, "rejected", code.value, detail)
        log.info("rejected token %s (%s): %s", jti or sha[:16], code.value, detail)
        return Outcome("rejected", jti, code.value, detail)

    def _queue_result(
        self, jti: str, sha: str, status: str, reason: str, detail: str,
        clips: tuple[str, ...] = (),
    ) -> None:
        payload = result_payload(jti=jti, status=status, reason=reason, detail=detail,
                                 clips=clips, token_sha256=sha)
        self._jobs.enqueue(self._topics.result, payload, retain=False, due_at=IMMEDIATE)
