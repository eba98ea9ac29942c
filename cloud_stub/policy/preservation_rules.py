"""The rules of docs/policy.md for a ``preservation``-basis request (clips pinned, no
content released) and the refusal of every ``voluntary`` request, each a small object
with one ``check``. Rules never read the clock or a file: ``ctx.now`` is the time.
"""

from __future__ import annotations

from datetime import timedelta
from typing import ClassVar

from cloud_stub.policy.base import PolicyContext
from cloud_stub.policy.codes import Code
from cloud_stub.policy.requests import PreservationRequest, VoluntaryRequest
from cloud_stub.policy.rule_helpers import violation

# --- preservation ---------------------------------------------------------------------------


class PreservationNoContent:
    """A preservation pins clips; it releases nothing, so it names no recipient."""

    codes: ClassVar[tuple[Code, ...]] = (Code.PRESERVATION_NO_CONTENT,)

    def check(self, request: PreservationRequest, ctx: PolicyContext) -> None:
        if request.recipient is not None:
            raise violation(
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
            raise violation(
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
            raise violation(
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
            raise violation(
                Code.PRESERVATION_RENEWAL_LIMIT,
                f"a preservation may be renewed {self.max_renewals} time(s); this one has been",
            )
        if earlier.hold_until <= ctx.now:
            raise violation(
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
            raise violation(
                Code.PRESERVATION_RENEWAL_MISMATCH,
                "a renewal keeps the devices and window of the preservation it renews "
                "(or narrows them)",
            )


# --- voluntary ------------------------------------------------------------------------------


class RefuseVoluntary:
    """Voluntary requests ("Request for Assistance") are always refused."""

    codes: ClassVar[tuple[Code, ...]] = (Code.VOLUNTARY_REQUESTS_DISCONTINUED,)

    def check(self, request: VoluntaryRequest, ctx: PolicyContext) -> None:
        raise violation(
            Code.VOLUNTARY_REQUESTS_DISCONTINUED,
            "voluntary requests for footage (the 'Request for Assistance' model) are refused: "
            "ask the owner, or bring a warrant or a proven emergency",
        )
