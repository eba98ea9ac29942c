"""The shape of a legal check: small policy objects with one method, composed.

A `Policy` has one method, ``check(request, ctx) -> None``, which returns when the
request passes and raises `PolicyViolation` (a stable `Code` and a human reason) when it
does not. Limits are bound into each rule when it is built (keyword-only constructors),
so a rule cannot be evaluated against other limits than the ones it announces; the
`PolicyContext` carries only the facts of this evaluation: the clock, the court
registry, who is asking, and the earlier preservations (to count renewals).

`AllOf` runs its children in order and raises the first violation (the order is the
documented order: presence before plausibility before cryptography). An empty `AllOf`
is an error at construction: a policy that checks nothing must not pass everything.
`ForBasis` dispatches on the request's basis and has a policy for every basis.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Generic, Protocol, TypeVar

from cloud_stub.policy.codes import Code
from cloud_stub.policy.courts import Court
from cloud_stub.policy.errors import PolicyViolation
from cloud_stub.policy.requests import (
    AnyRequest,
    EmergencyRequest,
    PreservationRequest,
    VoluntaryRequest,
    WarrantRequest,
)

__all__ = [
    "AllOf",
    "ForBasis",
    "Policy",
    "PolicyContext",
    "PolicyViolation",
    "PreservationRecord",
]

RequestT_contra = TypeVar("RequestT_contra", contravariant=True)
RequestT = TypeVar("RequestT")


@dataclass(frozen=True, slots=True)
class PreservationRecord:
    """An accepted preservation, as the service stores it (for renewal checks)."""

    preservation_id: str
    requester: str  # the authenticated agency that asked
    device_ids: frozenset[str]
    window_start: datetime
    window_end: datetime
    hold_until: datetime
    renewal_of: str | None = None  # the preservation this one renewed


def _empty_preservations() -> Mapping[str, PreservationRecord]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class PolicyContext:
    """The facts one evaluation needs, passed in (nothing is read from the system).

    ``now`` must be timezone-aware (ValueError otherwise). ``requester`` is the
    authenticated agency (the API principal's organisation), not the self-declared
    ``agency`` field of the body. ``preservations`` maps preservation id to record; the
    service may pass only this requester's records.
    """

    now: datetime
    courts: Mapping[str, Court]
    requester: str
    preservations: Mapping[str, PreservationRecord] = field(default_factory=_empty_preservations)

    def __post_init__(self) -> None:
        if self.now.tzinfo is None or self.now.utcoffset() is None:
            raise ValueError("PolicyContext.now must be an aware datetime")


class Policy(Protocol[RequestT_contra]):
    """One legal rule (or a composition of rules)."""

    def check(self, request: RequestT_contra, ctx: PolicyContext) -> None:
        """Return if the request passes; raise `PolicyViolation` if it does not."""
        ...


class AllOf(Generic[RequestT]):
    """Every child must pass; the first violation (in order) is raised.

    Raises ValueError at construction when given no policies.
    """

    __slots__ = ("children",)

    def __init__(self, children: Sequence[Policy[RequestT]]) -> None:
        if not children:
            raise ValueError("AllOf needs at least one policy: an empty check would pass all")
        self.children: tuple[Policy[RequestT], ...] = tuple(children)

    def check(self, request: RequestT, ctx: PolicyContext) -> None:
        for child in self.children:
            child.check(request, ctx)

    def __repr__(self) -> str:
        return f"AllOf({list(self.children)!r})"


class ForBasis:
    """Dispatch on the basis: each of the four bases has its own policy (keyword-only)."""

    __slots__ = ("emergency", "preservation", "voluntary", "warrant")

    def __init__(
        self,
        *,
        warrant: Policy[WarrantRequest],
        emergency: Policy[EmergencyRequest],
        preservation: Policy[PreservationRequest],
        voluntary: Policy[VoluntaryRequest],
    ) -> None:
        self.warrant = warrant
        self.emergency = emergency
        self.preservation = preservation
        self.voluntary = voluntary

    def check(self, request: AnyRequest, ctx: PolicyContext) -> None:
        """Raises `PolicyViolation` from the basis's policy, or ``basis_unsupported``
        for an object that is none of the four request models."""
        if isinstance(request, WarrantRequest):
            self.warrant.check(request, ctx)
        elif isinstance(request, EmergencyRequest):
            self.emergency.check(request, ctx)
        elif isinstance(request, PreservationRequest):
            self.preservation.check(request, ctx)
        elif isinstance(request, VoluntaryRequest):
            self.voluntary.check(request, ctx)
        else:
            raise PolicyViolation(
                Code.BASIS_UNSUPPORTED, f"no policy for a {type(request).__name__}"
            )
