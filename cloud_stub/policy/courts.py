"""The court registry and the warrant statement a court signs.

A court signs the *canonical warrant statement*: a small JSON object naming the court,
the docket, the judge, the order type, when it was issued and expires, the sha256 of the
warrant document, the devices, the window, and any delayed-notice date. Its bytes are
defined once, in `protocol/warrant.py`, because the device checks the court's signature
too (docs/adr/0013-trust-root-v2.md): `protocol.keys.canonical_json` of that object
(sorted keys, compact, UTF-8), instants in RFC 3339 UTC and device ids sorted, so that
every field an agency could want to stretch (another device, a longer window, a later
expiry, a subpoena relabelled as a warrant) is covered by the signature. The signature
is Ed25519, base64 (standard, padded) in the request's ``court_signature``.

The registry is ``cloud/courts.json``:
``{"courts": {"<court_id>": {"name": "...", "public_key": "<64 hex>"}}}``.
Parsing is pure; `load_court_registry` and `load_court_key` are the only file reads.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from cloud_stub.policy.codes import Code
from cloud_stub.policy.errors import CourtRegistryError, PolicyViolation
from cloud_stub.policy.requests import OrderType, WarrantRequest
from protocol import warrant as protocol_warrant
from protocol.errors import KeyFormatError
from protocol.keys import private_key_from_pem, public_key_from_hex

STATEMENT_TYPE = protocol_warrant.STATEMENT_TYPE
STATEMENT_VERSION = protocol_warrant.STATEMENT_VERSION
MAX_REGISTRY_BYTES = 1024 * 1024
MAX_COURTS = 10_000
COURT_ID_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,127}")
_SIGNATURE_B64_RE = re.compile(r"[A-Za-z0-9+/]{86}==")
STATEMENT_FIELDS = (
    "court_id", "docket", "judge", "order_type", "issued", "expires",
    "document_sha256", "device_ids", "window",
)  # fmt: skip
"""Request fields a statement needs (``notify_after`` is optional)."""


@dataclass(frozen=True, slots=True)
class Court:
    """One court that may sign warrants."""

    court_id: str
    name: str
    public_key: Ed25519PublicKey


class CourtRegistry(Mapping[str, Court]):
    """Courts by id; immutable once built."""

    __slots__ = ("_courts",)

    def __init__(self, courts: Mapping[str, Court]) -> None:
        for court_id, court in courts.items():
            if court.court_id != court_id:
                raise ValueError(f"court {court_id!r} registered under another id")
        self._courts: Mapping[str, Court] = MappingProxyType(dict(courts))

    def __getitem__(self, court_id: str) -> Court:
        return self._courts[court_id]

    def __iter__(self) -> Iterator[str]:
        return iter(self._courts)

    def __len__(self) -> int:
        return len(self._courts)


def parse_court_registry(data: bytes, *, source: str = "courts.json") -> CourtRegistry:
    """Parse registry bytes. Raises `CourtRegistryError` naming the court and the problem."""
    if len(data) > MAX_REGISTRY_BYTES:
        raise CourtRegistryError(f"{source}: larger than {MAX_REGISTRY_BYTES} bytes")
    try:
        doc: Any = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CourtRegistryError(f"{source}: not valid JSON: {exc}") from None
    if not isinstance(doc, dict) or set(doc) != {"courts"} or not isinstance(doc["courts"], dict):
        raise CourtRegistryError(f'{source}: expected exactly {{"courts": {{...}}}}')
    entries: dict[str, Any] = doc["courts"]
    if len(entries) > MAX_COURTS:
        raise CourtRegistryError(f"{source}: more than {MAX_COURTS} courts")
    courts: dict[str, Court] = {}
    for court_id, entry in entries.items():
        if COURT_ID_RE.fullmatch(court_id) is None:
            raise CourtRegistryError(f"{source}: court id {court_id!r:.80} is not a valid id")
        if not isinstance(entry, dict) or set(entry) != {"name", "public_key"}:
            raise CourtRegistryError(
                f"{source}: court {court_id!r} must have exactly 'name' and 'public_key'"
            )
        name, key_hex = entry["name"], entry["public_key"]
        if not isinstance(name, str) or not name.strip() or len(name) > 200:
            raise CourtRegistryError(f"{source}: court {court_id!r}: 'name' must be a short text")
        try:
            key = public_key_from_hex(key_hex)
        except KeyFormatError as exc:
            raise CourtRegistryError(f"{source}: court {court_id!r}: public_key: {exc}") from None
        courts[court_id] = Court(court_id=court_id, name=name, public_key=key)
    return CourtRegistry(courts)


def load_court_registry(path: Path) -> CourtRegistry:
    """Read and parse ``cloud/courts.json``. Raises `CourtRegistryError`."""
    try:
        with path.open("rb") as fh:
            data = fh.read(MAX_REGISTRY_BYTES + 1)
    except OSError as exc:
        raise CourtRegistryError(f"{path}: cannot read the court registry: {exc}") from exc
    return parse_court_registry(data, source=str(path))


def load_court_key(path: Path) -> Ed25519PrivateKey:
    """Read a court's PKCS#8 PEM private key (for testers). Raises `CourtRegistryError`."""
    try:
        with path.open("rb") as fh:
            data = fh.read(8192)
    except OSError as exc:
        raise CourtRegistryError(f"{path}: cannot read the court key: {exc}") from exc
    try:
        return private_key_from_pem(data)
    except KeyFormatError as exc:
        raise CourtRegistryError(f"{path}: {exc}") from None


