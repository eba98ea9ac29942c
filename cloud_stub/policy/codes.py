"""Every code the legal check can answer with, in one place.

A code is stable (agencies, the review queue, the transparency report and the tests key
on it); the human reason that travels with it may change wording freely. `DESCRIPTIONS`
says in one line what each code means; docs/policy.md lists them with their limits.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType


class Code(StrEnum):
    """A machine-readable reason for refusing a request."""

    # Any basis
    BASIS_UNSUPPORTED = "basis_unsupported"
    AGENCY_DETAILS_MISSING = "agency_details_missing"
    DEVICE_NOT_NAMED = "device_not_named"
    PARTICULARITY_WILDCARD = "particularity_wildcard"
    DEVICE_ID_INVALID = "device_id_invalid"
    TOO_MANY_DEVICES = "too_many_devices"
    WINDOW_MISSING = "window_missing"
    WINDOW_INVERTED = "window_inverted"
    WINDOW_TOO_LONG = "window_too_long"
    WINDOW_IN_FUTURE = "window_in_future"
    RECIPIENT_MISSING = "recipient_missing"
    RECIPIENT_INVALID = "recipient_invalid"
    TOKEN_LIFETIME_TOO_LONG = "token_lifetime_too_long"  # noqa: S105 - a code, not a secret
    # Warrant
    WARRANT_FIELD_MISSING = "warrant_field_missing"
    ORDER_TYPE_NO_CONTENT = "order_type_no_content"
    WARRANT_ISSUED_IN_FUTURE = "warrant_issued_in_future"
    WARRANT_EXPIRED = "warrant_expired"
    WARRANT_EXPIRY_BEFORE_ISSUE = "warrant_expiry_before_issue"
    WARRANT_VALIDITY_TOO_LONG = "warrant_validity_too_long"
    WARRANT_DOCUMENT_HASH_INVALID = "warrant_document_hash_invalid"
    COURT_UNKNOWN = "court_unknown"
    COURT_SIGNATURE_INVALID = "court_signature_invalid"
    NOTICE_DELAY_INVALID = "notice_delay_invalid"
    # Emergency
    EMERGENCY_JUSTIFICATION_MISSING = "emergency_justification_missing"
    EMERGENCY_JUSTIFICATION_INSUFFICIENT = "emergency_justification_insufficient"
    EMERGENCY_OFFICER_MISSING = "emergency_officer_missing"
    EMERGENCY_SUPERVISOR_NOT_INDEPENDENT = "emergency_supervisor_not_independent"
    EMERGENCY_FOLLOWUP_MISSING = "emergency_followup_missing"
    EMERGENCY_FOLLOWUP_OUT_OF_RANGE = "emergency_followup_out_of_range"
    # Preservation
    PRESERVATION_NO_CONTENT = "preservation_no_content"
    PRESERVATION_TOO_LONG = "preservation_too_long"
    PRESERVATION_RENEWAL_UNKNOWN = "preservation_renewal_unknown"
    PRESERVATION_RENEWAL_LIMIT = "preservation_renewal_limit"
    PRESERVATION_RENEWAL_MISMATCH = "preservation_renewal_mismatch"
    PRESERVATION_RENEWAL_LAPSED = "preservation_renewal_lapsed"
    # Voluntary
    VOLUNTARY_REQUESTS_DISCONTINUED = "voluntary_requests_discontinued"


DESCRIPTIONS: Mapping[Code, str] = MappingProxyType(
    {
        Code.BASIS_UNSUPPORTED: "no policy handles this request's basis",
        Code.AGENCY_DETAILS_MISSING: "agency, investigator, contact or agency case number absent",
        Code.DEVICE_NOT_NAMED: "the request names no device",
        Code.PARTICULARITY_WILDCARD: "a device entry is a wildcard, 'all devices' or an area",
        Code.DEVICE_ID_INVALID: "a device id is malformed or named twice",
        Code.TOO_MANY_DEVICES: "more devices than the basis allows in one request",
        Code.WINDOW_MISSING: "the request has no time window",
        Code.WINDOW_INVERTED: "the window ends at or before its start",
        Code.WINDOW_TOO_LONG: "the window is longer than the basis allows",
        Code.WINDOW_IN_FUTURE: "the window ends after now (footage that does not exist yet)",
        Code.RECIPIENT_MISSING: "no age recipient to seal the evidence to",
        Code.RECIPIENT_INVALID: "the recipient is not an age X25519 recipient (age1...)",
        Code.TOKEN_LIFETIME_TOO_LONG: "the requested token lifetime exceeds the basis limit",
        Code.WARRANT_FIELD_MISSING: "a warrant field (court, judge, docket, dates...) is absent",
        Code.ORDER_TYPE_NO_CONTENT: "subpoenas and orders other than a search warrant: no content",
        Code.WARRANT_ISSUED_IN_FUTURE: "the warrant's issue date is after now",
        Code.WARRANT_EXPIRED: "the warrant expired at or before now",
        Code.WARRANT_EXPIRY_BEFORE_ISSUE: "the warrant expires at or before its issue date",
        Code.WARRANT_VALIDITY_TOO_LONG: "the warrant's validity is longer than the limit",
        Code.WARRANT_DOCUMENT_HASH_INVALID: "document_sha256 is not 64 lowercase hex digits",
        Code.COURT_UNKNOWN: "the court is not in the court registry",
        Code.COURT_SIGNATURE_INVALID: "the court's signature does not verify over the statement",
        Code.NOTICE_DELAY_INVALID: "the delayed-notice date is before issue or past the limit",
        Code.EMERGENCY_JUSTIFICATION_MISSING: "an emergency justification field is absent or blank",
        Code.EMERGENCY_JUSTIFICATION_INSUFFICIENT: "a justification is too short, a placeholder "
        "or a copy of another field",
        Code.EMERGENCY_OFFICER_MISSING: "the certifying officer or the supervisor is absent",
        Code.EMERGENCY_SUPERVISOR_NOT_INDEPENDENT: "the supervisor is the certifying officer",
        Code.EMERGENCY_FOLLOWUP_MISSING: "no due date for the follow-up legal process",
        Code.EMERGENCY_FOLLOWUP_OUT_OF_RANGE: "the follow-up is due in the past or too late",
        Code.PRESERVATION_NO_CONTENT: "a preservation releases nothing: it takes no recipient",
        Code.PRESERVATION_TOO_LONG: "the hold is longer than the limit (90 days)",
        Code.PRESERVATION_RENEWAL_UNKNOWN: "no preservation of this agency has that id",
        Code.PRESERVATION_RENEWAL_LIMIT: "the preservation was already renewed the allowed times",
        Code.PRESERVATION_RENEWAL_MISMATCH: "the renewal widens the devices or window",
        Code.PRESERVATION_RENEWAL_LAPSED: "the preservation to renew has already lapsed",
        Code.VOLUNTARY_REQUESTS_DISCONTINUED: "voluntary requests (Request for Assistance) "
        "are refused",
    }
)
