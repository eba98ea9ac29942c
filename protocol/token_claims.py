"""What a release or preservation token says: its claims, their strict parser, and the
media type and size cap of the JWS that carries them (docs/protocol.md).

The claims are checked by `protocol.token.verify_token` on the device and signed by
`protocol.token_signing` in the cloud; `protocol.token` is the public surface of both.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from protocol import _schema as s
from protocol.errors import RejectionCode, TokenRejected
from protocol.timefmt import format_time, parse_time, require_aware
from protocol.trust_root import BASES
from protocol.warrant import WarrantClaim

TOKEN_TYP: Final = "doorbell-release+jws"  # noqa: S105 (a media type, not a secret)
TOKEN_VERSION: Final = 1
MAX_TOKEN_BYTES: Final = 64 * 1024  # an age file of ~100 epoch identities fits well inside
_UPLOAD_URL: Final = re.compile(
    r"https?://[A-Za-z0-9.\-]+(:[0-9]{1,5})?(/[A-Za-z0-9._~!$&'()*+,;=:@%/\-]*)?"
)

_CLAIMS_REQUIRED = frozenset(
    {"v", "iss", "aud", "jti", "seq", "iat", "nbf", "exp", "basis", "case", "window"}
)
_RELEASE_ONLY = frozenset({"recipient", "keys", "upload"})
_CASE_KEYS = frozenset({"request_id", "docket", "authority", "document_sha256"})
_WINDOW_KEYS = frozenset({"start", "end"})


@dataclass(frozen=True, slots=True)
class Window:
    """A half-open time range [start, end), aware UTC datetimes."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        require_aware("window.start", self.start)
        require_aware("window.end", self.end)
        if self.end <= self.start:
            raise ValueError("window end must be after its start")

    @property
    def length_s(self) -> float:
        return (self.end - self.start).total_seconds()

    def overlaps(self, start: datetime, end: datetime) -> bool:
        """True when [start, end] shares any instant with the window."""
        return start < self.end and end > self.start

    def to_payload(self) -> dict[str, str]:
        return {"start": format_time(self.start), "end": format_time(self.end)}

    @classmethod
    def from_payload(cls, value: Any, name: str = "window") -> Window:
        """Raises s.SchemaError."""
        item = s.obj(value, name, _WINDOW_KEYS)
        try:
            start, end = parse_time(item["start"]), parse_time(item["end"])
        except ValueError as exc:
            raise s.SchemaError(f"{name}: {exc}") from None
        if end <= start:
            raise s.SchemaError(f"{name} end must be after its start")
        return cls(start=start, end=end)


@dataclass(frozen=True, slots=True)
class CaseRef:
    """The legal case behind a token: request id, docket or incident number, court or
    agency, and the sha256 of the signed warrant or emergency certification."""

    request_id: str
    docket: str
    authority: str
    document_sha256: str

    def to_payload(self) -> dict[str, str]:
        return {
            "request_id": self.request_id,
            "docket": self.docket,
            "authority": self.authority,
            "document_sha256": self.document_sha256,
        }

    @classmethod
    def from_payload(cls, value: Any, name: str = "case") -> CaseRef:
        """Raises s.SchemaError."""
        item = s.obj(value, name, _CASE_KEYS)
        return cls(
            request_id=s.string(item["request_id"], f"{name}.request_id", max_len=128),
            docket=s.string(item["docket"], f"{name}.docket", max_len=256),
            authority=s.string(item["authority"], f"{name}.authority", max_len=256),
            document_sha256=s.hex64(item["document_sha256"], f"{name}.document_sha256"),
        )


