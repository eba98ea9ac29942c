"""The court-signed warrant statement and the ``warrant`` claim that carries it.

A court signs the canonical warrant statement: ``canonical_json`` (sorted keys,
compact, UTF-8) of::

    {"type": "doorbell-warrant-statement", "v": 1, "court_id", "docket", "judge",
     "order_type", "issued", "expires", "document_sha256", "device_ids" (sorted),
     "window": {"start", "end"}, "notify_after" (null or a time)}

with instants in RFC 3339 UTC (`protocol.timefmt`). A warrant token carries the exact
bytes and the signature in its ``warrant`` claim (docs/adr/0013-trust-root-v2.md)::

    "warrant": {"statement": "<base64 of the bytes>", "court_sig": "<base64 of 64 bytes>"}

Parsing is strict and has one spelling: the statement bytes must re-encode to
themselves. Raises `protocol._schema.SchemaError`; the token module turns that into
``malformed``.
"""

from __future__ import annotations

import base64
import binascii
import functools
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from protocol import _schema as s
from protocol.keys import canonical_json
from protocol.timefmt import format_time, require_aware

STATEMENT_TYPE: Final = "doorbell-warrant-statement"
STATEMENT_VERSION: Final = 1
SEARCH_WARRANT: Final = "search_warrant"  # the one order type that reaches content
MAX_STATEMENT_BYTES: Final = 16 * 1024
MAX_DEVICES: Final = 256
COURT_ID_RE: Final = re.compile(r"[a-z0-9][a-z0-9._-]{0,127}")
_STD_B64: Final = re.compile(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")
_FIELDS: Final = frozenset(
    {"type", "v", "court_id", "docket", "judge", "order_type", "issued", "expires",
     "document_sha256", "device_ids", "window", "notify_after"}
)  # fmt: skip
_CLAIM_FIELDS: Final = frozenset({"statement", "court_sig"})


@dataclass(frozen=True, slots=True)
class WarrantStatement:
    """What a court attests to; `canonical_bytes` is what it signs."""

    court_id: str
    docket: str
    judge: str
    order_type: str
    issued: datetime
    expires: datetime
    document_sha256: str
    device_ids: tuple[str, ...]
    window_start: datetime
    window_end: datetime
    notify_after: datetime | None = None

    def __post_init__(self) -> None:
        for name in ("issued", "expires", "window_start", "window_end"):
            require_aware(name, getattr(self, name))

    def to_json_obj(self) -> dict[str, Any]:
        return {
            "type": STATEMENT_TYPE,
            "v": STATEMENT_VERSION,
            "court_id": self.court_id,
            "docket": self.docket,
            "judge": self.judge,
            "order_type": str(self.order_type),
            "issued": format_time(self.issued),
            "expires": format_time(self.expires),
            "document_sha256": self.document_sha256,
            "device_ids": sorted(self.device_ids),
            "window": {
                "start": format_time(self.window_start),
                "end": format_time(self.window_end),
            },
            "notify_after": None if self.notify_after is None else format_time(self.notify_after),
        }

    def canonical_bytes(self) -> bytes:
        """The exact bytes a court signs."""
        return canonical_json(self.to_json_obj())

    def names_device(self, device_id: str) -> bool:
        return device_id in self.device_ids


@functools.lru_cache(maxsize=64)
def parse_statement(data: bytes) -> WarrantStatement:
    """Strictly parse statement bytes that must be their own canonical encoding.

    Memoized (a pure function of the bytes; only successes are kept): a device sees the
    same warrant on every token of a case. Raises SchemaError naming the problem.
    """
    if len(data) > MAX_STATEMENT_BYTES:
        raise s.SchemaError(f"warrant statement is larger than {MAX_STATEMENT_BYTES} bytes")
    item = s.obj(s.loads_strict(data), "warrant statement", _FIELDS)
    if item["type"] != STATEMENT_TYPE:
        raise s.SchemaError(f"warrant statement type must be {STATEMENT_TYPE!r}")
    if item["v"] != STATEMENT_VERSION or isinstance(item["v"], bool):
        raise s.SchemaError(f"warrant statement v must be {STATEMENT_VERSION}")
    court_id = s.string(item["court_id"], "warrant.court_id", max_len=128)
    if COURT_ID_RE.fullmatch(court_id) is None:
        raise s.SchemaError("warrant.court_id is not a court id")
    devices = s.array(item["device_ids"], "warrant.device_ids", max_len=MAX_DEVICES)
    if not devices:
        raise s.SchemaError("warrant.device_ids must name at least one device")
    device_ids = tuple(s.string(d, "warrant.device_ids[]", max_len=128) for d in devices)
    window = s.obj(item["window"], "warrant.window", frozenset({"start", "end"}))
    start = s.instant(window["start"], "warrant.window.start")
    end = s.instant(window["end"], "warrant.window.end")
    if end <= start:
        raise s.SchemaError("warrant.window end must be after its start")
    issued = s.instant(item["issued"], "warrant.issued")
    expires = s.instant(item["expires"], "warrant.expires")
    if expires <= issued:
        raise s.SchemaError("warrant.expires must be after warrant.issued")
    notify = item["notify_after"]
    statement = WarrantStatement(
        court_id=court_id,
        docket=s.string(item["docket"], "warrant.docket", max_len=256),
        judge=s.string(item["judge"], "warrant.judge", max_len=256),
        order_type=s.string(item["order_type"], "warrant.order_type", max_len=64),
        issued=issued,
        expires=expires,
        document_sha256=s.hex64(item["document_sha256"], "warrant.document_sha256"),
        device_ids=device_ids,
        window_start=start,
        window_end=end,
        notify_after=None if notify is None else s.instant(notify, "warrant.notify_after"),
    )
    if statement.canonical_bytes() != data:
        raise s.SchemaError("warrant statement is not in its canonical encoding")
    return statement


def _b64(value: Any, name: str, *, max_len: int) -> bytes:
    if not isinstance(value, str) or len(value) > max_len or _STD_B64.fullmatch(value) is None:
        raise s.SchemaError(f"{name} must be standard padded base64")
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise s.SchemaError(f"{name} must be standard padded base64") from None
    if base64.b64encode(raw).decode("ascii") != value:
        raise s.SchemaError(f"{name} is not canonical base64")
    return raw


@dataclass(frozen=True, slots=True)
class WarrantClaim:
    """The ``warrant`` claim: the statement, its exact bytes and the court's signature."""

    statement: WarrantStatement
    statement_bytes: bytes
    court_sig: bytes

    def to_payload(self) -> dict[str, str]:
        return {
            "statement": base64.b64encode(self.statement_bytes).decode("ascii"),
            "court_sig": base64.b64encode(self.court_sig).decode("ascii"),
        }

    @classmethod
    def from_payload(cls, value: Any) -> WarrantClaim:
        """Raises SchemaError."""
        item = s.obj(value, "warrant", _CLAIM_FIELDS)
        raw = _b64(item["statement"], "warrant.statement", max_len=MAX_STATEMENT_BYTES * 2)
        sig = _b64(item["court_sig"], "warrant.court_sig", max_len=88)
        if len(sig) != 64:
            raise s.SchemaError("warrant.court_sig must be a 64-byte Ed25519 signature")
        return cls(statement=parse_statement(raw), statement_bytes=raw, court_sig=sig)

    @classmethod
    def of(cls, statement: WarrantStatement, court_sig: bytes) -> WarrantClaim:
        """The claim for a statement and the court's raw signature over its bytes."""
        return cls(statement, statement.canonical_bytes(), court_sig)

    def signed_by(self, court_key: Ed25519PublicKey) -> bool:
        try:
            court_key.verify(self.court_sig, self.statement_bytes)
        except InvalidSignature:
            return False
        return True


def sign_statement(statement: WarrantStatement, court_key: Ed25519PrivateKey) -> bytes:
    """The court's raw 64-byte Ed25519 signature over the canonical bytes."""
    return court_key.sign(statement.canonical_bytes())
