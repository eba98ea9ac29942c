"""Release and preservation tokens: claims, signing, and the device's acceptance rules.

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
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Protocol

import pyrage
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol import _jws
from protocol import _schema as s
from protocol._schema import ID_PATTERN as ID_PATTERN  # public: ids on the wire
from protocol.errors import KeyFormatError, RejectionCode, TokenRejected
from protocol.timefmt import format_time, parse_time, require_aware
from protocol.trust_root import BASES, BasisLimits, TrustRoot
from protocol.warrant import WarrantClaim

TOKEN_TYP: Final = "doorbell-release+jws"  # noqa: S105 (a media type, not a secret)
TOKEN_VERSION: Final = 1
MAX_TOKEN_BYTES: Final = 64 * 1024  # an age file of ~100 epoch identities fits well inside
MAX_HOLD_S: Final = 90 * 24 * 3600  # docs/protocol.md: a pin lasts at most 90 days
DEFAULT_SKEW_S: Final = 60
RELEASE_ROLE: Final = "release"
AGE_MAGIC: Final = b"age-encryption.org/v1\n"
MAX_EPOCHS: Final = 1024
EPOCH_ID_PATTERN: Final = re.compile(r"\d{1,12}-[0-9a-f]{8}")
_UPLOAD_URL: Final = re.compile(
    r"https?://[A-Za-z0-9.\-]+(:[0-9]{1,5})?(/[A-Za-z0-9._~!$&'()*+,;=:@%/\-]*)?"
)

_CLAIMS_REQUIRED = frozenset(
    {"v", "iss", "aud", "jti", "seq", "iat", "nbf", "exp", "basis", "case", "window"}
)
_RELEASE_ONLY = frozenset({"recipient", "keys", "upload"})
_CASE_KEYS = frozenset({"request_id", "docket", "authority", "document_sha256"})
_WINDOW_KEYS = frozenset({"start", "end"})


@dataclass(frozen=True, slots=True)
class Window:
    """A half-open time range [start, end), aware UTC datetimes."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        require_aware("window.start", self.start)
        require_aware("window.end", self.end)
        if self.end <= self.start:
            raise ValueError("window end must be after its start")

    @property
    def length_s(self) -> float:
        return (self.end - self.start).total_seconds()

    def overlaps(self, start: datetime, end: datetime) -> bool:
        """True when [start, end] shares any instant with the window."""
        return start < self.end and end > self.start

    def to_payload(self) -> dict[str, str]:
        return {"start": format_time(self.start), "end": format_time(self.end)}

    @classmethod
    def from_payload(cls, value: Any, name: str = "window") -> Window:
        """Raises s.SchemaError."""
        item = s.obj(value, name, _WINDOW_KEYS)
        try:
            start, end = parse_time(item["start"]), parse_time(item["end"])
        except ValueError as exc:
            raise s.SchemaError(f"{name}: {exc}") from None
        if end <= start:
            raise s.SchemaError(f"{name} end must be after its start")
        return cls(start=start, end=end)


@dataclass(frozen=True, slots=True)
class CaseRef:
    """The legal case behind a token: request id, docket or incident number, court or
    agency, and the sha256 of the signed warrant or emergency certification."""

    request_id: str
    docket: str
    authority: str
    document_sha256: str

    def to_payload(self) -> dict[str, str]:
        return {
            "request_id": self.request_id,
            "docket": self.docket,
            "authority": self.authority,
            "document_sha256": self.document_sha256,
        }

    @classmethod
    def from_payload(cls, value: Any, name: str = "case") -> CaseRef:
        """Raises s.SchemaError."""
        item = s.obj(value, name, _CASE_KEYS)
        return cls(
            request_id=s.string(item["request_id"], f"{name}.request_id", max_len=128),
            docket=s.string(item["docket"], f"{name}.docket", max_len=256),
            authority=s.string(item["authority"], f"{name}.authority", max_len=256),
            document_sha256=s.hex64(item["document_sha256"], f"{name}.document_sha256"),
        )