@dataclass(frozen=True, slots=True)
class ReleaseClaims:
    """The payload of a token. `recipient`, `keys` and `upload` are present exactly for
    warrant and emergency; `hold_until` exactly for preservation."""

    v: int
    iss: str
    aud: str
    jti: str
    seq: int
    iat: int
    nbf: int
    exp: int
    basis: str
    case: CaseRef
    window: Window
    recipient: str | None = None
    keys: str | None = None  # standard base64 of an age file sealed to the transport key
    upload: str | None = None
    notify_after: datetime | None = None
    hold_until: datetime | None = None
    warrant: WarrantClaim | None = None  # warrant basis, trust root v2 (protocol/warrant.py)

    @property
    def is_preservation(self) -> bool:
        return self.basis == "preservation"

    def to_payload(self) -> dict[str, Any]:
        """The claims as a JSON object (absent optional claims are left out)."""
        out: dict[str, Any] = {
            "v": self.v,
            "iss": self.iss,
            "aud": self.aud,
            "jti": self.jti,
            "seq": self.seq,
            "iat": self.iat,
            "nbf": self.nbf,
            "exp": self.exp,
            "basis": self.basis,
            "case": self.case.to_payload(),
            "window": self.window.to_payload(),
        }
        for name in ("recipient", "keys", "upload"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        if self.notify_after is not None:
            out["notify_after"] = format_time(self.notify_after)
        if self.hold_until is not None:
            out["hold_until"] = format_time(self.hold_until)
        if self.warrant is not None:
            out["warrant"] = self.warrant.to_payload()
        return out

    @classmethod
    def from_payload(cls, value: Any) -> ReleaseClaims:
        """The strict parser: exactly the claims of docs/protocol.md, nothing else.

        Raises TokenRejected(malformed) naming the first problem.
        """
        try:
            return _parse_claims(value)
        except s.SchemaError as exc:
            raise TokenRejected(RejectionCode.malformed, f"claims: {exc}") from None


def _parse_claims(value: Any) -> ReleaseClaims:
    if not isinstance(value, dict):
        raise s.SchemaError("the payload must be a JSON object")
    basis = value.get("basis")
    if basis not in BASES:
        raise s.SchemaError(f"basis must be one of {', '.join(BASES)}")
    if basis == "preservation":
        item = s.obj(value, "claims", _CLAIMS_REQUIRED | {"hold_until"})
    else:
        optional = {"notify_after", "warrant"} if basis == "warrant" else {"notify_after"}
        item = s.obj(value, "claims", _CLAIMS_REQUIRED | _RELEASE_ONLY, frozenset(optional))
    if type(item["v"]) is not int or item["v"] != TOKEN_VERSION:  # not 1.0, 1e0 or true
        raise s.SchemaError(f"v must be the integer {TOKEN_VERSION}")
    jti = s.identifier(item["jti"], "jti")
    iat = s.integer(item["iat"], "iat")
    nbf = s.integer(item["nbf"], "nbf")
    exp = s.integer(item["exp"], "exp")
    if not iat <= nbf < exp:
        raise s.SchemaError("times must satisfy iat <= nbf < exp")
    recipient = keys = upload = None
    notify_after = hold_until = None
    if basis == "preservation":
        hold_until = s.instant(item["hold_until"], "hold_until")
    else:
        upload = s.string(item["upload"], "upload", max_len=2048)
        if _UPLOAD_URL.fullmatch(upload) is None:
            raise s.SchemaError("upload must be an http(s) URL without query or fragment")
        if "notify_after" in item:
            notify_after = s.instant(item["notify_after"], "notify_after")
        # strings under the text rule like every claim (docs/protocol.md rule 2); whether
        # they parse as a recipient and an age file is judged later (bad_recipient, bad_keys)
        recipient = s.string(item["recipient"], "recipient", max_len=MAX_TOKEN_BYTES,
                             allow_empty=True)
        keys = s.string(item["keys"], "keys", max_len=MAX_TOKEN_BYTES, allow_empty=True)
    return ReleaseClaims(
        v=TOKEN_VERSION,
        iss=s.string(item["iss"], "iss", max_len=128),
        aud=s.string(item["aud"], "aud", max_len=128),
        jti=jti,
        seq=s.integer(item["seq"], "seq", minimum=1),
        iat=iat,
        nbf=nbf,
        exp=exp,
        basis=basis,
        case=CaseRef.from_payload(item["case"]),
        window=Window.from_payload(item["window"]),
        recipient=recipient,
        keys=keys,
        upload=upload,
        notify_after=notify_after,
        hold_until=hold_until,
        warrant=WarrantClaim.from_payload(item["warrant"]) if "warrant" in item else None,
    )


def unix_time(value: datetime) -> int:
    """Whole seconds since the epoch of an aware datetime (floor). Raises ValueError."""
    require_aware("time", value)
    return math.floor(value.astimezone(UTC).timestamp())
