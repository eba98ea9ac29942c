"""Authenticating a device's evidence request (docs/architecture.md, "Evidence upload").

A request carries ``X-Doorbell-Device``, ``X-Doorbell-Jti``, ``X-Doorbell-Timestamp``
and ``X-Doorbell-Signature`` (base64url Ed25519 by the device's enrolled identity key
over `protocol.request_signing.signing_input`). `check_device_request` is the pure
decision: the headers, the body's SHA-256 (computed by the caller over every byte as it
arrived), the clock and the token and identity the store holds
in; the device id and jti out, or `AuthenticationError` naming the first failed rule.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from cloud_stub.errors import AuthenticationError
from protocol.errors import KeyFormatError, RequestSignatureError
from protocol.keys import public_key_from_hex
from protocol.request_signing import verify_request

HEADERS = ("x-doorbell-device", "x-doorbell-jti", "x-doorbell-timestamp", "x-doorbell-signature")
_TIMESTAMP = re.compile(r"^[0-9]{1,12}$")
_SIGNATURE = re.compile(r"^[A-Za-z0-9_-]{86}$")


@dataclass(frozen=True, slots=True)
class DeviceHeaders:
    device_id: str
    jti: str
    timestamp: int
    signature: str


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """What the store knows of the token a device presents."""

    jti: str
    device_id: str
    identity_pub: str  # hex, from the device's enrolment
    expires_at: datetime
    preservation: bool
    device_revoked: bool = False  # `cloud-stub devices revoke` (scope device)


def parse_headers(headers: Mapping[str, str]) -> DeviceHeaders:
    """Raises `AuthenticationError` naming the missing or malformed header."""
    missing = [h for h in HEADERS if h not in headers]
    if missing:
        raise AuthenticationError(f"device request lacks the header {missing[0]}")
    stamp = headers["x-doorbell-timestamp"]
    if not _TIMESTAMP.match(stamp):
        raise AuthenticationError("X-Doorbell-Timestamp must be unix seconds")
    signature = headers["x-doorbell-signature"]
    if not _SIGNATURE.match(signature):
        raise AuthenticationError("X-Doorbell-Signature must be 64 bytes of unpadded base64url")
    device_id = headers["x-doorbell-device"]
    jti = headers["x-doorbell-jti"]
    if not (0 < len(device_id) <= 128 and 0 < len(jti) <= 128):
        raise AuthenticationError("device id and jti must be 1-128 characters")
    return DeviceHeaders(device_id, jti, int(stamp), signature)


def check_device_request(
    *,
    parsed: DeviceHeaders,
    token: IssuedToken | None,
    method: str,
    path: str,
    query: str,
    body_sha256: str,
    now: datetime,
    skew_s: int,
) -> None:
    """Accept the request or raise `AuthenticationError`.

    Rules, in order: the jti is a token this cloud issued to this device; the device
    has not been revoked (a token delivered before the revocation uploads nothing); the
    token is not a preservation (it uploads nothing) and has not expired; the timestamp
    is within ``skew_s`` of now; the signature verifies under the enrolled identity key.
    """
    if token is None or token.device_id != parsed.device_id:
        raise AuthenticationError("no token with this jti was issued to this device")
    if token.device_revoked:
        raise AuthenticationError("the device has been revoked")
    if token.preservation:
        raise AuthenticationError("a preservation token carries no upload")
    if now >= token.expires_at:
        raise AuthenticationError("the token has expired")
    try:
        key = public_key_from_hex(token.identity_pub)
    except KeyFormatError as exc:
        raise AuthenticationError("the device's enrolled identity key is unreadable") from exc
    try:
        verify_request(
            key, parsed.signature, now=int(now.timestamp()), max_age_s=skew_s,
            method=method, path=path, query=query, timestamp=parsed.timestamp,
            body_sha256=body_sha256, device=parsed.device_id,
            jti=parsed.jti,
        )
    except RequestSignatureError as exc:
        raise AuthenticationError(f"device request refused: {exc}") from exc
