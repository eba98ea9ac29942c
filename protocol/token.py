"""Release and preservation tokens: the device's acceptance rules, and the public surface
of the token modules.

A token is a JWS in General JSON Serialization (RFC 7515 section 7.2.1), alg
``Ed25519`` (RFC 9864), each protected header exactly ``{"alg", "kid", "typ":
"doorbell-release+jws"}``; its payload is the claims object of docs/protocol.md.

`verify_token` is the device's trust decision: bytes, a trust root, a verification
context (device id, the clock, owner limits) and a read-only view of the replay state
in; the typed claims or a `TokenRejected` with a stable code out. It checks the rules in
exactly this order and stops at the first failure (docs/protocol.md lists the codes):

 1. size cap, before any parsing                                  oversized
 2. JWS JSON structure and the claims schema                      malformed
 3. every protected header is {alg: Ed25519, kid, typ}            bad_header
 4. a signature under a release-role kid fails                    bad_signature
    fewer valid signatures from distinct release kids than the threshold
                                                                  below_threshold
 5. aud is this device; iss is the trust root's issuer            wrong_device, wrong_issuer
 6. clock known to be synchronized                                clock_unsynchronized
    iat - skew <= now and nbf - skew <= now                       not_yet_valid
    now < exp                                                     expired
 7. exp - iat within the basis limit (root, tightened by owner)   token_life_too_long
 8. jti not seen; seq above the last accepted                     replayed, stale_seq
 9. basis allowed by the owner                                    basis_not_allowed
10. window length within the basis limit                          window_too_long
    window end not after iat                                      window_in_future
    preservation: hold_until at most 90 days after iat            hold_too_long
11. recipient is an age X25519 recipient                          bad_recipient
    keys is standard base64 of an age file                        bad_keys

The delivered keys are opened separately, by `open_delivered_keys`, once the device
holds its transport identity and its epoch records (keys_mismatch, bad_keys).

The other jobs live beside this module and are imported through it (`__all__`):
`protocol.token_claims` (the claims and their strict parser), `protocol.token_signing`
(the cloud's signing) and `protocol.token_keys` (the delivered epoch keys).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final, Protocol

import pyrage

from protocol import _jws
from protocol import _schema as s
from protocol._schema import ID_PATTERN
from protocol.errors import RejectionCode, TokenRejected
from protocol.timefmt import format_time, require_aware
from protocol.token_claims import (
    MAX_TOKEN_BYTES,
    TOKEN_TYP,
    TOKEN_VERSION,
    CaseRef,
    ReleaseClaims,
    Window,
    unix_time,
)
from protocol.token_keys import (
    AGE_MAGIC,
    EPOCH_ID_PATTERN,
    MAX_EPOCHS,
    decode_keys,
    open_delivered_keys,
    seal_keys_for_device,
)
from protocol.token_signing import add_signature, encode_claims, sign_token
from protocol.trust_root import BASES, BasisLimits, TrustRoot

MAX_HOLD_S: Final = 90 * 24 * 3600  # docs/protocol.md: a pin lasts at most 90 days
DEFAULT_SKEW_S: Final = 60
RELEASE_ROLE: Final = "release"


class ReplayView(Protocol):
    """Read-only view of the device's durable replay state."""

    def seen(self, jti: str) -> bool: ...

    def last_seq(self) -> int: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class VerificationContext:
    """Everything `verify_token` needs besides the token and the root.

    The owner's settings (`allowed_bases`, `max_window_s`, `max_token_life_s`, per
    basis, seconds) can only tighten the trust root's limits: the smaller value wins.
    Raises ValueError for a naive `now`, negative skew or non-positive limits.
    """

    device_id: str
    now: datetime
    clock_synchronized: bool
    skew_s: int = DEFAULT_SKEW_S
    max_token_bytes: int = MAX_TOKEN_BYTES
    allowed_bases: frozenset[str] | None = None
    max_window_s: Mapping[str, int] = field(default_factory=dict)
    max_token_life_s: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        require_aware("now", self.now)
        if not 0 <= self.skew_s <= 3600:
            raise ValueError("skew_s must be between 0 and 3600 seconds")
        if not 0 < self.max_token_bytes <= MAX_TOKEN_BYTES:
            raise ValueError(f"max_token_bytes must be between 1 and {MAX_TOKEN_BYTES}")
        for name, limits in (
            ("max_window_s", self.max_window_s),
            ("max_token_life_s", self.max_token_life_s),
        ):
            for basis, value in limits.items():
                if basis not in BASES or not isinstance(value, int) or value <= 0:
                    raise ValueError(f"{name}[{basis!r}] must be a positive int for a basis")
        if self.allowed_bases is not None and not self.allowed_bases <= set(BASES):
            raise ValueError(f"allowed_bases must be a subset of {', '.join(BASES)}")


