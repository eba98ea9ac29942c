"""What the service publishes on a device's `release` topic: a token, with its release-log
proof when the deployment has a log (docs/protocol.md section 11, ADR 0014).

Two forms, told apart by their top-level keys:

- a bare JWS (JSON with `payload` and `signatures`): a token without a proof;
- an envelope ``{"v": 1, "token": "<the JWS text>", "log": "<proof bundle text>"}``,
  parsed strictly: exactly these three keys, `v` the integer 1, both values strings.

The token travels as text, not as a JSON object, because the logged statement's
`token_sha256` and every device result name the sha256 of the exact JWS bytes the service
issued; re-serialising an object would change them. The proof cannot live inside the JWS
for the same reason. Pure: bytes in, `ReleaseMessage` or `EnvelopeError` out.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from protocol.errors import ProtocolError

ENVELOPE_VERSION = 1
ENVELOPE_KEYS = frozenset({"v", "token", "log"})


class EnvelopeError(ProtocolError):
    """A message that claims to be an envelope but breaks its rules (names the rule)."""


@dataclass(frozen=True, slots=True)
class ReleaseMessage:
    """One `release` message: the token's exact bytes and its proof bundle, if any."""

    token: bytes
    log: bytes | None


def wrap_release(token: bytes, bundle: bytes) -> bytes:
    """The envelope carrying `token` (JWS bytes, UTF-8) with its proof `bundle`."""
    return json.dumps(
        {"v": ENVELOPE_VERSION, "token": token.decode("utf-8"), "log": bundle.decode("utf-8")},
        sort_keys=True,
        separators=(",", ":"),
    ).encode("utf-8")


def parse_release_message(data: bytes) -> ReleaseMessage:
    """Split a `release` payload into token bytes and proof. Anything that is not a JSON
    object with a `token` key is a bare token (judged, and refused if need be, by the
    token rules). Raises EnvelopeError for an envelope that breaks its rules."""
    try:
        raw: Any = json.loads(data)
    except (ValueError, RecursionError):
        return ReleaseMessage(data, None)
    if not isinstance(raw, dict) or "token" not in raw:
        return ReleaseMessage(data, None)
    if set(raw) != ENVELOPE_KEYS:
        extra = sorted(set(raw) - ENVELOPE_KEYS)
        missing = sorted(ENVELOPE_KEYS - set(raw))
        raise EnvelopeError(f"envelope keys: unexpected {extra}, missing {missing}")
    version = raw["v"]
    if isinstance(version, bool) or version != ENVELOPE_VERSION:
        raise EnvelopeError(f"envelope v must be {ENVELOPE_VERSION}")
    token, bundle = raw["token"], raw["log"]
    if not isinstance(token, str) or not token:
        raise EnvelopeError("envelope token must be the JWS text (a non-empty string)")
    if not isinstance(bundle, str) or not bundle:
        raise EnvelopeError("envelope log must be the proof bundle text (a non-empty string)")
    try:
        return ReleaseMessage(token.encode("utf-8"), bundle.encode("utf-8"))
    except UnicodeEncodeError:
        raise EnvelopeError("envelope strings must be valid UTF-8") from None