@dataclass(frozen=True, slots=True)
class ReleaseClaims:
    """The payload of a token. `recipient`, `keys` and `upload` are present exactly for
    warrant and emergency; `hold_until` exactly for preservation."""

    v: int
    iss: str
    aud: str
    jti: str
    seq: int
    iat: int
    nbf: int
    exp: int
    basis: str
    case: CaseRef
    window: Window
    recipient: str | None = None
    keys: str | None = None  # standard base64 of an age file sealed to the transport key
    upload: str | None = None
    notify_after: datetime | None = None
    hold_until: datetime | None = None
    warrant: WarrantClaim | None = None  # warrant basis, trust root v2 (protocol/warrant.py)

    @property
    def is_preservation(self) -> bool:
        return self.basis == "preservation"

    def to_payload(self) -> dict[str, Any]:
        """The claims as a JSON object (absent optional claims are left out)."""
        out: dict[str, Any] = {
            "v": self.v,
            "iss": self.iss,
            "aud": self.aud,
            "jti": self.jti,
            "seq": self.seq,
            "iat": self.iat,
            "nbf": self.nbf,
            "exp": self.exp,
            "basis": self.basis,
            "case": self.case.to_payload(),
            "window": self.window.to_payload(),
        }
        for name in ("recipient", "keys", "upload"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        if self.notify_after is not None:
            out["notify_after"] = format_time(self.notify_after)
        if self.hold_until is not None:
            out["hold_until"] = format_time(self.hold_until)
        if self.warrant is not None:
            out["warrant"] = self.warrant.to_payload()
        return out

    @classmethod
    def from_payload(cls, value: Any) -> ReleaseClaims:
        """The strict parser: exactly the claims of docs/protocol.md, nothing else.

        Raises TokenRejected(malformed) naming the first problem.
        """
        try:
            return _parse_claims(value)
        except s.SchemaError as exc:
            raise TokenRejected(RejectionCode.malformed, f"claims: {exc}") from None


def _parse_claims(value: Any) -> ReleaseClaims:
    if not isinstance(value, dict):
        raise s.SchemaError("the payload must be a JSON object")
    basis = value.get("basis")
    if basis not in BASES:
        raise s.SchemaError(f"basis must be one of {', '.join(BASES)}")
    if basis == "preservation":
        item = s.obj(value, "claims", _CLAIMS_REQUIRED | {"hold_until"})
    else:
        optional = {"notify_after", "warrant"} if basis == "warrant" else {"notify_after"}
        item = s.obj(value, "claims", _CLAIMS_REQUIRED | _RELEASE_ONLY, frozenset(optional))
    if type(item["v"]) is not int or item["v"] != TOKEN_VERSION:  # not 1.0, 1e0 or true
        raise s.SchemaError(f"v must be the integer {TOKEN_VERSION}")
    jti = s.identifier(item["jti"], "jti")
    iat = s.integer(item["iat"], "iat")
    nbf = s.integer(item["nbf"], "nbf")
    exp = s.integer(item["exp"], "exp")
    if not iat <= nbf < exp:
        raise s.SchemaError("times must satisfy iat <= nbf < exp")
    recipient = keys = upload = None
    notify_after = hold_until = None
    if basis == "preservation":
        hold_until = s.instant(item["hold_until"], "hold_until")
    else:
        upload = s.string(item["upload"], "upload", max_len=2048)
        if _UPLOAD_URL.fullmatch(upload) is None:
            raise s.SchemaError("upload must be an http(s) URL without query or fragment")
        if "notify_after" in item:
            notify_after = s.instant(item["notify_after"], "notify_after")
        # strings under the text rule like every claim (docs/protocol.md rule 2); whether
        # they parse as a recipient and an age file is judged later (bad_recipient, bad_keys)
        recipient = s.string(item["recipient"], "recipient", max_len=MAX_TOKEN_BYTES,
                             allow_empty=True)
        keys = s.string(item["keys"], "keys", max_len=MAX_TOKEN_BYTES, allow_empty=True)
    return ReleaseClaims(
        v=TOKEN_VERSION,
        iss=s.string(item["iss"], "iss", max_len=128),
        aud=s.string(item["aud"], "aud", max_len=128),
        jti=jti,
        seq=s.integer(item["seq"], "seq", minimum=1),
        iat=iat,
        nbf=nbf,
        exp=exp,
        basis=basis,
        case=CaseRef.from_payload(item["case"]),
        window=Window.from_payload(item["window"]),
        recipient=recipient,
        keys=keys,
        upload=upload,
        notify_after=notify_after,
        hold_until=hold_until,
        warrant=WarrantClaim.from_payload(item["warrant"]) if "warrant" in item else None,
    )


# --- signing (the cloud) -------------------------------------------------------------


def encode_claims(claims: ReleaseClaims) -> bytes:
    """Compact, sorted JSON of the claims, after checking them with the strict parser.

    Raises ValueError when the claims would not pass the device's parser.
    """
    payload = claims.to_payload()
    try:
        ReleaseClaims.from_payload(payload)
    except TokenRejected as exc:
        raise ValueError(f"these claims would be rejected as malformed: {exc.detail}") from None
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode(
        "utf-8"
    )


def sign_token(claims: ReleaseClaims, signers: Sequence[Ed25519PrivateKey]) -> bytes:
    """A token signed by each of `signers` (one signature per distinct key).

    Raises ValueError for invalid claims, no signer, or a signer given twice.
    """
    envelope = _jws.sign(encode_claims(claims), TOKEN_TYP, signers)
    return _jws.encode(envelope)


def add_signature(token: bytes, signer: Ed25519PrivateKey) -> bytes:
    """Add one more signature to a token (threshold collection across signers).

    Raises ValueError when the token does not parse, or when `signer`'s key id already
    signed it (a repeated kid would count only once on the device anyway).
    """
    try:
        return _jws.add_signature(token, typ=TOKEN_TYP, max_bytes=MAX_TOKEN_BYTES, signer=signer)
    except _jws.JwsFormatError as exc:
        raise ValueError(f"not a token: {exc.detail}") from None


# --- verification (the device) -------------------------------------------------------


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
        _decode_keys(claims.keys)


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


def _decode_keys(keys: str) -> bytes:
    try:
        raw = base64.b64decode(keys.encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise _reject(RejectionCode.bad_keys, "keys is not standard padded base64") from None
    if not raw.startswith(AGE_MAGIC):
        raise _reject(RejectionCode.bad_keys, "keys does not hold an age v1 file")
    return raw


# --- delivered epoch keys --------------------------------------------------------------


def open_delivered_keys(
    claims: ReleaseClaims,
    transport_identity: str,
    recorded_recipients: Mapping[str, str],
) -> dict[str, str]:
    """Open the `keys` claim with the device transport identity.

    Returns epoch id -> ``AGE-SECRET-KEY-1...``. Every delivered identity's public
    recipient must equal the recipient the device recorded for that epoch.
    Raises TokenRejected(bad_keys) when the claim is absent, does not decrypt or does not
    hold ``{"epochs": {...}}``; TokenRejected(keys_mismatch) for an unknown epoch or a
    wrong identity; KeyFormatError when `transport_identity` itself is not an age
    identity (a fault of the device, not of the token).
    """
    if claims.keys is None:
        raise _reject(RejectionCode.bad_keys, f"a {claims.basis} token carries no keys")
    sealed = _decode_keys(claims.keys)
    try:
        identity = pyrage.x25519.Identity.from_str(transport_identity.strip())
    except pyrage.IdentityError:
        raise KeyFormatError("the transport identity is not an age X25519 identity") from None
    try:
        plaintext = pyrage.decrypt(sealed, [identity])
    except pyrage.DecryptError as exc:
        raise _reject(
            RejectionCode.bad_keys, f"keys could not be opened with the transport identity: {exc}"
        ) from None
    try:
        doc = s.obj(s.loads_strict(plaintext), "keys plaintext", frozenset({"epochs"}))
        epochs = doc["epochs"]
        if not isinstance(epochs, dict) or len(epochs) > MAX_EPOCHS:
            raise s.SchemaError(f"epochs must be an object of at most {MAX_EPOCHS} entries")
    except s.SchemaError as exc:
        raise _reject(RejectionCode.bad_keys, str(exc)) from None
    out: dict[str, str] = {}
    for epoch, secret in epochs.items():
        if EPOCH_ID_PATTERN.fullmatch(epoch) is None:
            raise _reject(RejectionCode.bad_keys, f"epoch id {epoch!r:.40} is not <secs>-<8 hex>")
        if not isinstance(secret, str):
            raise _reject(RejectionCode.bad_keys, f"epoch {epoch}: identity must be a string")
        try:
            public = str(pyrage.x25519.Identity.from_str(secret).to_public())
        except pyrage.IdentityError:
            raise _reject(
                RejectionCode.bad_keys, f"epoch {epoch}: not an age X25519 identity"
            ) from None
        recorded = recorded_recipients.get(epoch)
        if recorded is None:
            raise _reject(
                RejectionCode.keys_mismatch, f"epoch {epoch} was never recorded by this device"
            )
        if public != recorded:
            raise _reject(
                RejectionCode.keys_mismatch,
                f"epoch {epoch}: delivered identity does not match the recorded recipient",
            )
        out[epoch] = secret
    return out


def seal_keys_for_device(epochs: Mapping[str, str], transport_recipient: str) -> str:
    """The `keys` claim: epoch identities sealed to the device's transport recipient.

    Raises KeyFormatError for a bad recipient, epoch id or identity.
    """
    if len(epochs) > MAX_EPOCHS:
        raise KeyFormatError(f"at most {MAX_EPOCHS} epochs fit in one token")
    for epoch, secret in epochs.items():
        if EPOCH_ID_PATTERN.fullmatch(epoch) is None:
            raise KeyFormatError(f"epoch id {epoch!r:.40} is not <unix seconds>-<8 hex>")
        try:
            pyrage.x25519.Identity.from_str(secret)
        except pyrage.IdentityError:
            raise KeyFormatError(f"epoch {epoch}: not an age X25519 identity") from None
    try:
        recipient = pyrage.x25519.Recipient.from_str(transport_recipient.strip())
    except pyrage.RecipientError:
        raise KeyFormatError("the transport recipient is not an age X25519 recipient") from None
    plaintext = json.dumps({"epochs": dict(epochs)}, sort_keys=True, separators=(",", ":")).encode(
        "utf-8"
    )
    try:
        sealed = pyrage.encrypt(plaintext, [recipient])
    except pyrage.EncryptError as exc:
        raise KeyFormatError(f"sealing the epoch keys failed: {exc}") from None
    return base64.b64encode(sealed).decode("ascii")


def unix_time(value: datetime) -> int:
    """Whole seconds since the epoch of an aware datetime (floor). Raises ValueError."""
    require_aware("time", value)
    return math.floor(value.astimezone(UTC).timestamp())
