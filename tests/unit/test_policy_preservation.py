"""Preservation (no content, 90 days, one renewal) and the voluntary refusal."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from cloud_stub.policy import Code, PolicyViolation, build_policy
from tests.fixtures.policy import PolicyWorld, parse

POLICY = build_policy()


def refused(world: PolicyWorld, body: dict[str, Any], requester: str = "metro-pd") -> Code:
    with pytest.raises(PolicyViolation) as info:
        POLICY.check(parse(body), world.ctx(requester=requester))
    assert info.value.reason.strip()
    return info.value.code


def test_a_complete_preservation_passes(policy_world: PolicyWorld) -> None:
    POLICY.check(parse(policy_world.preservation()), policy_world.ctx())


def test_a_preservation_releases_no_content(policy_world: PolicyWorld) -> None:
    body = policy_world.preservation(recipient=policy_world.recipient)
    assert refused(policy_world, body) is Code.PRESERVATION_NO_CONTENT


@pytest.mark.parametrize("field", ["agency", "investigator", "contact", "agency_case_number"])
def test_agency_details_are_required(policy_world: PolicyWorld, field: str) -> None:
    body = policy_world.preservation()
    del body[field]
    assert refused(policy_world, body) is Code.AGENCY_DETAILS_MISSING


def test_a_preservation_names_devices(policy_world: PolicyWorld) -> None:
    assert refused(policy_world, policy_world.preservation(device_ids=[])) is Code.DEVICE_NOT_NAMED
    body = policy_world.preservation(device_ids=["*"])
    assert refused(policy_world, body) is Code.PARTICULARITY_WILDCARD


def test_at_most_ten_devices(policy_world: PolicyWorld) -> None:
    body = policy_world.preservation(device_ids=[f"cam-{i}" for i in range(11)])
    assert refused(policy_world, body) is Code.TOO_MANY_DEVICES


def test_the_preservation_window_is_at_most_30_days(policy_world: PolicyWorld) -> None:
    w = policy_world
    body = w.preservation(window={"start": w.t(days=-31, seconds=-1), "end": w.t(days=-1)})
    assert refused(w, body) is Code.WINDOW_TOO_LONG


def test_a_preservation_of_future_footage_is_refused(policy_world: PolicyWorld) -> None:
    w = policy_world
    body = w.preservation(window={"start": w.t(days=-1), "end": w.t(days=1)})
    assert refused(w, body) is Code.WINDOW_IN_FUTURE


def test_the_hold_is_at_most_90_days(policy_world: PolicyWorld) -> None:
    w = policy_world
    POLICY.check(parse(w.preservation(hold_days=90)), w.ctx())
    assert refused(w, w.preservation(hold_days=91)) is Code.PRESERVATION_TOO_LONG


def test_one_renewal_passes(policy_world: PolicyWorld) -> None:
    w = policy_world
    w.preserved("p-1")
    POLICY.check(parse(w.preservation(renews="p-1")), w.ctx())


def test_renewing_an_unknown_preservation_is_refused(policy_world: PolicyWorld) -> None:
    body = policy_world.preservation(renews="p-404")
    assert refused(policy_world, body) is Code.PRESERVATION_RENEWAL_UNKNOWN


def test_renewing_another_agencys_preservation_is_refused(policy_world: PolicyWorld) -> None:
    # Looks the same as an unknown id: an agency learns nothing of another's holds.
    w = policy_world
    w.preserved("p-1", requester="county-sheriff")
    assert refused(w, w.preservation(renews="p-1")) is Code.PRESERVATION_RENEWAL_UNKNOWN


def test_a_renewal_cannot_itself_be_renewed(policy_world: PolicyWorld) -> None:
    w = policy_world
    w.preserved("p-1")
    w.preserved("p-2", renewal_of="p-1")
    assert refused(w, w.preservation(renews="p-2")) is Code.PRESERVATION_RENEWAL_LIMIT


def test_a_preservation_is_renewed_only_once(policy_world: PolicyWorld) -> None:
    # A second renewal of the same original, side by side with the first.
    w = policy_world
    w.preserved("p-1")
    w.preserved("p-2", renewal_of="p-1")
    assert refused(w, w.preservation(renews="p-1")) is Code.PRESERVATION_RENEWAL_LIMIT


def test_a_lapsed_preservation_cannot_be_renewed(policy_world: PolicyWorld) -> None:
    w = policy_world
    w.preserved("p-1", hold_until=w.now - timedelta(seconds=1))
    assert refused(w, w.preservation(renews="p-1")) is Code.PRESERVATION_RENEWAL_LAPSED


def test_a_renewal_cannot_add_devices(policy_world: PolicyWorld) -> None:
    w = policy_world
    w.preserved("p-1")
    body = w.preservation(renews="p-1", device_ids=["porch-cam", "garage-cam"])
    assert refused(w, body) is Code.PRESERVATION_RENEWAL_MISMATCH


def test_a_renewal_cannot_widen_the_window(policy_world: PolicyWorld) -> None:
    w = policy_world
    w.preserved("p-1")
    body = w.preservation(renews="p-1", window={"start": w.t(days=-4), "end": w.t(days=-2)})
    assert refused(w, body) is Code.PRESERVATION_RENEWAL_MISMATCH


def test_a_renewal_may_narrow(policy_world: PolicyWorld) -> None:
    w = policy_world
    w.preserved("p-1")
    body = w.preservation(renews="p-1", window={"start": w.t(days=-3), "end": w.t(days=-2.5)})
    POLICY.check(parse(body), w.ctx())


def test_a_renewal_chain_with_a_cycle_terminates(policy_world: PolicyWorld) -> None:
    # Corrupted history (p-1 renews p-2 renews p-1) must not loop forever.
    w = policy_world
    w.preserved("p-1", renewal_of="p-2")
    w.preserved("p-2", renewal_of="p-1")
    assert refused(w, w.preservation(renews="p-1")) is Code.PRESERVATION_RENEWAL_LIMIT


# --- voluntary ------------------------------------------------------------------------------


@pytest.mark.parametrize("basis", ["voluntary", "request_for_assistance"])
def test_voluntary_requests_are_always_refused(policy_world: PolicyWorld, basis: str) -> None:
    # However complete and polite, a voluntary request gets nothing.
    body = {
        "basis": basis,
        "agency": "Metro Police Department",
        "investigator": "Det. Sam Ortiz",
        "contact": "s.ortiz@metro-pd.example",
        "agency_case_number": "MPD-2026-1187",
        "device_ids": ["porch-cam"],
        "window": {"start": policy_world.t(hours=-3), "end": policy_world.t(hours=-2)},
        "recipient": policy_world.recipient,
        "message": "Would the owner kindly share the footage of last night?",
    }
    assert refused(policy_world, body) is Code.VOLUNTARY_REQUESTS_DISCONTINUED


def test_a_bare_voluntary_request_is_refused_with_its_code(policy_world: PolicyWorld) -> None:
    assert refused(policy_world, {"basis": "voluntary"}) is Code.VOLUNTARY_REQUESTS_DISCONTINUED
