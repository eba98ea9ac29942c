"""The JWS General JSON Serialization (RFC 7515 section 7.2.1) with alg ``Ed25519``.

Signing goes through joserfc (which implements RFC 9864's ``Ed25519``). Verification
does not: joserfc's `deserialize_json` demands that *every* signature verify under a key
found by a callback, while a release token needs a count of valid signatures from
*distinct trusted* key ids, with signatures from unknown keys ignored, and a header that
is exactly ``{alg, kid, typ}``. So the envelope is parsed here, strictly, and each
signature is checked with `cryptography` over the RFC 7515 signing input
``ASCII(protected) || "." || ASCII(payload)``. docs/adr/0001-token-format.md says why.
"""

from __future__ import annotations

import base64
import binascii
import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from joserfc import jws as joserfc_jws
from joserfc.errors import JoseError
from joserfc.jwk import OKPKey

from protocol import _schema as s
from protocol.keys import canonical_json, is_hex64, key_id

ALG: Final = "Ed25519"
MAX_SIGNATURES: Final = 16
_B64URL_ALPHABET: Final = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_TO_STANDARD: Final = bytes.maketrans(b"-_", b"+/")
_HEADER_KEYS: Final = frozenset({"alg", "kid", "typ"})
_ALGORITHMS: Final = [ALG]


class JwsFormatError(ValueError):
    """The envelope is not acceptable. `stage` is "malformed" or "bad_header"."""

    def __init__(self, stage: str, detail: str) -> None:
        super().__init__(detail)
        self.stage = stage
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Signature:
    kid: str
    signing_input: bytes
    signature: bytes


@dataclass(frozen=True, slots=True)
class Envelope:
    payload_segment: str
    payload: bytes
    signatures: tuple[Signature, ...]


def b64url_decode(segment: str) -> bytes:
    """Strict unpadded base64url (RFC 7515 section 2): no padding, no whitespace, no
    characters of the standard alphabet, and zero trailing bits (one spelling per value).

    Raises ValueError.
    """
    try:
        data = segment.encode("ascii")
    except (UnicodeEncodeError, AttributeError):
        raise ValueError("not unpadded base64url") from None
    if b"+" in data or b"/" in data or b"=" in data:
        raise ValueError("not unpadded base64url")
    rem = len(data) % 4
    if rem == 1:
        raise ValueError("not unpadded base64url (impossible length)")
    if rem:
        last = _B64URL_ALPHABET.find(segment[-1])
        if last < 0 or last & (0x0F if rem == 2 else 0x03):
            raise ValueError("non-canonical base64url")
    try:
        return binascii.a2b_base64(
            data.translate(_TO_STANDARD) + b"=" * (-rem % 4), strict_mode=True
        )
    except binascii.Error:
        raise ValueError("not unpadded base64url") from None


def b64url_encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def protected_header(kid: str, typ: str) -> dict[str, str]:
    return {"alg": ALG, "kid": kid, "typ": typ}


def sign(payload: bytes, typ: str, signers: Sequence[Ed25519PrivateKey]) -> dict[str, Any]:
    """A General JSON Serialization with one signature per signer (joserfc signs).

    Raises ValueError for no signers or a signer given twice.
    """
    if not signers:
        raise ValueError("at least one signer is required")
    kids = [key_id(signer.public_key()) for signer in signers]
    if len(set(kids)) != len(kids):
        raise ValueError("a signer was given twice: a repeated key id counts only once")
    jwks = {kid: OKPKey.import_key(signer) for kid, signer in zip(kids, signers, strict=True)}
    members: list[Any] = [{"protected": protected_header(kid, typ)} for kid in kids]

    def find_key(member: Any) -> OKPKey:
        return jwks[member.headers()["kid"]]

    try:
        value = joserfc_jws.serialize_json(members, payload, find_key, algorithms=_ALGORITHMS)
    except JoseError as exc:
        raise ValueError(f"joserfc could not sign: {exc}") from None
    return dict(value)


def encode(envelope: dict[str, Any]) -> bytes:
    return canonical_json(envelope)


@dataclass(frozen=True, slots=True)
class RawSignature:
    protected_segment: str  # base64url of the protected header, not yet checked
    signature: bytes
    has_unprotected: bool


@dataclass(frozen=True, slots=True)
class RawEnvelope:
    payload_segment: str
    payload: bytes
    signatures: tuple[RawSignature, ...]