def _reject(code: RejectionCode, detail: str) -> TokenRejected:
    return TokenRejected(code, detail)


_STAGE_CODES: Final = {
    "oversized": RejectionCode.oversized,
    "malformed": RejectionCode.malformed,
    "bad_header": RejectionCode.bad_header,
}


def verify_token(
    data: bytes,
    *,
    root: TrustRoot,
    context: VerificationContext,
    replay: ReplayView | None,
) -> ReleaseClaims:
    """Apply every acceptance rule, in the order of the module docstring.

    `replay` is None only for offline checks (the CLI); the agent always passes its
    durable state and must persist jti and seq before acting on the claims.
    Raises TokenRejected with the code of the first rule that fails; nothing else.
    """
    claims, envelope = parse_token(data, context)
    # 4: threshold of valid signatures from distinct kids of the release role.
    role = root.roles[RELEASE_ROLE]
    valid: set[str] = set()
    for sig in envelope.signatures:
        if sig.kid not in role.keyids:
            continue  # an unknown key neither counts nor rejects
        if not _jws.verify_one(root.keys[sig.kid], sig):
            raise _reject(
                RejectionCode.bad_signature,
                f"signature under release key {sig.kid[:16]}... does not verify",
            )
        valid.add(sig.kid)
    if len(valid) < role.threshold:
        raise _reject(
            RejectionCode.below_threshold,
            f"{len(valid)} valid signature(s) from distinct release keys, "
            f"{role.threshold} required",
        )

    check_claims(claims, issuer=root.issuer, limits=root.limits, context=context, replay=replay)
    return claims


def parse_token(
    data: bytes, context: VerificationContext
) -> tuple[ReleaseClaims, _jws.Envelope]:
    """Rules 1-3: size cap, structure and claims schema, headers. Verifies nothing.

    Raises TokenRejected (oversized, malformed, bad_header).
    """
    # 1-2: size cap before parsing, then structure and claims schema.
    if not isinstance(data, bytes):
        raise _reject(RejectionCode.malformed, "a token must be given as bytes")
    if len(data) > context.max_token_bytes:
        raise _reject(
            RejectionCode.oversized,
            f"token is {len(data)} bytes, the cap is {context.max_token_bytes}",
        )
    try:
        raw = _jws.parse(data, max_bytes=context.max_token_bytes)
        try:
            payload = s.loads_strict(raw.payload)
        except s.SchemaError as exc:
            raise _reject(RejectionCode.malformed, f"payload: {exc}") from None
        claims = ReleaseClaims.from_payload(payload)
        # 3: headers.
        envelope = _jws.check_headers(raw, typ=TOKEN_TYP)
    except _jws.JwsFormatError as exc:
        raise _reject(_STAGE_CODES[exc.stage], exc.detail) from None

    return claims, envelope


