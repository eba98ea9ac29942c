"""The one vocabulary of a request's and a token's states (docs/states-and-codes.md).

Both are `StrEnum`s: a member is the very string the store keeps and the API and the
CLI show, so a row's ``status`` compares equal to its member and serializes unchanged.
The groups below are the ones the evidence endpoint, the device results, re-issuing and
re-delivery judge by; `request_after_result` is what a device's result does to its
request. Nothing here reads the store or the clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType


class RequestStatus(StrEnum):
    """Where a request stands. The first four are decided by the legal check and the
    review (`cloud_stub.domain.review_rules`); the rest by release and the device."""

    REFUSED = "refused"  # the policy engine refused it: terminal
    PENDING_REVIEW = "pending_review"
    DENIED = "denied"  # a reviewer denied it: terminal
    APPROVED = "approved"  # approvals are in; signing follows in the same transaction
    RELEASED = "released"  # tokens issued and handed to the broker
    NO_FOOTAGE = "no_footage"  # approved, but no escrowed epoch overlaps the window
    EVIDENCE_RECEIVED = "evidence_received"  # a signed manifest was accepted
    UPLOADED = "uploaded"  # the device reported the upload complete
    REJECTED = "rejected"  # the device refused the token (with its code)
    DEFERRED = "deferred"  # the device deferred it (clock not synchronized)
    PRESERVED = "preserved"  # the device pinned the clips (preservation)


class TokenStatus(StrEnum):
    """A token row's ``status``."""

    # trust root v2 (`cloud_stub.services.signed_review`): a payload waiting for the
    # reviewers' signatures, and one that will never be signed (denied, refused)
    PREPARED = "prepared"
    DISCARDED = "discarded"
    ISSUED = "issued"  # signed and stored, not yet taken by the broker
    PUBLISHED = "published"  # the broker acknowledged the QoS 1 publish; no result yet
    # device results (`cloud_stub.services.device_events`)
    DEFERRED = "deferred"  # the device holds it until its clock can judge it
    UPLOADED = "uploaded"
    PRESERVED = "preserved"
    REJECTED = "rejected"
    EVIDENCE_RECEIVED = "evidence_received"  # the cloud accepted its manifest
    SUPERSEDED = "superseded"  # refused by the device, and re-issued as a new token


# token rows that no device may act under
UNISSUED = (TokenStatus.PREPARED, TokenStatus.DISCARDED)
# the only token status that is re-published (`cloud_stub.domain.redelivery_policy`)
AWAITING_RESULT = TokenStatus.PUBLISHED
# a manifest was accepted: the evidence is closed
EVIDENCE_ACCEPTED = (TokenStatus.EVIDENCE_RECEIVED, TokenStatus.UPLOADED)
# the device refused it (no manifest), or a reviewer re-issued it after that refusal
# (`cloud_stub.services.reissuing`): nothing may be uploaded under it
REFUSED_BY_DEVICE = (TokenStatus.REJECTED, TokenStatus.SUPERSEDED)
# the device has acted on it: a late `deferred` (its outbox re-sends unacknowledged
# results, so order can vary) does not take it back
ACTED_ON = (*EVIDENCE_ACCEPTED, TokenStatus.REJECTED, TokenStatus.PRESERVED)

# what a device may report of a token (the MQTT ``result`` topic)
DEVICE_RESULTS = (
    TokenStatus.UPLOADED, TokenStatus.REJECTED, TokenStatus.DEFERRED, TokenStatus.PRESERVED,
)
_REQUEST_AFTER_RESULT: Mapping[str, RequestStatus] = MappingProxyType({
    TokenStatus.UPLOADED: RequestStatus.UPLOADED,
    TokenStatus.REJECTED: RequestStatus.REJECTED,
    TokenStatus.DEFERRED: RequestStatus.DEFERRED,
    TokenStatus.PRESERVED: RequestStatus.PRESERVED,
})
# a request a device result has settled: a later result leaves it as it is
SETTLED_BY_DEVICE = (RequestStatus.UPLOADED, RequestStatus.REJECTED, RequestStatus.PRESERVED)


def request_after_result(current: str, result: str) -> RequestStatus | None:
    """The request's new status once a device reported `result` (one of
    `DEVICE_RESULTS`) on one of its tokens, or None when it stays `current`: it was
    settled already, or a ``deferred`` arrives after its evidence was received."""
    if current in SETTLED_BY_DEVICE:
        return None
    if result == TokenStatus.DEFERRED and current == RequestStatus.EVIDENCE_RECEIVED:
        return None
    return _REQUEST_AFTER_RESULT[result]
