"""The device's decision on a release token, as a pure function of what it is given.

Token bytes, the trust root, the verification context (the clock's reading and the
owner's limits), the transport identity and read-only views of the device's state go
in; a typed verdict comes out: `Accept`, `Reject` (with the rule's code), `Defer` (the
clock cannot judge the token yet) or `Duplicate` (bytes this device already holds).
Nothing here writes: `ReleaseHandler` applies the verdict (audit log, release
database, vault marks, outbox), and `LogGate` checks the release-log proof before
`judge` is asked (it stores the checkpoint it verified).

Rejections made before the token's signatures verified, and `replayed`, are reported
under the bytes' own id (`unverified_id`), never under the jti the bytes claim
(`UNVERIFIED_CODES`): a forgery may claim the jti of a release in flight.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from device.errors import EnvironmentFault
from device.release.messages import unverified_id
from device.release.vaultview import RELEASABLE
from device.vault.index import ClipRecord, ClipState, EpochRecord
from protocol.errors import KeyFormatError, RejectionCode, TokenRejected
from protocol.release_check import verify_any
from protocol.tlog.errors import LogRejectionCode
from protocol.token import ReleaseClaims, ReplayView, VerificationContext, open_delivered_keys
from protocol.trust_root_v2 import AnyTrustRoot
from protocol.unverified import claimed_jti

log = logging.getLogger(__name__)


class Decision(StrEnum):
    """What the handler decided on one delivery (its `Outcome.status`, the audit log's
    `decision` entries). Results on the wire use `protocol.messages.ResultStatus`."""

    accepted = "accepted"
    rejected = "rejected"
    deferred = "deferred"
    duplicate = "duplicate"  # bytes identical to a token this device already holds


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
class Accept:
    """The token verified, its keys open and match the recorded epochs. `clips` are the
    releasable clips overlapping its window; `keys` the opened epoch identities (epoch
    id -> ``AGE-SECRET-KEY-1...``), None for a preservation token (it carries none)."""

    claims: ReleaseClaims
    sha256: str
    clips: tuple[ClipRecord, ...]
    keys: dict[str, str] | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class Reject:
    """Refused under `report_as` (the jti, or the bytes' own id) with the rule's code."""

    report_as: str
    sha256: str
    code: RejectionCode | LogRejectionCode
    detail: str


@dataclass(frozen=True, slots=True)
class Defer:
    """The clock is not synchronized: the bytes wait until it is (ADR 0009). `jti` is
    the claimed one (or the bytes' own id), for reporting only; `again` is true when the
    bytes already waited in the deferred queue."""

    jti: str
    sha256: str
    detail: str
    again: bool = False


@dataclass(frozen=True, slots=True)
class Duplicate:
    """Bytes identical to a token this device accepted (`accepted`, `jti` verified then)
    or one waiting in the deferred queue (`jti` claimed, for reporting only)."""

    jti: str
    sha256: str
    accepted: bool


Verdict = Accept | Reject | Defer | Duplicate


class HeldTokens(Protocol):
    """Read-only: the token bytes (by sha256) this device already holds."""

    def accepted_jti(self, sha256: str) -> str | None: ...

    def is_deferred(self, sha256: str) -> bool: ...


class VaultIndex(Protocol):
    """Read-only: the clips and epochs the vault holds."""

    def list_clips(
        self,
        since: datetime | None = None,
        until: datetime | None = None,
        states: Iterable[ClipState] | None = None,
    ) -> Sequence[ClipRecord]: ...

    def epochs(self) -> Sequence[EpochRecord]: ...


def reject_unread(sha256: str, code: RejectionCode, detail: str) -> Reject:
    """A refusal of bytes nothing could be read from (oversized, not an envelope)."""
    return Reject(unverified_id(sha256), sha256, code, detail)


def redelivery(token: bytes, sha256: str, held: HeldTokens) -> Duplicate | None:
    """`Duplicate` when these bytes are already held (accepted, or deferred), else None:
    a re-delivery is not judged again (the cloud re-publishes until it hears a result,
    ADR 0011)."""
    jti = held.accepted_jti(sha256)
    if jti is not None:
        return Duplicate(jti, sha256, accepted=True)
    if held.is_deferred(sha256):
        return Duplicate(claimed_jti(token) or unverified_id(sha256), sha256, accepted=False)
    return None


def judge(
    token: bytes,
    sha256: str,
    *,
    root: AnyTrustRoot,
    context: VerificationContext,
    replay: ReplayView,
    vault: VaultIndex,
    transport_identity: str,
    deferred: bool = False,
) -> Accept | Reject | Defer:
    """Verify `token` under `root` (`protocol.release_check.verify_any`), find the clips
    its window covers and open its keys. `deferred` says the bytes come from the deferred
    queue. Never raises for anything in `token` (an unexpected exception is `malformed`);
    raises EnvironmentFault when the transport identity itself is unusable."""
    jti = claimed_jti(token) or unverified_id(sha256)
    try:
        claims = verify_any(token, root=root, context=context, replay=replay)
        clips = _clips_for(claims, vault)
        keys = None if claims.is_preservation else _open_keys(claims, vault, transport_identity)
    except TokenRejected as exc:
        if exc.code is RejectionCode.clock_unsynchronized:
            return Defer(jti, sha256, exc.detail, again=deferred)
        if exc.code in UNVERIFIED_CODES:
            # Refused before its signatures verified: nothing says these bytes are the
            # token whose jti they claim (a forgery may claim the jti of a release in
            # flight), so the result goes under the bytes' own id. So does `replayed`:
            # other bytes under a jti this device accepted; that token was not rejected.
            return Reject(unverified_id(sha256), sha256, exc.code, exc.detail)
        return Reject(jti, sha256, exc.code, exc.detail)
    except EnvironmentFault:
        raise
    except Exception as exc:  # hostile bytes must never take the agent down
        log.exception("unexpected error while judging token %s", sha256[:16])
        return Reject(unverified_id(sha256), sha256, RejectionCode.malformed,
                      f"{type(exc).__name__} while verifying")
    return Accept(claims, sha256, clips, keys)


def _clips_for(claims: ReleaseClaims, vault: VaultIndex) -> tuple[ClipRecord, ...]:
    window = claims.window
    return tuple(
        clip
        for clip in vault.list_clips(window.start, window.end, RELEASABLE)
        # the rule the cloud checks the manifest by
        if window.overlaps(clip.start, clip.end or clip.start)
    )


def _open_keys(claims: ReleaseClaims, vault: VaultIndex, transport_identity: str) -> dict[str, str]:
    """The delivered epoch identities, each checked against the recipient the vault
    recorded for its epoch (TokenRejected `keys_mismatch`, `bad_keys`)."""
    recorded = {e.id: e.recipient for e in vault.epochs()}
    try:
        return open_delivered_keys(claims, transport_identity, recorded)
    except KeyFormatError as exc:
        raise EnvironmentFault(f"the device transport identity is unusable: {exc}") from exc
