"""The rules of docs/policy.md for a ``warrant``-basis request (a court's search warrant),
each a small object with one ``check``. Rules never read the clock or a file: ``ctx.now``
is the time, ``ctx.courts`` the court registry.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import ClassVar

from cloud_stub.policy.base import PolicyContext
from cloud_stub.policy.codes import Code
from cloud_stub.policy.courts import WarrantStatement, verify_warrant_signature
from cloud_stub.policy.requests import OrderType, WarrantRequest
from cloud_stub.policy.rule_helpers import violation

_SHA256_RE = re.compile(r"[0-9a-f]{64}")
_IMPLAUSIBLE_SHA256 = frozenset(
    {
        "0" * 64,
        "f" * 64,
        # sha256 of zero bytes: a warrant document is never empty
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    }
)


# --- warrant --------------------------------------------------------------------------------


class OrderTypeGivesContent:
    """Only a search warrant reaches content; subpoenas and other orders do not."""

    codes: ClassVar[tuple[Code, ...]] = (Code.WARRANT_FIELD_MISSING, Code.ORDER_TYPE_NO_CONTENT)

    def check(self, request: WarrantRequest, ctx: PolicyContext) -> None:
        if request.order_type is None:
            raise violation(Code.WARRANT_FIELD_MISSING, "give the order_type (search_warrant)")
        if request.order_type is not OrderType.SEARCH_WARRANT:
            raise violation(
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
            raise violation(Code.WARRANT_FIELD_MISSING, "give the warrant's issued and expires")
        if issued > ctx.now:
            raise violation(Code.WARRANT_ISSUED_IN_FUTURE, "the warrant is issued after now")
        if expires <= issued:
            raise violation(
                Code.WARRANT_EXPIRY_BEFORE_ISSUE, "the warrant expires at or before its issue"
            )
        if expires - issued > self.max_validity:
            raise violation(
                Code.WARRANT_VALIDITY_TOO_LONG,
                f"a warrant is valid at most {self.max_validity.days} days after issue",
            )
        if expires <= ctx.now:
            raise violation(
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
            raise violation(
                Code.WARRANT_DOCUMENT_HASH_INVALID,
                "document_sha256 must be the 64 lowercase hex sha256 of the warrant document",
            )
        if digest in _IMPLAUSIBLE_SHA256:
            raise violation(
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
            raise violation(Code.NOTICE_DELAY_INVALID, "notify_after must be after the issue")
        if notify_after - issued > self.max_delay:
            raise violation(
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
            raise violation(Code.WARRANT_FIELD_MISSING, "give the court_signature")
        verify_warrant_signature(statement, request.court_signature, ctx.courts)
