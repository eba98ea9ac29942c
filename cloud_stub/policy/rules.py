"""Every rule of docs/policy.md, each a small object with one ``check``.

Each rule announces the codes it can raise in ``codes`` and takes its limits as
keyword-only constructor arguments (with their units in the name). Rules never read
the clock or a file: ``ctx.now`` is the time, ``ctx.courts`` the court registry.
docs/policy.md lists every rule, its codes, its default limit and where it comes from.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from datetime import timedelta
from typing import ClassVar

import pyrage
import pyrage.x25519
from pydantic import BaseModel

from cloud_stub.policy.base import PolicyContext
from cloud_stub.policy.codes import Code
from cloud_stub.policy.courts import WarrantStatement, verify_warrant_signature
from cloud_stub.policy.errors import PolicyViolation
from cloud_stub.policy.requests import (
    ContentRequest,
    EmergencyRequest,
    Officer,
    OrderType,
    PreservationRequest,
    ScopedRequest,
    VoluntaryRequest,
    WarrantRequest,
)
from cloud_stub.provision.names import DEVICE_ID
from protocol.token import exact_seconds

# An entry made only of these words is a request for every device ("all", "any camera").
_QUANTIFIERS = frozenset({"all", "any", "every", "each", "everything", "entire", "whole"})
_DEVICE_NOUNS = frozenset(
    {"device", "devices", "camera", "cameras", "doorbell", "doorbells", "unit", "units"}
)
# An entry with one of these prefixes, or a sentence with one of these words, is an area.
_AREA_SCHEMES = frozenset(
    {"area", "zip", "postcode", "postal", "geo", "geohash", "radius", "near", "street",
     "block", "city", "region", "lat", "latlon", "latlng", "bbox", "polygon", "address"}
)  # fmt: skip
_AREA_WORDS = frozenset(
    {"near", "within", "around", "radius", "area", "zone", "vicinity", "neighborhood",
     "neighbourhood", "block", "street", "zip", "postcode", "miles", "km", "meters", "metres"}
)  # fmt: skip
_COORDINATES_RE = re.compile(r"\s*[-+]?\d{1,3}(\.\d+)?\s*,\s*[-+]?\d{1,3}(\.\d+)?\s*")
_GLOB_CHARS = frozenset("*?%[]{}")
_SHA256_RE = re.compile(r"[0-9a-f]{64}")
_IMPLAUSIBLE_SHA256 = frozenset(
    {
        "0" * 64,
        "f" * 64,
        # sha256 of zero bytes: a warrant document is never empty
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    }
)
PLACEHOLDERS = frozenset(
    {"", "na", "n a", "none", "nil", "null", "tbd", "tba", "unknown", "emergency", "urgent",
     "exigent", "exigent circumstances", "see attached", "see above", "same", "same as above",
     "as above", "ongoing", "test", "xxx", "lorem ipsum", "redacted", "classified"}
)  # fmt: skip
"""Normalised texts that never justify an emergency disclosure."""


def _violation(code: Code, reason: str) -> PolicyViolation:
    return PolicyViolation(code, reason)


def _hours(delta: timedelta) -> str:
    """A duration for a reason: whole hours as hours, anything else in exact seconds, so
    a real excess is never rounded away ("259200.5 s", not "72 h")."""
    seconds = delta.total_seconds()
    if delta % timedelta(hours=1) == timedelta(0):
        return f"{seconds / 3600:g} h"
    return f"{exact_seconds(seconds)} s"


def _is_blank(value: object) -> bool:
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    if isinstance(value, (list, tuple)):
        return not value
    return False


def _normalise(text: str) -> str:
    return " ".join(re.sub(r"[^\w]+", " ", text.casefold()).split())


def repeated_phrase(words: Sequence[str]) -> tuple[str, ...] | None:
    """The shortest phrase `words` is made of, said twice or more ("x x x", "help us help
    us help us"), or None when the text is not one phrase repeated."""
    n = len(words)
    for size in range(1, n // 2 + 1):
        if n % size == 0 and list(words) == list(words[:size]) * (n // size):
            return tuple(words[:size])
    return None


# --- any basis ----------------------------------------------------------------------------


class FieldsPresent:
    """Named fields are present and not blank; ``code`` names what is missing."""

    codes: ClassVar[tuple[Code, ...]] = (
        Code.WARRANT_FIELD_MISSING,
        Code.AGENCY_DETAILS_MISSING,
        Code.EMERGENCY_JUSTIFICATION_MISSING,
    )

    def __init__(
        self, *, model: type[BaseModel], fields: Sequence[str], code: Code, what: str
    ) -> None:
        """Raises ValueError for an empty field list or a field the model does not have."""
        if not fields:
            raise ValueError("FieldsPresent needs at least one field")
        unknown = [f for f in fields if f not in model.model_fields]
        if unknown:
            raise ValueError(f"{model.__name__} has no field {', '.join(unknown)}")
        if code not in self.codes:
            raise ValueError(f"FieldsPresent cannot raise {code}")
        self.model = model
        self.fields = tuple(fields)
        self.code = code
        self.what = what

    def check(self, request: BaseModel, ctx: PolicyContext) -> None:
        missing = [f for f in self.fields if _is_blank(getattr(request, f, None))]
        if missing:
            raise _violation(self.code, f"{self.what}: missing or blank: {', '.join(missing)}")


class NamedDevices:
    """Particularity: the request names each device by id; no wildcard, "all" or area."""

    codes: ClassVar[tuple[Code, ...]] = (
        Code.DEVICE_NOT_NAMED,
        Code.PARTICULARITY_WILDCARD,
        Code.DEVICE_ID_INVALID,
        Code.TOO_MANY_DEVICES,
    )

    def __init__(self, *, max_devices: int) -> None:
        if max_devices < 1:
            raise ValueError("max_devices must be at least 1")
        self.max_devices = max_devices

    @staticmethod
    def is_wildcard(entry: str) -> bool:
        """True when an entry asks for every device or an area instead of naming one.

        Compatibility forms are folded first (NFKC), so fullwidth letters and asterisks
        count too.
        """
        entry = unicodedata.normalize("NFKC", entry)
        if any(ch in _GLOB_CHARS for ch in entry):
            return True
        lowered = entry.casefold().strip()
        words = [w for w in re.split(r"[^a-z0-9]+", lowered) if w]
        if (
            words
            and words[0] in _QUANTIFIERS
            and all(w in _QUANTIFIERS or w in _DEVICE_NOUNS for w in words)
        ):
            return True
        scheme, sep, _ = lowered.partition(":")
        if sep and scheme.strip() in _AREA_SCHEMES:
            return True
        if any(ch.isspace() for ch in lowered) and any(w in _AREA_WORDS for w in words):
            return True
        return _COORDINATES_RE.fullmatch(entry) is not None

    def check(self, request: ScopedRequest, ctx: PolicyContext) -> None:
        devices = request.device_ids
        if not devices:
            raise _violation(Code.DEVICE_NOT_NAMED, "name at least one device by its id")
        for entry in devices:
            if self.is_wildcard(entry):
                raise _violation(
                    Code.PARTICULARITY_WILDCARD,
                    f"{entry!r:.80} is not a device: name each device by id "
                    "(no wildcards, 'all devices' or areas)",
                )
        for entry in devices:
            if DEVICE_ID.fullmatch(entry) is None:  # exactly what enrolment allows
                raise _violation(Code.DEVICE_ID_INVALID, f"{entry!r:.80} is not a device id")
        if len(set(devices)) != len(devices):
            raise _violation(Code.DEVICE_ID_INVALID, "a device is named more than once")
        if len(devices) > self.max_devices:
            raise _violation(
                Code.TOO_MANY_DEVICES,
                f"{len(devices)} devices named; a {request.basis} request may name at most "
                f"{self.max_devices}",
            )


class BoundedWindow:
    """The window exists, is ordered, is at most ``max_length`` and ends no later than now."""

    codes: ClassVar[tuple[Code, ...]] = (
        Code.WINDOW_MISSING,
        Code.WINDOW_INVERTED,
        Code.WINDOW_TOO_LONG,
        Code.WINDOW_IN_FUTURE,
    )

    def __init__(self, *, max_length: timedelta) -> None:
        if max_length <= timedelta(0):
            raise ValueError("max_length must be positive")
        self.max_length = max_length

    def check(self, request: ScopedRequest, ctx: PolicyContext) -> None:
        window = request.window
        if window is None:
            raise _violation(Code.WINDOW_MISSING, "give the window of footage: start and end")
        if window.end <= window.start:
            raise _violation(Code.WINDOW_INVERTED, "the window must end after it starts")
        length = window.end - window.start
        if length > self.max_length:
            raise _violation(
                Code.WINDOW_TOO_LONG,
                f"the window is {_hours(length)}; a {request.basis} request may ask for at "
                f"most {_hours(self.max_length)}",
            )
        if window.end > ctx.now:
            raise _violation(
                Code.WINDOW_IN_FUTURE,
                "the window ends after now: only footage that already exists can be asked for",
            )


class RecipientValid:
    """Content is sealed to the requester's age X25519 recipient, which must parse."""

    codes: ClassVar[tuple[Code, ...]] = (Code.RECIPIENT_MISSING, Code.RECIPIENT_INVALID)

    def check(self, request: ContentRequest, ctx: PolicyContext) -> None:
        recipient = request.recipient
        if recipient is None or not recipient.strip():
            raise _violation(Code.RECIPIENT_MISSING, "give the age recipient (age1...) to seal to")
        if not recipient.startswith("age1") or recipient != recipient.lower():
            raise _violation(Code.RECIPIENT_INVALID, "the recipient must be a lowercase age1...")
        try:
            pyrage.x25519.Recipient.from_str(recipient)
        except pyrage.RecipientError as exc:
            raise _violation(
                Code.RECIPIENT_INVALID, f"the recipient is not a valid age recipient: {exc}"
            ) from None


class TokenLifetime:
    """A requested token lifetime may not exceed the basis's maximum."""

    codes: ClassVar[tuple[Code, ...]] = (Code.TOKEN_LIFETIME_TOO_LONG,)

    def __init__(self, *, max_lifetime: timedelta) -> None:
        if max_lifetime <= timedelta(0):
            raise ValueError("max_lifetime must be positive")
        self.max_lifetime = max_lifetime

    def check(self, request: ContentRequest, ctx: PolicyContext) -> None:
        asked = request.token_lifetime_s
        if asked is not None and timedelta(seconds=asked) > self.max_lifetime:
            raise _violation(
                Code.TOKEN_LIFETIME_TOO_LONG,
                f"a {request.basis} token lives at most {int(self.max_lifetime.total_seconds())}"
                f" s; {asked} s was asked",
            )


# --- warrant --------------------------------------------------------------------------------


class OrderTypeGivesContent:
    """Only a search warrant reaches content; subpoenas and other orders do not."""

    codes: ClassVar[tuple[Code, ...]] = (Code.WARRANT_FIELD_MISSING, Code.ORDER_TYPE_NO_CONTENT)

    def check(self, request: WarrantRequest, ctx: PolicyContext) -> None:
        if request.order_type is None:
            raise _violation(Code.WARRANT_FIELD_MISSING, "give the order_type (search_warrant)")
        if request.order_type is not OrderType.SEARCH_WARRANT:
            raise _violation(
                Code.ORDER_TYPE_NO_CONTENT,
                f"a {request.order_type} gets no content: footage needs a search warrant "
                "(or a proven emergency); ask for a preservation instead",
            )


class WarrantDates:
    """Issued no later than now, expires after issue and after now, validity bounded."""

    codes: ClassVar[tuple[Code, ...]] = (
        Code.WARRANT_FIELD_MISSING,
        Code.WARRANT_ISSUED_IN_FUTURE,
        Code.WARRANT_EXPIRY_BEFORE_ISSUE,
        Code.WARRANT_VALIDITY_TOO_LONG,
        Code.WARRANT_EXPIRED,
    )

    def __init__(self, *, max_validity: timedelta) -> None:
        if max_validity <= timedelta(0):
            raise ValueError("max_validity must be positive")
        self.max_validity = max_validity

    def check(self, request: WarrantRequest, ctx: PolicyContext) -> None:
        issued, expires = request.issued, request.expires
        if issued is None or expires is None:
            raise _violation(Code.WARRANT_FIELD_MISSING, "give the warrant's issued and expires")
        if issued > ctx.now:
            raise _violation(Code.WARRANT_ISSUED_IN_FUTURE, "the warrant is issued after now")
        if expires <= issued:
            raise _violation(
                Code.WARRANT_EXPIRY_BEFORE_ISSUE, "the warrant expires at or before its issue"
            )
        if expires - issued > self.max_validity:
            raise _violation(
                Code.WARRANT_VALIDITY_TOO_LONG,
                f"a warrant is valid at most {self.max_validity.days} days after issue",
            )
        if expires <= ctx.now:
            raise _violation(
                Code.WARRANT_EXPIRED,
                f"the warrant expired at {expires.strftime('%Y-%m-%dT%H:%M:%SZ')} "
                "(ask the court for a new one)",
            )


class DocumentHash:
    """``document_sha256`` is a plausible sha256: 64 lowercase hex, not of an empty file."""

    codes: ClassVar[tuple[Code, ...]] = (Code.WARRANT_DOCUMENT_HASH_INVALID,)

    def check(self, request: WarrantRequest, ctx: PolicyContext) -> None:
        digest = request.document_sha256
        if digest is None or _SHA256_RE.fullmatch(digest) is None:
            raise _violation(
                Code.WARRANT_DOCUMENT_HASH_INVALID,
                "document_sha256 must be the 64 lowercase hex sha256 of the warrant document",
            )
        if digest in _IMPLAUSIBLE_SHA256:
            raise _violation(
                Code.WARRANT_DOCUMENT_HASH_INVALID,
                "document_sha256 is a placeholder or the hash of an empty document",
            )


class NoticeDelay:
    """A delayed owner notice must be court-signed (it is in the statement), after the
    issue date, and at most ``max_delay`` after it."""

    codes: ClassVar[tuple[Code, ...]] = (Code.NOTICE_DELAY_INVALID,)

    def __init__(self, *, max_delay: timedelta) -> None:
        if max_delay < timedelta(0):
            raise ValueError("max_delay must not be negative")
        self.max_delay = max_delay

    def check(self, request: WarrantRequest, ctx: PolicyContext) -> None:
        notify_after, issued = request.notify_after, request.issued
        if notify_after is None:
            return
        if issued is None or notify_after <= issued:
            raise _violation(Code.NOTICE_DELAY_INVALID, "notify_after must be after the issue")
        if notify_after - issued > self.max_delay:
            raise _violation(
                Code.NOTICE_DELAY_INVALID,
                f"owner notice may be delayed at most {self.max_delay.days} days after issue",
            )


class CourtSignature:
    """A court in the registry signed this exact warrant statement."""

    codes: ClassVar[tuple[Code, ...]] = (
        Code.WARRANT_FIELD_MISSING,
        Code.COURT_UNKNOWN,
        Code.COURT_SIGNATURE_INVALID,
    )

    def check(self, request: WarrantRequest, ctx: PolicyContext) -> None:
        statement = WarrantStatement.from_request(request)
        if request.court_signature is None:
            raise _violation(Code.WARRANT_FIELD_MISSING, "give the court_signature")
        verify_warrant_signature(statement, request.court_signature, ctx.courts)


# --- emergency ------------------------------------------------------------------------------


EMERGENCY_JUSTIFICATION_FIELDS = ("danger", "persons_at_risk", "why_ongoing", "device_relevance")


class EmergencyJustification:
    """Each justification is present and says something: long enough in distinct words,
    not a placeholder, not one phrase repeated ("x x x ..."), and not a copy of another
    field."""

    codes: ClassVar[tuple[Code, ...]] = (
        Code.EMERGENCY_JUSTIFICATION_MISSING,
        Code.EMERGENCY_JUSTIFICATION_INSUFFICIENT,
    )

    def __init__(self, *, min_chars: int, min_words: int) -> None:
        if min_chars < 1 or min_words < 1:
            raise ValueError("min_chars and min_words must be at least 1")
        self.min_chars = min_chars
        self.min_words = min_words

    def check(self, request: EmergencyRequest, ctx: PolicyContext) -> None:
        seen: dict[str, str] = {}
        for name in EMERGENCY_JUSTIFICATION_FIELDS:
            text: str | None = getattr(request, name)
            if text is None or not text.strip():
                raise _violation(
                    Code.EMERGENCY_JUSTIFICATION_MISSING, f"{name}: required for an emergency"
                )
            norm = _normalise(text)
            if norm in PLACEHOLDERS:
                raise _violation(
                    Code.EMERGENCY_JUSTIFICATION_INSUFFICIENT,
                    f"{name}: {text.strip()!r:.40} is a placeholder, not a justification",
                )
            words = norm.split()
            phrase = repeated_phrase(words)
            if phrase is not None:
                raise _violation(
                    Code.EMERGENCY_JUSTIFICATION_INSUFFICIENT,
                    f"{name}: {' '.join(phrase)!r:.40} repeated is a placeholder, not a "
                    "justification",
                )
            if len(norm) < self.min_chars or len(set(words)) < self.min_words:
                raise _violation(
                    Code.EMERGENCY_JUSTIFICATION_INSUFFICIENT,
                    f"{name}: say it in at least {self.min_words} different words and "
                    f"{self.min_chars} characters",
                )
            if norm in seen:
                raise _violation(
                    Code.EMERGENCY_JUSTIFICATION_INSUFFICIENT,
                    f"{name} repeats {seen[norm]}: each field answers its own question",
                )
            seen[norm] = name


class EmergencyOfficers:
    """A certifying officer and a distinct supervisor, each with name, badge and contact."""

    codes: ClassVar[tuple[Code, ...]] = (
        Code.EMERGENCY_OFFICER_MISSING,
        Code.EMERGENCY_SUPERVISOR_NOT_INDEPENDENT,
    )

    @staticmethod
    def _complete(officer: Officer) -> bool:
        return not any(_is_blank(v) for v in (officer.name, officer.badge, officer.contact))

    def check(self, request: EmergencyRequest, ctx: PolicyContext) -> None:
        officer, supervisor = request.certifying_officer, request.supervisor
        if officer is None or not self._complete(officer):
            raise _violation(
                Code.EMERGENCY_OFFICER_MISSING, "certifying_officer: give name, badge and contact"
            )
        if supervisor is None or not self._complete(supervisor):
            raise _violation(
                Code.EMERGENCY_OFFICER_MISSING, "supervisor: give name, badge and contact"
            )
        if _normalise(officer.badge) == _normalise(supervisor.badge) or _normalise(
            officer.name
        ) == _normalise(supervisor.name):
            raise _violation(
                Code.EMERGENCY_SUPERVISOR_NOT_INDEPENDENT,
                "the supervisor must be another officer than the one certifying",
            )


class FollowUpDue:
    """The follow-up legal process (a warrant for what was disclosed) is due after now and
    within ``max_delay``; the transparency report flags it when it never arrives."""

    codes: ClassVar[tuple[Code, ...]] = (
        Code.EMERGENCY_FOLLOWUP_MISSING,
        Code.EMERGENCY_FOLLOWUP_OUT_OF_RANGE,
    )

    def __init__(self, *, max_delay: timedelta) -> None:
        if max_delay <= timedelta(0):
            raise ValueError("max_delay must be positive")
        self.max_delay = max_delay

    def check(self, request: EmergencyRequest, ctx: PolicyContext) -> None:
        due = request.followup_due
        if due is None:
            raise _violation(
                Code.EMERGENCY_FOLLOWUP_MISSING,
                "give followup_due: when the follow-up legal process will be filed",
            )
        if due <= ctx.now or due - ctx.now > self.max_delay:
            raise _violation(
                Code.EMERGENCY_FOLLOWUP_OUT_OF_RANGE,
                f"followup_due must fall within {_hours(self.max_delay)} after now",
            )


# --- preservation ---------------------------------------------------------------------------


class PreservationNoContent:
    """A preservation pins clips; it releases nothing, so it names no recipient."""

    codes: ClassVar[tuple[Code, ...]] = (Code.PRESERVATION_NO_CONTENT,)

    def check(self, request: PreservationRequest, ctx: PolicyContext) -> None:
        if request.recipient is not None:
            raise _violation(
                Code.PRESERVATION_NO_CONTENT,
                "a preservation releases no footage: remove the recipient; content needs a warrant",
            )


class PreservationHold:
    """The hold asked for is at most ``max_hold``."""

    codes: ClassVar[tuple[Code, ...]] = (Code.PRESERVATION_TOO_LONG,)

    def __init__(self, *, max_hold: timedelta) -> None:
        if max_hold <= timedelta(0):
            raise ValueError("max_hold must be positive")
        self.max_hold = max_hold

    def check(self, request: PreservationRequest, ctx: PolicyContext) -> None:
        if request.hold_days is not None and timedelta(days=request.hold_days) > self.max_hold:
            raise _violation(
                Code.PRESERVATION_TOO_LONG,
                f"a preservation holds at most {self.max_hold.days} days; renew it once instead",
            )


class PreservationRenewal:
    """A renewal names this agency's live preservation, renews it at most ``max_renewals``
    times in its chain, and does not widen its devices or window."""

    codes: ClassVar[tuple[Code, ...]] = (
        Code.PRESERVATION_RENEWAL_UNKNOWN,
        Code.PRESERVATION_RENEWAL_LIMIT,
        Code.PRESERVATION_RENEWAL_LAPSED,
        Code.PRESERVATION_RENEWAL_MISMATCH,
    )

    def __init__(self, *, max_renewals: int) -> None:
        if max_renewals < 0:
            raise ValueError("max_renewals must not be negative")
        self.max_renewals = max_renewals

    def check(self, request: PreservationRequest, ctx: PolicyContext) -> None:
        if request.renews is None:
            return
        earlier = ctx.preservations.get(request.renews)
        if earlier is None or earlier.requester != ctx.requester:
            raise _violation(
                Code.PRESERVATION_RENEWAL_UNKNOWN,
                f"no preservation {request.renews!r:.80} of yours to renew",
            )
        renewals_before = 0  # how many renewals the chain up to `earlier` already holds
        cursor, visited = earlier, {earlier.preservation_id}
        while cursor.renewal_of is not None:
            renewals_before += 1
            parent = ctx.preservations.get(cursor.renewal_of)
            if parent is None or parent.preservation_id in visited:
                break
            visited.add(parent.preservation_id)
            cursor = parent
        already = any(p.renewal_of == earlier.preservation_id for p in ctx.preservations.values())
        if already or renewals_before + 1 > self.max_renewals:
            raise _violation(
                Code.PRESERVATION_RENEWAL_LIMIT,
                f"a preservation may be renewed {self.max_renewals} time(s); this one has been",
            )
        if earlier.hold_until <= ctx.now:
            raise _violation(
                Code.PRESERVATION_RENEWAL_LAPSED,
                "the preservation lapsed before this renewal; ask for a new one",
            )
        devices, window = request.device_ids, request.window
        if (
            devices is None
            or window is None
            or not set(devices) <= earlier.device_ids
            or window.start < earlier.window_start
            or window.end > earlier.window_end
        ):
            raise _violation(
                Code.PRESERVATION_RENEWAL_MISMATCH,
                "a renewal keeps the devices and window of the preservation it renews "
                "(or narrows them)",
            )


# --- voluntary ------------------------------------------------------------------------------


class RefuseVoluntary:
    """Voluntary requests ("Request for Assistance") are always refused."""

    codes: ClassVar[tuple[Code, ...]] = (Code.VOLUNTARY_REQUESTS_DISCONTINUED,)

    def check(self, request: VoluntaryRequest, ctx: PolicyContext) -> None:
        raise _violation(
            Code.VOLUNTARY_REQUESTS_DISCONTINUED,
            "voluntary requests for footage (the 'Request for Assistance' model) are refused: "
            "ask the owner, or bring a warrant or a proven emergency",
        )
