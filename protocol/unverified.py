"""What a token's bytes claim, read WITHOUT verification: for reporting only.

A device that refuses a token, or holds one until its clock can judge it, still names
the token in its logs and audit entries. `claimed_jti` reads the jti the payload
claims without checking a signature; nothing may be decided on it (a forgery may claim
the jti of a release in flight), and results for unverified bytes go under the bytes'
own id instead (docs/protocol.md).
"""

from __future__ import annotations

import base64
import binascii
import json

from protocol._schema import ID_PATTERN


def claimed_jti(data: bytes) -> str:
    """The jti a token (a JWS in the general JSON serialization) claims, unverified; ""
    when the bytes carry none that is a well-formed id. Never raises."""
    try:
        envelope = json.loads(data)
        payload = envelope["payload"]
        raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
        jti = json.loads(raw)["jti"]
    except (ValueError, KeyError, TypeError, binascii.Error, RecursionError):
        return ""
    return jti if isinstance(jti, str) and ID_PATTERN.fullmatch(jti) else ""
