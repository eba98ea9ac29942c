"""API keys for principals: issued once, stored only as a hash, compared in constant time.

A key reads ``sdk_<key id>_<secret>``: the key id (8 random bytes, hex) is the public
handle used to find the row; the secret is 32 random bytes (base64url). The store keeps
sha256 of the secret only, so a leaked database does not leak usable keys, and the
comparison uses `hmac.compare_digest`. Unknown key ids and wrong secrets fail the same way.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from cloud_stub.errors import AuthenticationError

KEY_PREFIX = "sdk"
SECRET_BYTES = 32
KEY_ID_BYTES = 8
_KEY_RE = re.compile(r"^sdk_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")


@dataclass(frozen=True, slots=True)
class IssuedKey:
    """A fresh key: ``token`` is shown to the operator once; the rest is stored."""

    key_id: str
    secret_sha256: str
    token: str


def issue_key() -> IssuedKey:
    key_id = secrets.token_bytes(KEY_ID_BYTES).hex()
    secret = secrets.token_bytes(SECRET_BYTES)
    encoded = base64.urlsafe_b64encode(secret).rstrip(b"=").decode("ascii")
    return IssuedKey(
        key_id=key_id,
        secret_sha256=hashlib.sha256(secret).hexdigest(),
        token=f"{KEY_PREFIX}_{key_id}_{encoded}",
    )


def parse_key(token: str) -> tuple[str, str]:
    """Split a presented key into (key id, sha256 of the secret).

    Raises `AuthenticationError` when it does not have the shape of a key.
    """
    match = _KEY_RE.match(token)
    if match is None:
        raise AuthenticationError("the API key is malformed")
    key_id, encoded = match.groups()
    secret = base64.urlsafe_b64decode(encoded + "=")
    canonical = base64.urlsafe_b64encode(secret).rstrip(b"=").decode("ascii")
    if len(secret) != SECRET_BYTES or canonical != encoded:  # one spelling per key
        raise AuthenticationError("the API key is malformed")
    return key_id, hashlib.sha256(secret).hexdigest()


def secret_matches(presented_sha256: str, stored_sha256: str) -> bool:
    return hmac.compare_digest(presented_sha256.encode(), stored_sha256.encode())
