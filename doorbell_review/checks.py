"""What the reviewer's machine checks before it signs a prepared payload."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from protocol.release_signing import SignatureRefused, claims_of, describe, payload_sha256
from protocol.token import ReleaseClaims
from protocol.trust_root import DEFAULT_LIMITS, BasisLimits


def check_payload(request: Mapping[str, Any], entry: Mapping[str, Any],
                  limits: Mapping[str, BasisLimits] = DEFAULT_LIMITS) -> ReleaseClaims:
    """The claims of one prepared payload, when they are the request shown and within the
    trust root's limits. Raises SignatureRefused naming the difference."""
    claims = claims_of(str(entry["payload"]))
    if payload_sha256(str(entry["payload"])) != entry.get("payload_sha256"):
        raise SignatureRefused("the payload's hash is not the one the service shows")
    if describe(claims) != entry.get("summary"):
        raise SignatureRefused("the service's summary is not what the payload says")
    if claims.case.request_id != request["id"]:
        raise SignatureRefused(f"the payload is for request {claims.case.request_id}, "
                               f"not {request['id']}")
    if claims.basis != request["basis"]:
        raise SignatureRefused(f"the payload's basis is {claims.basis}, the request's "
                               f"{request['basis']}")
    if claims.aud not in request["devices"] or claims.aud != entry.get("device"):
        raise SignatureRefused(f"the payload is for device {claims.aud}, not one of the "
                               "request's devices")
    window = request.get("window") or {}
    try:
        start, end = (datetime.fromisoformat(str(window[k]).replace("Z", "+00:00"))
                      for k in ("start", "end"))
    except (KeyError, ValueError):
        raise SignatureRefused("the request shows no window") from None
    if (start, end) != (claims.window.start, claims.window.end):
        raise SignatureRefused("the payload's window is not the request's window")
    limit = limits[claims.basis]
    if claims.exp - claims.iat > limit.max_token_life_s:
        raise SignatureRefused("the token would live longer than the trust root allows")
    if claims.window.length_s > limit.max_window_s:
        raise SignatureRefused("the window is longer than the trust root allows")
    return claims


def check_reissue(request: Mapping[str, Any], entry: Mapping[str, Any],
                  limits: Mapping[str, BasisLimits] = DEFAULT_LIMITS) -> ReleaseClaims:
    """`check_payload` for a re-issue payload, which also names the refused token it
    replaces: the new token must be another token with a later ``seq``. Raises
    SignatureRefused naming the difference."""
    claims = check_payload(request, entry, limits)
    replaces = entry.get("replaces") or {}
    if not replaces.get("jti") or claims.jti == replaces["jti"]:
        raise SignatureRefused("the re-issue payload names no other token it replaces")
    if not isinstance(replaces.get("seq"), int) or claims.seq <= replaces["seq"]:
        raise SignatureRefused("the re-issue payload's seq is not after the refused token's")
    return claims
