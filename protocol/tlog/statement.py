"""The release statement: what the public release log records about one token.

Canonical JSON (sorted keys, no spaces, UTF-8), at most 65,535 bytes (under 64 KiB, so that
it fits the uint16 length prefix of a c2sp.org/tlog-tiles entry bundle):

    {"basis", "device_tag", "iat", "seq", "token_sha256", "v": 1,
     "window": {"end", "start"},
     and for a warrant only: "court", "docket_sha256"}

`device_tag` is SHA-256 over `DEVICE_TAG_DOMAIN` and the device's enrolled Ed25519
identity public key (32 raw bytes): the owner's bundle carries it so the owner can find
their doorbell's entries; nobody else can link an entry to a household. No names, no
requester key, no sealed keys. See docs/protocol.md "Release log".
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from protocol import _schema as s
from protocol.keys import canonical_json, raw_public_bytes
from protocol.tlog.errors import StatementError
from protocol.token_claims import ReleaseClaims

MAX_STATEMENT_BYTES = 65535  # 64 KiB less one byte: an entry bundle length is a uint16
STATEMENT_VERSION = 1
DEVICE_TAG_DOMAIN = b"sealed-doorbell/release-log/device-tag/v1\n"
_HEX64 = re.compile(r"[0-9a-f]{64}")
_COMMON = {"v", "device_tag", "token_sha256", "basis", "window", "iat", "seq"}
_WARRANT = _COMMON | {"court", "docket_sha256"}
_BASES = ("warrant", "emergency", "preservation")


def device_tag(identity: Ed25519PublicKey) -> str:
    """The hex tag under which a device's releases are logged."""
    return hashlib.sha256(DEVICE_TAG_DOMAIN + raw_public_bytes(identity)).hexdigest()


def token_digest(token: bytes) -> str:
    return hashlib.sha256(token).hexdigest()


@dataclass(frozen=True)
class ReleaseStatement:
    """One log entry."""

    device_tag: str
    token_sha256: str
    basis: str
    window_start: str
    window_end: str
    iat: int
    seq: int
    court: str | None = None
    docket_sha256: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "v": STATEMENT_VERSION,
            "device_tag": self.device_tag,
            "token_sha256": self.token_sha256,
            "basis": self.basis,
            "window": {"start": self.window_start, "end": self.window_end},
            "iat": self.iat,
            "seq": self.seq,
        }
        if self.court is not None:
            out["court"] = self.court
            out["docket_sha256"] = self.docket_sha256
        return out

    def encode(self) -> bytes:
        data = canonical_json(self.to_json())
        if len(data) > MAX_STATEMENT_BYTES:
            raise StatementError(f"the statement is {len(data)} bytes, above 65535")
        return data


def statement_for(
    token: bytes, claims: ReleaseClaims, identity: Ed25519PublicKey
) -> ReleaseStatement:
    """The statement the service logs for `token` (whose claims are `claims`) issued to
    the device enrolled with `identity`."""
    window = claims.window.to_payload()
    warrant = claims.basis == "warrant"
    return ReleaseStatement(
        device_tag=device_tag(identity),
        token_sha256=token_digest(token),
        basis=claims.basis,
        window_start=window["start"],
        window_end=window["end"],
        iat=claims.iat,
        seq=claims.seq,
        court=claims.case.authority if warrant else None,
        docket_sha256=hashlib.sha256(claims.case.docket.encode()).hexdigest() if warrant else None,
    )


def _hex(item: dict[str, Any], key: str) -> str:
    value = item[key]
    if not isinstance(value, str) or not _HEX64.fullmatch(value):
        raise StatementError(f"{key} must be 64 lowercase hex digits")
    return value


def _int(item: dict[str, Any], key: str) -> int:
    value = item[key]
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**63:
        raise StatementError(f"{key} must be a non-negative integer")
    return value


def _text(value: Any, key: str) -> str:
    if not isinstance(value, str) or not value or len(value) > 1024:
        raise StatementError(f"{key} must be a non-empty string of at most 1024 characters")
    return value


def parse_statement(data: bytes) -> ReleaseStatement:
    """Parse a logged entry strictly: size, canonical form, exact members."""
    if len(data) > MAX_STATEMENT_BYTES:
        raise StatementError(f"the entry is {len(data)} bytes, above 65535")
    try:
        item = s.loads_strict(data)
    except s.SchemaError as exc:
        raise StatementError(f"the entry is not JSON: {exc}") from None
    if not isinstance(item, dict):
        raise StatementError("the entry is not a JSON object")
    if item.get("v") != STATEMENT_VERSION:
        raise StatementError(f"v must be {STATEMENT_VERSION}")
    basis = item.get("basis")
    if basis not in _BASES:
        raise StatementError(f"basis must be one of {', '.join(_BASES)}")
    expected = _WARRANT if basis == "warrant" else _COMMON
    if set(item) != expected:
        raise StatementError(f"the members must be exactly {', '.join(sorted(expected))}")
    window = item["window"]
    if not isinstance(window, dict) or set(window) != {"start", "end"}:
        raise StatementError("window must be an object of start and end")
    statement = ReleaseStatement(
        device_tag=_hex(item, "device_tag"),
        token_sha256=_hex(item, "token_sha256"),
        basis=basis,
        window_start=_text(window["start"], "window.start"),
        window_end=_text(window["end"], "window.end"),
        iat=_int(item, "iat"),
        seq=_int(item, "seq"),
        court=_text(item["court"], "court") if basis == "warrant" else None,
        docket_sha256=_hex(item, "docket_sha256") if basis == "warrant" else None,
    )
    if canonical_json(item) != data:
        raise StatementError("the entry is not in canonical JSON form")
    return statement