@dataclass(frozen=True, slots=True)
class WarrantStatement:
    """What the court attests to; its canonical bytes are what it signs."""

    court_id: str
    docket: str
    judge: str
    order_type: OrderType
    issued: datetime
    expires: datetime
    document_sha256: str
    device_ids: tuple[str, ...]
    window_start: datetime
    window_end: datetime
    notify_after: datetime | None = None

    def to_protocol(self) -> protocol_warrant.WarrantStatement:
        """The same statement as the device reads it (`protocol/warrant.py`)."""
        return protocol_warrant.WarrantStatement(
            court_id=self.court_id,
            docket=self.docket,
            judge=self.judge,
            order_type=str(self.order_type),
            issued=self.issued,
            expires=self.expires,
            document_sha256=self.document_sha256,
            device_ids=tuple(self.device_ids),
            window_start=self.window_start,
            window_end=self.window_end,
            notify_after=self.notify_after,
        )

    def to_json_obj(self) -> dict[str, Any]:
        return self.to_protocol().to_json_obj()

    def canonical_bytes(self) -> bytes:
        """The exact bytes a court signs. Raises ValueError for a naive datetime."""
        return self.to_protocol().canonical_bytes()

    @classmethod
    def from_request(cls, request: WarrantRequest) -> WarrantStatement:
        """The statement a warrant request claims the court signed.

        Raises `PolicyViolation` (``warrant_field_missing``) when a statement field is
        absent.
        """
        r = request
        if (
            r.court_id is None
            or r.docket is None
            or r.judge is None
            or r.order_type is None
            or r.issued is None
            or r.expires is None
            or r.document_sha256 is None
            or r.device_ids is None
            or r.window is None
        ):
            missing = [name for name in STATEMENT_FIELDS if getattr(r, name) is None]
            raise PolicyViolation(
                Code.WARRANT_FIELD_MISSING,
                f"the warrant statement lacks {', '.join(missing)}",
            )
        return cls(
            court_id=r.court_id,
            docket=r.docket,
            judge=r.judge,
            order_type=r.order_type,
            issued=r.issued,
            expires=r.expires,
            document_sha256=r.document_sha256,
            device_ids=tuple(r.device_ids),
            window_start=r.window.start,
            window_end=r.window.end,
            notify_after=r.notify_after,
        )


def document_sha256(data: bytes) -> str:
    """The lowercase hex sha256 of a warrant document's bytes."""
    return hashlib.sha256(data).hexdigest()


def sign_warrant(statement: WarrantStatement, court_key: Ed25519PrivateKey) -> str:
    """The court's signature over the statement, base64 (standard, padded)."""
    return base64.b64encode(court_key.sign(statement.canonical_bytes())).decode("ascii")


def verify_warrant_signature(
    statement: WarrantStatement, signature_b64: str, registry: Mapping[str, Court]
) -> Court:
    """Check that the named court signed exactly this statement; returns the court.

    Raises `PolicyViolation`: ``court_unknown`` when the court is not in the registry,
    ``court_signature_invalid`` when the signature is malformed or does not verify.
    """
    court = registry.get(statement.court_id)
    if court is None:
        raise PolicyViolation(
            Code.COURT_UNKNOWN,
            f"court {statement.court_id!r} is not in the court registry",
        )
    if _SIGNATURE_B64_RE.fullmatch(signature_b64) is None:
        raise PolicyViolation(
            Code.COURT_SIGNATURE_INVALID,
            "court_signature must be a 64-byte Ed25519 signature in padded standard base64",
        )
    try:
        raw = base64.b64decode(signature_b64, validate=True)
    except (binascii.Error, ValueError):
        raise PolicyViolation(
            Code.COURT_SIGNATURE_INVALID, "court_signature is not valid base64"
        ) from None
    try:
        court.public_key.verify(raw, statement.canonical_bytes())
    except InvalidSignature:
        raise PolicyViolation(
            Code.COURT_SIGNATURE_INVALID,
            f"the signature of court {statement.court_id!r} does not verify over this warrant "
            "(a field was changed after signing, or another key signed it)",
        ) from None
    return court


def request_fields(statement: WarrantStatement, signature_b64: str) -> dict[str, Any]:
    """The JSON fields an agency copies into its warrant request (``court sign`` prints them)."""
    obj = statement.to_json_obj()
    fields: dict[str, Any] = {
        "basis": "warrant",
        "order_type": obj["order_type"],
        "court_id": obj["court_id"],
        "judge": obj["judge"],
        "docket": obj["docket"],
        "issued": obj["issued"],
        "expires": obj["expires"],
        "document_sha256": obj["document_sha256"],
        "device_ids": list(statement.device_ids),
        "window": obj["window"],
        "court_signature": signature_b64,
    }
    if statement.notify_after is not None:
        fields["notify_after"] = obj["notify_after"]
    return fields