def check_claims(
    claims: ReleaseClaims,
    *,
    issuer: str,
    limits: Mapping[str, BasisLimits],
    context: VerificationContext,
    replay: ReplayView | None,
) -> None:
    """Rules 5-11, shared by both trust root formats: audience and issuer, time, token
    life, replay, basis, window, recipient and keys. Raises TokenRejected.
    """
    # 5: addressed to this device by our issuer.
    if claims.aud != context.device_id:
        raise _reject(
            RejectionCode.wrong_device,
            f"token is for device {claims.aud!r:.80}, this is {context.device_id!r}",
        )
    if claims.iss != issuer:
        raise _reject(
            RejectionCode.wrong_issuer,
            f"token issued by {claims.iss!r:.80}, the trust root names {issuer!r}",
        )

    # 6: time, only on a synchronized clock.
    if not context.clock_synchronized:
        raise _reject(
            RejectionCode.clock_unsynchronized,
            "the clock is not synchronized: defer and check again",
        )
    now = context.now.timestamp()
    if claims.iat - context.skew_s > now:
        raise _reject(
            RejectionCode.not_yet_valid, f"issued at {claims.iat}, in the future (now {int(now)})"
        )
    if claims.nbf - context.skew_s > now:
        raise _reject(
            RejectionCode.not_yet_valid,
            f"valid from {claims.nbf} (skew {context.skew_s} s), now {int(now)}",
        )
    if now >= claims.exp:
        raise _reject(RejectionCode.expired, f"expired at {claims.exp}, now {int(now)}")

    # 7: token life.
    basis_limits = limits[claims.basis]
    life_limit = min(
        basis_limits.max_token_life_s,
        context.max_token_life_s.get(claims.basis, basis_limits.max_token_life_s),
    )
    if claims.exp - claims.iat > life_limit:
        raise _reject(
            RejectionCode.token_life_too_long,
            f"exp - iat is {claims.exp - claims.iat} s, the {claims.basis} limit is {life_limit} s",
        )

    # 8: replay.
    if replay is not None:
        if replay.seen(claims.jti):
            raise _reject(RejectionCode.replayed, f"jti {claims.jti!r} was already seen")
        last = replay.last_seq()
        if claims.seq <= last:
            raise _reject(
                RejectionCode.stale_seq, f"seq {claims.seq} is not above the last accepted {last}"
            )

    # 9: basis.
    if context.allowed_bases is not None and claims.basis not in context.allowed_bases:
        raise _reject(
            RejectionCode.basis_not_allowed,
            f"basis {claims.basis!r} is not allowed by the owner's settings",
        )

    # 10: window.
    window_limit = min(
        basis_limits.max_window_s,
        context.max_window_s.get(claims.basis, basis_limits.max_window_s),
    )
    if claims.window.length_s > window_limit:
        raise _reject(
            RejectionCode.window_too_long,
            f"window is {exact_seconds(claims.window.length_s)} s, the {claims.basis} "
            f"limit is {window_limit} s",
        )
    if claims.window.end.timestamp() > claims.iat:
        raise _reject(
            RejectionCode.window_in_future,
            f"window ends at {format_time(claims.window.end)}, after iat {claims.iat}",
        )
    if claims.hold_until is not None and claims.hold_until.timestamp() - claims.iat > MAX_HOLD_S:
        raise _reject(
            RejectionCode.hold_too_long,
            f"hold_until {format_time(claims.hold_until)} is more than 90 days after iat",
        )

    # 11: recipient and keys parse.
    if claims.recipient is not None:
        _check_recipient(claims.recipient)
    if claims.keys is not None:
        decode_keys(claims.keys)


def exact_seconds(value: float) -> str:
    """Seconds as a rejection detail writes them: never rounded to the limit they exceed
    (259200.5, not 259200; window instants carry at most microseconds)."""
    return f"{value:.6f}".rstrip("0").rstrip(".")


def _check_recipient(recipient: str) -> None:
    if not recipient.startswith("age1"):
        raise _reject(RejectionCode.bad_recipient, "recipient must be an age1... recipient")
    try:
        pyrage.x25519.Recipient.from_str(recipient)
    except pyrage.RecipientError as exc:
        raise _reject(RejectionCode.bad_recipient, f"recipient does not parse: {exc}") from None


__all__ = [
    "AGE_MAGIC",
    "DEFAULT_SKEW_S",
    "EPOCH_ID_PATTERN",
    "ID_PATTERN",
    "MAX_EPOCHS",
    "MAX_HOLD_S",
    "MAX_TOKEN_BYTES",
    "RELEASE_ROLE",
    "TOKEN_TYP",
    "TOKEN_VERSION",
    "CaseRef",
    "ReleaseClaims",
    "ReplayView",
    "VerificationContext",
    "Window",
    "add_signature",
    "check_claims",
    "encode_claims",
    "exact_seconds",
    "open_delivered_keys",
    "parse_token",
    "seal_keys_for_device",
    "sign_token",
    "unix_time",
    "verify_token",
]
