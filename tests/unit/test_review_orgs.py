"""An emergency's approvals come from distinct organisations
(cloud_stub.domain.review_rules.decide)."""

from __future__ import annotations

import pytest

from cloud_stub.domain.lifecycle import RequestStatus as Status
from cloud_stub.domain.review_rules import Action, PriorDecision, Reviewer, decide
from cloud_stub.errors import Forbidden

REASON = "The emergency is specific and ongoing."


def _decide(prior: list[PriorDecision], reviewer: Reviewer) -> Status:
    return decide(status="pending_review", submitter_org="metro-pd", approvals_required=2,
                  prior=prior, reviewer=reviewer, action=Action.APPROVE, reason=REASON).status


def test_second_approval_of_the_same_organisation_is_refused() -> None:
    prior = [PriorDecision("r1", Action.APPROVE, "court-liaison")]
    with pytest.raises(Forbidden) as caught:
        _decide(prior, Reviewer("r2", "reviewer", "court-liaison"))
    assert caught.value.code == "same_organisation"


def test_second_approval_of_another_organisation_approves() -> None:
    prior = [PriorDecision("r1", Action.APPROVE, "court-liaison")]
    assert _decide(prior, Reviewer("r2", "reviewer", "civil-oversight")) is Status.APPROVED
    assert _decide([], Reviewer("r2", "reviewer", "civil-oversight")) is Status.PENDING_REVIEW
