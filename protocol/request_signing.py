"""Signed HTTP requests from a device to the cloud's evidence endpoint.

Every device request carries four headers (docs/architecture.md, "Evidence upload"):
the device id, the token's jti, a unix timestamp, and a base64url Ed25519 signature by
the device identity key over `signing_input`, which binds the method, the path, the raw
query string, the timestamp, the sha256 of the body, the device and the jti. The cloud
recomputes the input from the request it received and calls `verify_request`.
"""

from __future__ import annotations

import re
from typing import Final
from urllib.parse import urlsplit

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from protocol._jws import b64url_decode, b64url_encode
from protocol.errors import RequestSignatureError
from protocol.keys import is_hex64

HEADER_DEVICE: Final = "X-Doorbell-Device"
HEADER_JTI: Final = "X-Doorbell-Jti"
HEADER_TIMESTAMP: Final = "X-Doorbell-Timestamp"
HEADER_SIGNATURE: Final = "X-Doorbell-Signature"
DEFAULT_MAX_AGE_S: Final = 300
CONTEXT: Final = "doorbell-request-v1"  # domain separation from every other signature
_METHOD = re.compile(r"[A-Z]{1,16}")
_MAX_FIELD = 4096


def _field(name: str, value: str) -> str:
    if not isinstance(value, str):
        raise RequestSignatureError(f"{name} must be a string")
    if len(value) > _MAX_FIELD or any(c in value for c in "\n\r\x00"):
        raise RequestSignatureError(f"{name} contains a line break or NUL, or is too long")
    return value


def signing_input(
    *,
    method: str,
    path: str,
    query: str,
    timestamp: int,
    body_sha256: str,
    device: str,
    jti: str,
) -> bytes:
    """The exact bytes a device signs: eight lines joined by ``\\n``, no trailing newline::

        doorbell-request-v1
        <METHOD>            upper case
        <path>              as sent, e.g. /v1/evidence/<jti>/<clip_id>
        <query>             the raw query string without "?", empty when none
        <timestamp>         decimal unix seconds
        <body_sha256>       lowercase hex sha256 of the body (of b"" when empty)
        <device>
        <jti>

    Raises RequestSignatureError for a field that could make two inputs collide
    (a line break or NUL), a method that is not upper-case letters, a negative
    timestamp, or a body hash that is not 64 lowercase hex characters.
    """
    if not isinstance(method, str) or _METHOD.fullmatch(method) is None:
        raise RequestSignatureError("method must be upper-case letters")
    if not isinstance(timestamp, int) or isinstance(timestamp, bool) or timestamp < 0:
        raise RequestSignatureError("timestamp must be a non-negative integer")
    if not is_hex64(body_sha256):
        raise RequestSignatureError("body_sha256 must be 64 lowercase hex characters")
    if not isinstance(path, str) or not path.startswith("/"):
        raise RequestSignatureError("path must start with /")
    if not device or not jti:
        raise RequestSignatureError("device and jti must not be empty")
    lines = [
        CONTEXT,
        method,
        _field("path", path),
        _field("query", query),
        str(timestamp),
        body_sha256,
        _field("device", device),
        _field("jti", jti),
    ]
    return "\n".join(lines).encode("utf-8")


def sign_request(
    key: Ed25519PrivateKey,
    *,
    method: str,
    path: str,
    query: str,
    timestamp: int,
    body_sha256: str,
    device: str,
    jti: str,
) -> str:
    """The `X-Doorbell-Signature` value: unpadded base64url of the Ed25519 signature.

    Raises RequestSignatureError as `signing_input` does.
    """
    data = signing_input(
        method=method,
        path=path,
        query=query,
        timestamp=timestamp,
        body_sha256=body_sha256,
        device=device,
        jti=jti,
    )
    return b64url_encode(key.sign(data))


def signed_headers(
    key: Ed25519PrivateKey,
    *,
    method: str,
    url: str,
    timestamp: int,
    body_sha256: str,
    device: str,
    jti: str,
) -> dict[str, str]:
    """The four headers of a device request to `url` (path and raw query taken from it).

    Raises RequestSignatureError as `signing_input` does.
    """
    parts = urlsplit(url)
    signature = sign_request(
        key,
        method=method,
        path=parts.path,
        query=parts.query,
        timestamp=timestamp,
        body_sha256=body_sha256,
        device=device,
        jti=jti,
    )
    return {
        HEADER_DEVICE: device,
        HEADER_JTI: jti,
        HEADER_TIMESTAMP: str(timestamp),
        HEADER_SIGNATURE: signature,
    }


def verify_request(
    public_key: Ed25519PublicKey,
    signature: str,
    *,
    now: int,
    max_age_s: int = DEFAULT_MAX_AGE_S,
    method: str,
    path: str,
    query: str,
    timestamp: int,
    body_sha256: str,
    device: str,
    jti: str,
) -> None:
    """Check a request's signature and freshness (|now - timestamp| <= max_age_s).

    Whether the jti was issued for this device and is unexpired is the caller's check.
    Raises RequestSignatureError naming the failure: malformed field or signature,
    stale or future timestamp, or a signature that does not verify.
    """
    data = signing_input(
        method=method,
        path=path,
        query=query,
        timestamp=timestamp,
        body_sha256=body_sha256,
        device=device,
        jti=jti,
    )
    if abs(now - timestamp) > max_age_s:
        raise RequestSignatureError(
            f"timestamp {timestamp} is more than {max_age_s} s from now ({now})"
        )
    try:
        raw = b64url_decode(signature) if isinstance(signature, str) else b""
    except ValueError:
        raw = b""
    if len(raw) != 64:
        raise RequestSignatureError("signature must be unpadded base64url of 64 bytes")
    try:
        public_key.verify(raw, data)
    except InvalidSignature:
        raise RequestSignatureError("request signature does not verify") from None
