"""Signing one prepared token payload on several machines (docs/adr/0013-trust-root-v2.md).

The service prepares the claims once and hands the same payload segment (base64url of
the claims bytes, as in the JWS) to every reviewer. A reviewer signs it on their own
machine with `sign_detached` (a protected header naming their kid and the Ed25519
signature over ``protected || "." || payload``); the service checks each signature with
`check_detached` before storing it, and `assemble` puts the token together. `describe`
says in words what a payload releases, for the reviewer's screen; both sides use it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from protocol import _jws
from protocol import _schema as s
from protocol.errors import TokenRejected
from protocol.keys import key_id
from protocol.timefmt import format_time
from protocol.token_claims import MAX_TOKEN_BYTES, TOKEN_TYP, ReleaseClaims
from protocol.token_signing import encode_claims


class SignatureRefused(ValueError):
    """A detached signature is not acceptable; the message names the problem."""


@dataclass(frozen=True, slots=True)
class DetachedSignature:
    """One signer's part of the token: the protected header segment and the signature."""

    protected: str  # base64url of {"alg": "Ed25519", "kid", "typ"}
    signature: str  # base64url of 64 bytes

    def to_json(self) -> dict[str, str]:
        return {"protected": self.protected, "signature": self.signature}


def payload_segment(claims: ReleaseClaims) -> str:
    """The payload every signer signs: base64url of the claims bytes. Raises ValueError."""
    return _jws.b64url_encode(encode_claims(claims))


def payload_sha256(segment: str) -> str:
    """The hash a reviewer compares between screens: sha256 of the claims bytes."""
    return hashlib.sha256(_jws.b64url_decode(segment)).hexdigest()


def claims_of(segment: str) -> ReleaseClaims:
    """The claims a payload segment holds, strictly parsed. Raises SignatureRefused."""
    try:
        return ReleaseClaims.from_payload(s.loads_strict(_jws.b64url_decode(segment)))
    except (ValueError, TokenRejected) as exc:
        raise SignatureRefused(f"the payload is not token claims: {exc}") from None


def sign_detached(segment: str, key: Ed25519PrivateKey) -> DetachedSignature:
    """Sign a prepared payload segment (the reviewer's machine)."""
    header = json.dumps(_jws.protected_header(key_id(key.public_key()), TOKEN_TYP),
                        separators=(",", ":")).encode()
    protected = _jws.b64url_encode(header)
    signature = key.sign(f"{protected}.{segment}".encode("ascii"))
    return DetachedSignature(protected=protected, signature=_jws.b64url_encode(signature))


def check_detached(segment: str, detached: DetachedSignature, kid: str,
                   key: Ed25519PublicKey) -> None:
    """Accept `detached` only when its header is exactly {alg, kid, typ} naming `kid` and
    the signature verifies under `key` over exactly `segment`. Raises SignatureRefused."""
    envelope = {"payload": segment, "signatures": [detached.to_json()]}
    try:
        raw = _jws.parse(_jws.encode(envelope), max_bytes=MAX_TOKEN_BYTES)
        parsed = _jws.check_headers(raw, typ=TOKEN_TYP)
    except _jws.JwsFormatError as exc:
        raise SignatureRefused(f"not a token signature: {exc.detail}") from None
    (signature,) = parsed.signatures
    if signature.kid != kid:
        raise SignatureRefused("the protected header names another key id")
    if key_id(key) != kid:
        raise SignatureRefused("the key is not the one of this key id")
    if not _jws.verify_one(key, signature):
        raise SignatureRefused("the signature does not verify over the prepared payload")


def assemble(segment: str, signatures: Sequence[DetachedSignature]) -> bytes:
    """The token: the payload and every collected signature (General JSON JWS)."""
    return _jws.encode({"payload": segment, "signatures": [d.to_json() for d in signatures]})


def describe(claims: ReleaseClaims) -> dict[str, Any]:
    """What a token releases, in words a reviewer checks before signing."""
    out: dict[str, Any] = {
        "device": claims.aud,
        "basis": claims.basis,
        "window": f"{format_time(claims.window.start)} to {format_time(claims.window.end)}",
        "case": f"docket {claims.case.docket}, authority {claims.case.authority}, "
                f"request {claims.case.request_id}, document sha256 "
                f"{claims.case.document_sha256}",
        "expires": claims.exp,
        "requester_key_fingerprint": None if claims.recipient is None else
        hashlib.sha256(claims.recipient.encode("ascii")).hexdigest()[:16],
        "court": None,
    }
    if claims.warrant is not None:
        st = claims.warrant.statement
        out["court"] = (f"{st.court_id}: {st.order_type} by {st.judge}, docket {st.docket}, "
                        f"in force {format_time(st.issued)} to {format_time(st.expires)}, "
                        f"devices {', '.join(st.device_ids)}")
    if claims.hold_until is not None:
        out["hold_until"] = format_time(claims.hold_until)
    return out
