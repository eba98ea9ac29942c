"""Signing tokens (the cloud's side): the claims encoded as the device's parser expects
them, signed by one or more release keys, and further signatures added one by one as a
threshold is collected across signers. Public through `protocol.token`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol import _jws
from protocol.errors import TokenRejected
from protocol.token_claims import MAX_TOKEN_BYTES, TOKEN_TYP, ReleaseClaims


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
