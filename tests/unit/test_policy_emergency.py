"""The emergency rules: justification, officers, narrow window, short token, follow-up."""

from __future__ import annotations

from typing import Any

import pytest

from cloud_stub.policy import Code, PolicyViolation, build_policy
from tests.fixtures.policy import PolicyWorld, parse

POLICY = build_policy()
JUSTIFICATIONS = ["danger", "persons_at_risk", "why_ongoing", "device_relevance"]


def refused(world: PolicyWorld, body: dict[str, Any]) -> Code:
    with pytest.raises(PolicyViolation) as info:
        POLICY.check(parse(body), world.ctx())
    assert info.value.reason.strip()
    return info.value.code


def test_a_complete_emergency_passes(policy_world: PolicyWorld) -> None:
    POLICY.check(parse(policy_world.emergency()), policy_world.ctx())


@pytest.mark.parametrize("field", JUSTIFICATIONS)
def test_every_justification_is_required(policy_world: PolicyWorld, field: str) -> None:
    body = policy_world.emergency()
    del body[field]
    assert refused(policy_world, body) is Code.EMERGENCY_JUSTIFICATION_MISSING


@pytest.mark.parametrize("field", JUSTIFICATIONS)
def test_a_blank_justification_is_missing(policy_world: PolicyWorld, field: str) -> None:
    body = policy_world.emergency(**{field: " \n\t "})
    assert refused(policy_world, body) is Code.EMERGENCY_JUSTIFICATION_MISSING


@pytest.mark.parametrize(
    "text", ["N/A", "urgent", "Exigent circumstances.", "see attached", "TBD", "same as above"]
)
def test_placeholders_do_not_justify(policy_world: PolicyWorld, text: str) -> None:
    body = policy_world.emergency(danger=text)
    assert refused(policy_world, body) is Code.EMERGENCY_JUSTIFICATION_INSUFFICIENT


@pytest.mark.parametrize(
    "text",
    [
        "x x x x x x x x x x x x x x x x x x x x x x x x x x x x x x",
        "xxx xxx xxx xxx xxx xxx xxx xxx xxx xxx",
        "urgent urgent urgent urgent urgent urgent urgent urgent",
        "lives at risk now, lives at risk now, lives at risk now, lives at risk now",
        "The child is in danger right now. The child is in danger right now.",
        "help help help please help help help help please help",  # 2 different words
    ],
)
def test_a_word_or_phrase_repeated_does_not_justify(policy_world: PolicyWorld, text: str
                                                    ) -> None:
    body = policy_world.emergency(persons_at_risk=text)
    assert refused(policy_world, body) is Code.EMERGENCY_JUSTIFICATION_INSUFFICIENT


def test_a_too_short_justification_is_insufficient(policy_world: PolicyWorld) -> None:
    body = policy_world.emergency(why_ongoing="suspect still at large")
    assert refused(policy_world, body) is Code.EMERGENCY_JUSTIFICATION_INSUFFICIENT


def test_one_text_pasted_into_every_field_is_insufficient(policy_world: PolicyWorld) -> None:
    text = "A child was abducted outside this house and is in danger of serious harm."
    body = policy_world.emergency(danger=text, why_ongoing=text.upper() + "!")
    assert refused(policy_world, body) is Code.EMERGENCY_JUSTIFICATION_INSUFFICIENT


@pytest.mark.parametrize("role", ["certifying_officer", "supervisor"])
def test_the_certifying_officer_and_supervisor_are_required(
    policy_world: PolicyWorld, role: str
) -> None:
    body = policy_world.emergency()
    del body[role]
    assert refused(policy_world, body) is Code.EMERGENCY_OFFICER_MISSING


@pytest.mark.parametrize("part", ["name", "badge", "contact"])
def test_an_officer_without_name_badge_or_contact_is_missing(
    policy_world: PolicyWorld, part: str
) -> None:
    body = policy_world.emergency()
    body["supervisor"] = {**body["supervisor"], part: "  "}
    assert refused(policy_world, body) is Code.EMERGENCY_OFFICER_MISSING


