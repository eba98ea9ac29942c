"""Every rule of the legal check with its own result, for a reviewer to read.

The policy the intake uses (`Intake.policy`) is an `AllOf` of small rules per basis
(`cloud_stub.policy.config`). `explain` walks that same tree and runs each leaf rule's
own ``check`` under the same `PolicyContext` the intake's re-check uses, so the page
shows the law the service applies, not a copy of it: where the service stops at the
first violation, the page shows every rule's verdict. Court signatures are verified by
`court_verdict` through `verify_warrant_signature`, the intake's own check.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cloud_stub.policy import (
    AllOf,
    AnyRequest,
    ForBasis,
    PolicyContext,
    PolicyViolation,
    WarrantRequest,
    WarrantStatement,
    verify_warrant_signature,
)
from cloud_stub.policy.requests import EmergencyRequest, PreservationRequest, VoluntaryRequest


@dataclass(frozen=True, slots=True)
class RuleResult:
    """One rule: its name, what it checks, the codes it can answer, and its verdict now."""

    name: str
    summary: str
    codes: tuple[str, ...]
    passed: bool
    code: str | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class CourtVerdict:
    """Whether a court of the registry signed the warrant statement the request carries."""

    verified: bool
    court: str | None
    code: str | None
    reason: str
    statement: dict[str, Any] | None


def _leaves(policy: object, request: AnyRequest) -> list[object]:
    if isinstance(policy, ForBasis):
        chosen: object
        if isinstance(request, WarrantRequest):
            chosen = policy.warrant
        elif isinstance(request, EmergencyRequest):
            chosen = policy.emergency
        elif isinstance(request, PreservationRequest):
            chosen = policy.preservation
        elif isinstance(request, VoluntaryRequest):
            chosen = policy.voluntary
        else:
            return [policy]
        return _leaves(chosen, request)
    if isinstance(policy, AllOf):
        return [leaf for child in policy.children for leaf in _leaves(child, request)]
    return [policy]


def _summary(rule: object) -> str:
    doc = type(rule).__doc__ or ""
    first = " ".join(doc.strip().split("\n\n")[0].split()).replace("``", "")
    what = getattr(rule, "what", None)
    return f"{first} ({what})" if isinstance(what, str) else first


def explain(policy: object, request: AnyRequest, ctx: PolicyContext) -> list[RuleResult]:
    """Each leaf rule of `policy` for this request's basis, run on its own at ``ctx.now``."""
    out = []
    for rule in _leaves(policy, request):
        codes = tuple(str(c) for c in getattr(rule, "codes", ()))
        name, summary = type(rule).__name__, _summary(rule)
        try:
            rule.check(request, ctx)  # type: ignore[attr-defined]
        except PolicyViolation as violation:
            out.append(RuleResult(name, summary, codes, False, str(violation.code),
                                  violation.reason))
        else:
            out.append(RuleResult(name, summary, codes, True))
    return out


def court_verdict(request: AnyRequest, ctx: PolicyContext) -> CourtVerdict | None:
    """The court signature's verdict for a warrant request; None for other bases."""
    if not isinstance(request, WarrantRequest):
        return None
    try:
        statement = WarrantStatement.from_request(request)
    except PolicyViolation as violation:
        return CourtVerdict(False, None, str(violation.code), violation.reason, None)
    shown = statement.to_json_obj()
    if request.court_signature is None:
        return CourtVerdict(False, None, "warrant_field_missing", "no court_signature given",
                            shown)
    try:
        court = verify_warrant_signature(statement, request.court_signature, ctx.courts)
    except PolicyViolation as violation:
        return CourtVerdict(False, None, str(violation.code), violation.reason, shown)
    return CourtVerdict(True, court.name or court.court_id, None,
                        f"signed by {court.court_id}: the signature verifies over this "
                        "statement", shown)
