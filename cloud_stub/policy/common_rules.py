"""The rules of docs/policy.md that every basis shares (fields present, named devices,
a bounded window, the recipient, the token lifetime), each a small object with one
``check``. `cloud_stub.policy.rules` lists every rule.

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
from cloud_stub.policy.requests import (
    ContentRequest,
    ScopedRequest,
)
from cloud_stub.policy.rule_helpers import in_hours, is_blank, violation
from cloud_stub.provision.names import DEVICE_ID

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
        missing = [f for f in self.fields if is_blank(getattr(request, f, None))]
        if missing:
            raise violation(self.code, f"{self.what}: missing or blank: {', '.join(missing)}")


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
            raise violation(Code.DEVICE_NOT_NAMED, "name at least one device by its id")
        for entry in devices:
            if self.is_wildcard(entry):
                raise violation(
                    Code.PARTICULARITY_WILDCARD,
                    f"{entry!r:.80} is not a device: name each device by id "
                    "(no wildcards, 'all devices' or areas)",
                )
        for entry in devices:
            if DEVICE_ID.fullmatch(entry) is None:  # exactly what enrolment allows
                raise violation(Code.DEVICE_ID_INVALID, f"{entry!r:.80} is not a device id")
        if len(set(devices)) != len(devices):
            raise violation(Code.DEVICE_ID_INVALID, "a device is named more than once")
        if len(devices) > self.max_devices:
            raise violation(
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
            raise violation(Code.WINDOW_MISSING, "give the window of footage: start and end")
        if window.end <= window.start:
            raise violation(Code.WINDOW_INVERTED, "the window must end after it starts")
        length = window.end - window.start
        if length > self.max_length:
            raise violation(
                Code.WINDOW_TOO_LONG,
                f"the window is {in_hours(length)}; a {request.basis} request may ask for at "
                f"most {in_hours(self.max_length)}",
            )
        if window.end > ctx.now:
            raise violation(
                Code.WINDOW_IN_FUTURE,
                "the window ends after now: only footage that already exists can be asked for",
            )


class RecipientValid:
    """Content is sealed to the requester's age X25519 recipient, which must parse."""

    codes: ClassVar[tuple[Code, ...]] = (Code.RECIPIENT_MISSING, Code.RECIPIENT_INVALID)

    def check(self, request: ContentRequest, ctx: PolicyContext) -> None:
        recipient = request.recipient
        if recipient is None or not recipient.strip():
            raise violation(Code.RECIPIENT_MISSING, "give the age recipient (age1...) to seal to")
        if not recipient.startswith("age1") or recipient != recipient.lower():
            raise violation(Code.RECIPIENT_INVALID, "the recipient must be a lowercase age1...")
        try:
            pyrage.x25519.Recipient.from_str(recipient)
        except pyrage.RecipientError as exc:
            raise violation(
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
            raise violation(
                Code.TOKEN_LIFETIME_TOO_LONG,
                f"a {request.basis} token lives at most {int(self.max_lifetime.total_seconds())}"
                f" s; {asked} s was asked",
            )
