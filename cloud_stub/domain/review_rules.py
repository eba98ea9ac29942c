"""Human review as a pure state machine: who may decide, and what a decision does.

`decide` takes the request's current state, the decisions already recorded and the
reviewer who is acting, and returns the verdict or raises. It does no I/O; the API and
the CLI load the rows, call it, and store what it returns inside one transaction.

Rules (docs/policy.md, separation of duties):
- only a reviewer decides, only on a request waiting for review;
- a reviewer of the submitting organisation cannot review it (names compared without
  case, punctuation or spaces: `same_organisation`);
- a reviewer decides once per request (cannot approve twice, cannot change sides);
- a decision carries a written reason;
- one denial ends the request; it is approved once ``approvals_required`` distinct
  reviewers approved (two for an emergency), each of another organisation.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from cloud_stub.domain.lifecycle import RequestStatus
from cloud_stub.errors import Conflict, Forbidden, HostileInputError
from protocol import text as text_rule

MIN_REASON_CHARS = 10
MAX_REASON_CHARS = 4000


class Action(StrEnum):
    APPROVE = "approve"
    DENY = "deny"


@dataclass(frozen=True, slots=True)
class Reviewer:
    id: str
    role: str
    org: str


@dataclass(frozen=True, slots=True)
class PriorDecision:
    reviewer_id: str
    action: Action
    org: str = ""  # the deciding reviewer's organisation


@dataclass(frozen=True, slots=True)
class Verdict:
    """The new status and the number of distinct approvals after this decision."""

    status: RequestStatus
    approvals: int
    required: int


def check_reason(reason: str) -> str:
    """The trimmed reason. Raises `HostileInputError` when it holds a character the one
    text rule refuses (protocol/text.py: controls, ESC, zero-width characters...; lines
    and tabs are allowed), or is too short or too long."""
    char = text_rule.refused(reason, multiline=True)
    if char is not None:
        raise HostileInputError(
            f"the reason contains a control or invisible formatting character "
            f"(U+{ord(char):04X}); write it in plain text",
            code="reason_not_text",
        )
    text = reason.strip()
    if len(text) < MIN_REASON_CHARS:
        raise HostileInputError(
            f"a decision needs a written reason of at least {MIN_REASON_CHARS} characters",
            code="reason_required",
        )
    if len(text) > MAX_REASON_CHARS:
        raise HostileInputError(
            f"the reason is longer than {MAX_REASON_CHARS} characters", code="reason_too_long"
        )
    return text


def same_organisation(a: str, b: str) -> bool:
    """Whether two organisation names name the same organisation: compared after folding
    compatibility forms, case, punctuation and spaces (``Metro-PD`` is ``metro pd``)."""
    return organisation_key(a) == organisation_key(b)


def organisation_key(org: str) -> str:
    """`org` reduced to its letters and digits, casefolded (NFKC first)."""
    return "".join(c for c in unicodedata.normalize("NFKC", org).casefold() if c.isalnum())


def check_reviewer(reviewer: Reviewer, submitter_org: str) -> None:
    """Whether this principal may review a request of `submitter_org` at all (approve,
    deny, or re-issue an approved request's token). Raises `Forbidden`."""
    if reviewer.role != "reviewer":
        raise Forbidden("only a reviewer may approve or deny a request", code="not_a_reviewer")
    if same_organisation(reviewer.org, submitter_org):
        raise Forbidden(
            "a reviewer of the submitting organisation cannot review this request",
            code="separation_of_duties",
        )


def decide(
    *,
    status: str,
    submitter_org: str,
    approvals_required: int,
    prior: Sequence[PriorDecision],
    reviewer: Reviewer,
    action: Action,
    reason: str,
) -> Verdict:
    """Apply one decision.

    Raises `Forbidden` (role, separation of duties), `Conflict` (not waiting for review,
    already decided by this reviewer) or `HostileInputError` (reason missing).
    """
    check_reviewer(reviewer, submitter_org)
    if status != RequestStatus.PENDING_REVIEW:
        raise Conflict(f"the request is {status}, not waiting for review", code="not_pending")
    if any(d.reviewer_id == reviewer.id for d in prior):
        raise Conflict("this reviewer already decided on this request", code="already_decided")
    check_reason(reason)
    if approvals_required < 1:
        raise Conflict("the request requires no approvals; refusing to release", code="bad_state")
    approvers = {d.reviewer_id for d in prior if d.action is Action.APPROVE}
    if action is Action.APPROVE and any(
        d.action is Action.APPROVE and same_organisation(d.org, reviewer.org) for d in prior
    ):
        raise Forbidden(
            "a reviewer of this organisation already approved; the next approval must come "
            "from another organisation",
            code="same_organisation",
        )
    if action is Action.DENY:
        return Verdict(RequestStatus.DENIED, len(approvers), approvals_required)
    approvers.add(reviewer.id)
    if len(approvers) >= approvals_required:
        return Verdict(RequestStatus.APPROVED, len(approvers), approvals_required)
    return Verdict(RequestStatus.PENDING_REVIEW, len(approvers), approvals_required)