def parse(data: bytes, *, max_bytes: int) -> RawEnvelope:
    """Parse the General JSON Serialization structure. Checks no header, verifies nothing.

    Raises JwsFormatError("oversized") past `max_bytes` (before any parsing) and
    JwsFormatError("malformed") for anything that is not ``{"payload": <b64url>,
    "signatures": [{"protected": <string>, "signature": <b64url of 64 bytes>}, ...]}``
    with 1 to MAX_SIGNATURES signatures.
    """
    if not isinstance(data, bytes):
        raise JwsFormatError("malformed", "a JWS must be given as bytes")
    if len(data) > max_bytes:
        raise JwsFormatError("oversized", f"{len(data)} bytes, the cap is {max_bytes}")
    try:
        doc = s.obj(s.loads_strict(data), "JWS", frozenset({"payload", "signatures"}))
        payload_segment = doc["payload"]
        if not isinstance(payload_segment, str):
            raise s.SchemaError("payload must be a base64url string")
        try:
            payload = b64url_decode(payload_segment)
        except ValueError as exc:
            raise s.SchemaError(f"payload: {exc}") from None
        raw_sigs = s.array(doc["signatures"], "signatures", max_len=MAX_SIGNATURES)
        if not raw_sigs:
            raise s.SchemaError("signatures must not be empty")
        signatures = []
        for entry in raw_sigs:
            if not isinstance(entry, dict):
                raise s.SchemaError("each signature must be a JSON object")
            unknown = set(entry) - {"protected", "signature", "header"}
            if unknown or "protected" not in entry or "signature" not in entry:
                raise s.SchemaError("each signature needs exactly protected and signature")
            protected_segment, sig_segment = entry["protected"], entry["signature"]
            if not isinstance(protected_segment, str) or not isinstance(sig_segment, str):
                raise s.SchemaError("protected and signature must be base64url strings")
            try:
                sig = b64url_decode(sig_segment)
            except ValueError as exc:
                raise s.SchemaError(f"signature entry: {exc}") from None
            if len(sig) != 64:
                raise s.SchemaError("an Ed25519 signature is 64 bytes")
            signatures.append(
                RawSignature(
                    protected_segment=protected_segment,
                    signature=sig,
                    has_unprotected="header" in entry,
                )
            )
    except s.SchemaError as exc:
        raise JwsFormatError("malformed", str(exc)) from None
    return RawEnvelope(
        payload_segment=payload_segment, payload=payload, signatures=tuple(signatures)
    )


@functools.lru_cache(maxsize=256)
def _header_kid(protected_segment: str, typ: str) -> str:
    """The kid of a protected header (base64url) that is exactly ``{"alg": "Ed25519", "kid":
    <64 hex>, "typ": typ}``. A pure function, memoized: a device sees the same few
    headers (one per signer) on every token, so only their first sight costs a parse.
    Only successes are cached (lru_cache does not cache exceptions).

    Raises JwsFormatError("bad_header").
    """
    try:
        value = s.loads_strict(b64url_decode(protected_segment))
    except (ValueError, s.SchemaError) as exc:
        raise JwsFormatError("bad_header", f"protected header: {exc}") from None
    if not isinstance(value, dict) or set(value) != _HEADER_KEYS:
        raise JwsFormatError("bad_header", "protected header must be exactly alg, kid, typ")
    if value["alg"] != ALG:
        raise JwsFormatError("bad_header", f"alg must be {ALG!r}")
    if value["typ"] != typ:
        raise JwsFormatError("bad_header", f"typ must be {typ!r}")
    if not is_hex64(value["kid"]):
        raise JwsFormatError("bad_header", "kid must be 64 lowercase hex characters")
    return str(value["kid"])


def check_headers(raw: RawEnvelope, *, typ: str) -> Envelope:
    """Require every protected header to be exactly ``{"alg": "Ed25519", "kid": <64 hex>,
    "typ": typ}`` and no unprotected header (the kid is read from the protected header
    only). Raises JwsFormatError("bad_header").
    """
    signatures = []
    payload_part = "." + raw.payload_segment
    for entry in raw.signatures:
        if entry.has_unprotected:
            raise JwsFormatError("bad_header", "unprotected headers are not accepted")
        signatures.append(
            Signature(
                kid=_header_kid(entry.protected_segment, typ),
                signing_input=(entry.protected_segment + payload_part).encode("ascii"),
                signature=entry.signature,
            )
        )
    return Envelope(
        payload_segment=raw.payload_segment, payload=raw.payload, signatures=tuple(signatures)
    )


def verify_one(key: Ed25519PublicKey, signature: Signature) -> bool:
    """True when `signature` verifies under `key`."""
    try:
        key.verify(signature.signature, signature.signing_input)
    except InvalidSignature:
        return False
    return True


def add_signature(data: bytes, *, typ: str, max_bytes: int, signer: Ed25519PrivateKey) -> bytes:
    """Append one signature by `signer` over the same payload (threshold collection).

    Raises JwsFormatError for an envelope that does not parse and ValueError when the
    signer's key id already signed.
    """
    envelope = check_headers(parse(data, max_bytes=max_bytes), typ=typ)
    kid = key_id(signer.public_key())
    if any(sig.kid == kid for sig in envelope.signatures):
        raise ValueError(f"key {kid[:16]}... has already signed this token")
    if len(envelope.signatures) >= MAX_SIGNATURES:
        raise ValueError(f"a JWS carries at most {MAX_SIGNATURES} signatures")
    fresh = sign(envelope.payload, typ, [signer])
    if fresh["payload"] != envelope.payload_segment:
        raise ValueError("payload segment is not in canonical base64url form")
    doc = s.loads_strict(data)
    doc["signatures"].append(fresh["signatures"][0])
    return encode(doc)