@pytest.mark.parametrize(
    "supervisor",
    [
        {"name": "Lt. Dana Cruz", "badge": "4471", "contact": "x@example"},  # same badge
        {"name": "sgt. lee  park", "badge": "9999", "contact": "x@example"},  # same person
    ],
)
def test_the_officer_cannot_supervise_themself(
    policy_world: PolicyWorld, supervisor: dict[str, str]
) -> None:
    body = policy_world.emergency(supervisor=supervisor)
    assert refused(policy_world, body) is Code.EMERGENCY_SUPERVISOR_NOT_INDEPENDENT


@pytest.mark.parametrize("field", ["agency", "contact", "agency_case_number"])
def test_agency_details_are_required(policy_world: PolicyWorld, field: str) -> None:
    body = policy_world.emergency()
    del body[field]
    assert refused(policy_world, body) is Code.AGENCY_DETAILS_MISSING


def test_at_most_three_devices(policy_world: PolicyWorld) -> None:
    body = policy_world.emergency(device_ids=["a-cam", "b-cam", "c-cam", "d-cam"])
    assert refused(policy_world, body) is Code.TOO_MANY_DEVICES


def test_an_area_is_not_a_device_even_in_an_emergency(policy_world: PolicyWorld) -> None:
    body = policy_world.emergency(device_ids=["all cameras"])
    assert refused(policy_world, body) is Code.PARTICULARITY_WILDCARD


def test_the_emergency_window_is_at_most_12_hours(policy_world: PolicyWorld) -> None:
    w = policy_world
    POLICY.check(parse(w.emergency(window={"start": w.t(hours=-12), "end": w.t()})), w.ctx())
    body = w.emergency(window={"start": w.t(hours=-12, seconds=-1), "end": w.t()})
    assert refused(w, body) is Code.WINDOW_TOO_LONG


def test_the_emergency_window_ends_no_later_than_now(policy_world: PolicyWorld) -> None:
    w = policy_world
    body = w.emergency(window={"start": w.t(hours=-1), "end": w.t(minutes=30)})
    assert refused(w, body) is Code.WINDOW_IN_FUTURE


def test_the_emergency_needs_a_window(policy_world: PolicyWorld) -> None:
    body = policy_world.emergency()
    del body["window"]
    assert refused(policy_world, body) is Code.WINDOW_MISSING


def test_the_emergency_token_lives_at_most_an_hour(policy_world: PolicyWorld) -> None:
    w = policy_world
    POLICY.check(parse(w.emergency(token_lifetime_s=3600)), w.ctx())
    assert refused(w, w.emergency(token_lifetime_s=3601)) is Code.TOKEN_LIFETIME_TOO_LONG


def test_the_emergency_needs_a_recipient(policy_world: PolicyWorld) -> None:
    body = policy_world.emergency()
    del body["recipient"]
    assert refused(policy_world, body) is Code.RECIPIENT_MISSING


def test_a_follow_up_due_date_is_required(policy_world: PolicyWorld) -> None:
    body = policy_world.emergency()
    del body["followup_due"]
    assert refused(policy_world, body) is Code.EMERGENCY_FOLLOWUP_MISSING


@pytest.mark.parametrize("delta", [{"hours": -1}, {"seconds": 0}, {"hours": 48, "seconds": 1}])
def test_the_follow_up_is_due_within_48_hours(
    policy_world: PolicyWorld, delta: dict[str, float]
) -> None:
    w = policy_world
    body = w.emergency(followup_due=w.t(**delta))
    assert refused(w, body) is Code.EMERGENCY_FOLLOWUP_OUT_OF_RANGE


def test_a_follow_up_due_in_exactly_48_hours_passes(policy_world: PolicyWorld) -> None:
    w = policy_world
    POLICY.check(parse(w.emergency(followup_due=w.t(hours=48))), w.ctx())
