"""What an agency POSTs to ``/v1/requests``: closed models, discriminated on ``basis``.

These models check shape only: types, sizes, printable text, timezone-aware instants in
a sane range. A body that fails them raises pydantic's `ValidationError` (HTTP 422).
Whether the request is *lawful* (fields present, dates plausible, the court's signature,
particularity, window limits...) is the policy's job: most legal fields are optional
here so that their absence is answered with a stable policy code instead of a bare
schema error. Every instant is normalised to UTC.

``voluntary`` (also spelled ``request_for_assistance``) is accepted by the schema only so
that it can be refused with ``voluntary_requests_discontinued``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
)

from protocol import text as text_rule

MAX_DEVICES_IN_BODY = 64  # schema cap; the policy's per-basis cap is far lower
DEFAULT_HOLD_DAYS = 90  # a preservation without `hold_days` is held this long
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)


def _single_line(value: str) -> str:
    """One line of text under the one text rule (protocol/text.py)."""
    char = text_rule.refused(value)
    if char is not None:
        raise ValueError(f"must be one line of printable text (found U+{ord(char):04X})")
    return value


def _narrative(value: str) -> str:
    """Text that may span lines (``\\n``, ``\\t``) under the one text rule."""
    char = text_rule.refused(value, multiline=True)
    if char is not None:
        raise ValueError(f"must be printable text (found U+{ord(char):04X})")
    return value


def _utc_in_range(value: datetime) -> datetime:
    try:
        utc = value.astimezone(UTC)
    except OverflowError as exc:
        raise ValueError("instant out of range") from exc
    if not EARLIEST <= utc < LATEST:
        raise ValueError(f"instant must lie between {EARLIEST.year} and {LATEST.year}")
    return utc


Identifier = Annotated[str, StringConstraints(max_length=128), AfterValidator(_single_line)]
"""Device ids, court ids, docket and case numbers, badge numbers, hashes."""
Name = Annotated[str, StringConstraints(max_length=200), AfterValidator(_single_line)]
"""People, agencies, contact details."""
Narrative = Annotated[str, StringConstraints(max_length=4000), AfterValidator(_narrative)]
"""Free text justifications (may span lines)."""
Recipient = Annotated[str, StringConstraints(max_length=256), AfterValidator(_single_line)]
Signature = Annotated[str, StringConstraints(max_length=512), AfterValidator(_single_line)]
Instant = Annotated[AwareDatetime, AfterValidator(_utc_in_range)]
"""An RFC 3339 instant with an offset; stored as UTC."""
DeviceIds = Annotated[list[Identifier], Field(max_length=MAX_DEVICES_IN_BODY)]
TokenLifetime = Annotated[int, Field(strict=True, ge=1, le=30 * 86400)]  # seconds


class Basis(StrEnum):
    WARRANT = "warrant"
    EMERGENCY = "emergency"
    PRESERVATION = "preservation"
    VOLUNTARY = "voluntary"


class OrderType(StrEnum):
    """The kind of legal process behind a ``warrant``-basis request.

    Only a search warrant reaches content; the others are named so that they can be
    refused with ``order_type_no_content`` (docs/policy.md).
    """

    SEARCH_WARRANT = "search_warrant"
    SUBPOENA = "subpoena"
    COURT_ORDER = "court_order"  # e.g. an 18 U.S.C. 2703(d) order
    PEN_REGISTER = "pen_register"
    OTHER = "other"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Window(_Model):
    """The footage asked for: ``start`` inclusive, ``end`` exclusive, UTC."""

    start: Instant
    end: Instant


class Officer(_Model):
    """A sworn officer named on an emergency request."""

    name: Name
    badge: Identifier
    title: Name | None = None
    contact: Name


class _AgencyFields(_Model):
    agency: Name | None = None
    investigator: Name | None = None
    contact: Name | None = None
    agency_case_number: Identifier | None = None


class WarrantRequest(_AgencyFields):
    """Footage under a court's search warrant.

    The court signs the canonical warrant statement (`courts.WarrantStatement`) built
    from ``court_id`` ... ``notify_after``, ``device_ids`` and ``window``; changing any
    of them after signing breaks ``court_signature``.
    """

    basis: Literal["warrant"]
    order_type: OrderType | None = None
    court_id: Identifier | None = None
    judge: Name | None = None
    docket: Identifier | None = None
    issued: Instant | None = None
    expires: Instant | None = None
    document_sha256: Identifier | None = None
    court_signature: Signature | None = None
    notify_after: Instant | None = None  # delayed owner notice under a non-disclosure order
    device_ids: DeviceIds | None = None
    window: Window | None = None
    recipient: Recipient | None = None
    token_lifetime_s: TokenLifetime | None = None


class EmergencyRequest(_AgencyFields):
    """Footage without a warrant because someone is in danger of death or serious injury now."""

    basis: Literal["emergency"]
    danger: Narrative | None = None  # the danger of death or serious physical injury
    persons_at_risk: Narrative | None = None
    why_ongoing: Narrative | None = None  # why it is ongoing now, why a warrant cannot wait
    device_relevance: Narrative | None = None  # how this device and window relate to it
    certifying_officer: Officer | None = None
    supervisor: Officer | None = None
    device_ids: DeviceIds | None = None
    window: Window | None = None
    recipient: Recipient | None = None
    followup_due: Instant | None = None  # when the follow-up legal process will be filed
    token_lifetime_s: TokenLifetime | None = None


class PreservationRequest(_AgencyFields):
    """Pin clips against retention (18 U.S.C. 2703(f) style): no content is released."""

    basis: Literal["preservation"]
    device_ids: DeviceIds | None = None
    window: Window | None = None
    hold_days: Annotated[int, Field(strict=True, ge=1, le=3650)] | None = None  # default: the limit
    renews: Identifier | None = None  # id of an earlier preservation being renewed
    recipient: Recipient | None = None  # accepted only to be refused: no content


class VoluntaryRequest(_AgencyFields):
    """A voluntary request ("Request for Assistance"): always refused."""

    basis: Literal["voluntary", "request_for_assistance"]
    device_ids: DeviceIds | None = None
    window: Window | None = None
    recipient: Recipient | None = None
    message: Narrative | None = None


class FollowUpWarrant(_Model):
    """The follow-up legal process an agency files after an emergency disclosure: a
    search warrant for what was disclosed. The court signs the warrant statement built
    from these fields and the emergency request's own devices and window
    (`FollowUpWarrant.as_warrant`); docs/policy.md, "The follow-up of an emergency"."""

    court_id: Identifier
    docket: Identifier
    document_sha256: Identifier
    order_type: OrderType | None = None
    judge: Name | None = None
    issued: Instant | None = None
    expires: Instant | None = None
    court_signature: Signature | None = None

    def as_warrant(self, device_ids: list[str], window: Window) -> WarrantRequest:
        """The warrant request these fields make for the disclosed devices and window."""
        return WarrantRequest(basis="warrant", device_ids=device_ids, window=window,
                              **self.model_dump(exclude_none=True))


AnyRequest = WarrantRequest | EmergencyRequest | PreservationRequest | VoluntaryRequest
"""Any validated request (the type a policy checks)."""
AgencyRequest = Annotated[AnyRequest, Field(discriminator="basis")]
"""The body schema: `AnyRequest` discriminated on ``basis``."""
ContentRequest = WarrantRequest | EmergencyRequest
ScopedRequest = WarrantRequest | EmergencyRequest | PreservationRequest
"""Requests that name devices and a window."""

REQUEST_ADAPTER: TypeAdapter[AnyRequest] = TypeAdapter(AgencyRequest)


def parse_request(data: Any) -> AnyRequest:
    """Validate a decoded JSON body. Raises pydantic `ValidationError` on a bad shape."""
    return REQUEST_ADAPTER.validate_python(data)


def parse_request_json(body: bytes | str) -> AnyRequest:
    """Validate a raw JSON body. Raises pydantic `ValidationError` (also for bad JSON)."""
    return REQUEST_ADAPTER.validate_json(body)


def basis_of(request: AnyRequest) -> Basis:
    """The basis as one of four values (``request_for_assistance`` is ``voluntary``)."""
    if isinstance(request, WarrantRequest):
        return Basis.WARRANT
    if isinstance(request, EmergencyRequest):
        return Basis.EMERGENCY
    if isinstance(request, PreservationRequest):
        return Basis.PRESERVATION
    return Basis.VOLUNTARY
