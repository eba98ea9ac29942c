"""The warrant rules, one violation per test, each answered with its code."""

from __future__ import annotations

from datetime import timedelta, timezone
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cloud_stub.policy import Code, PolicyViolation, build_policy
from cloud_stub.policy.base import PolicyContext
from tests.fixtures.policy import PolicyWorld, parse

POLICY = build_policy()


def refused(world: PolicyWorld, body: dict[str, Any], ctx: PolicyContext | None = None) -> Code:
    with pytest.raises(PolicyViolation) as info:
        POLICY.check(parse(body), ctx or world.ctx())
    assert info.value.reason.strip(), "every refusal carries a human reason"
    return info.value.code


def test_a_complete_court_signed_warrant_passes(policy_world: PolicyWorld) -> None:
    POLICY.check(parse(policy_world.warrant()), policy_world.ctx())


@pytest.mark.parametrize("order_type", ["subpoena", "court_order", "pen_register", "other"])
def test_subpoenas_and_other_orders_get_no_content(
    policy_world: PolicyWorld, order_type: str
) -> None:
    # Even a genuine court signature over a subpoena does not reach footage.
    body = policy_world.warrant(order_type=order_type)
    assert refused(policy_world, body) is Code.ORDER_TYPE_NO_CONTENT


def test_order_type_must_be_stated(policy_world: PolicyWorld) -> None:
    body = policy_world.warrant()
    del body["order_type"]
    assert refused(policy_world, body) is Code.WARRANT_FIELD_MISSING


@pytest.mark.parametrize(
    "field",
    ["court_id", "judge", "docket", "issued", "expires", "document_sha256", "court_signature"],
)
def test_every_warrant_field_is_required(policy_world: PolicyWorld, field: str) -> None:
    body = policy_world.warrant()
    del body[field]
    assert refused(policy_world, body) is Code.WARRANT_FIELD_MISSING


@pytest.mark.parametrize("field", ["judge", "docket", "court_signature"])
def test_a_blank_warrant_field_counts_as_missing(policy_world: PolicyWorld, field: str) -> None:
    body = policy_world.warrant(tamper={field: "   "})
    assert refused(policy_world, body) is Code.WARRANT_FIELD_MISSING


@pytest.mark.parametrize("field", ["agency", "investigator", "contact", "agency_case_number"])
def test_agency_details_are_required(policy_world: PolicyWorld, field: str) -> None:
    body = policy_world.warrant()
    del body[field]
    assert refused(policy_world, body) is Code.AGENCY_DETAILS_MISSING


@pytest.mark.parametrize("devices", [[], None])
def test_a_warrant_names_a_device(policy_world: PolicyWorld, devices: list[str] | None) -> None:
    body = policy_world.warrant()
    if devices is None:
        del body["device_ids"]
    else:
        body["device_ids"] = devices
    # Without devices there is no statement to sign; the device rule answers first.
    body["court_signature"] = "x"
    assert refused(policy_world, body) is Code.DEVICE_NOT_NAMED


@pytest.mark.parametrize(
    "entry",
    [
        "*",
        "all",
        "ALL",
        "all devices",
        "all_doorbells",
        "every-camera",
        "any device",
        "porch-*",
        "cam-?",
        "area:downtown",
        "zip:90210",
        "Geo: 51.5,-0.12",
        "doorbells within 500 m of Elm Street",
        "near the school",
        "40.7128,-74.0060",
    ],
)
def test_particularity_refuses_wildcards_all_and_areas(
    policy_world: PolicyWorld, entry: str
) -> None:
    # A dragnet request ("every doorbell near the scene") is what particularity forbids,
    # even when a court signed it.
    body = policy_world.warrant(device_ids=["porch-cam", entry])
    assert refused(policy_world, body) is Code.PARTICULARITY_WILDCARD


@pytest.mark.parametrize(
    "entry", ["porch cam", "porch/cam", "-porch", "porch#1", "é-cam", "Porch-Cam", "porch_cam"]
)
def test_malformed_device_ids_are_refused(policy_world: PolicyWorld, entry: str) -> None:
    body = policy_world.warrant(device_ids=[entry])
    assert refused(policy_world, body) is Code.DEVICE_ID_INVALID


def test_a_device_named_twice_is_refused(policy_world: PolicyWorld) -> None:
    body = policy_world.warrant(device_ids=["porch-cam", "porch-cam"])
    assert refused(policy_world, body) is Code.DEVICE_ID_INVALID


def test_device_names_that_merely_start_like_a_quantifier_are_devices(
    policy_world: PolicyWorld,
) -> None:
    body = policy_world.warrant(device_ids=["allen-porch", "every-day-garage"])
    POLICY.check(parse(body), policy_world.ctx())


def test_too_many_devices_in_one_warrant(policy_world: PolicyWorld) -> None:
    POLICY.check(parse(policy_world.warrant(device_ids=[f"cam-{i}" for i in range(5)])),
                 policy_world.ctx())  # fmt: skip
    body = policy_world.warrant(device_ids=[f"cam-{i}" for i in range(6)])
    assert refused(policy_world, body) is Code.TOO_MANY_DEVICES


def test_a_warrant_needs_a_window(policy_world: PolicyWorld) -> None:
    body = policy_world.warrant()
    del body["window"]
    assert refused(policy_world, body) is Code.WINDOW_MISSING


def test_an_inverted_window_is_refused(policy_world: PolicyWorld) -> None:
    w = policy_world
    body = w.warrant(window={"start": w.t(hours=-6), "end": w.t(hours=-6)})
    assert refused(w, body) is Code.WINDOW_INVERTED


def test_the_warrant_window_is_at_most_72_hours(policy_world: PolicyWorld) -> None:
    w = policy_world
    POLICY.check(parse(w.warrant(window={"start": w.t(hours=-78), "end": w.t(hours=-6)})), w.ctx())
    body = w.warrant(window={"start": w.t(hours=-78, seconds=-1), "end": w.t(hours=-6)})
    assert refused(w, body) is Code.WINDOW_TOO_LONG


def test_a_window_half_a_second_too_long_says_so(policy_world: PolicyWorld) -> None:
    w = policy_world
    body = w.warrant(window={"start": w.t(hours=-78, seconds=-0.5), "end": w.t(hours=-6)})
    with pytest.raises(PolicyViolation) as info:
        POLICY.check(parse(body), w.ctx())
    assert info.value.code is Code.WINDOW_TOO_LONG
    assert "the window is 259200.5 s" in info.value.reason
    assert "at most 72 h" in info.value.reason


def test_the_window_cannot_reach_into_the_future(policy_world: PolicyWorld) -> None:
    # A warrant for footage not yet recorded would be a live wiretap, not a search.
    w = policy_world
    body = w.warrant(window={"start": w.t(hours=-2), "end": w.t(seconds=1)})
    assert refused(w, body) is Code.WINDOW_IN_FUTURE


@pytest.mark.parametrize(
    ("recipient", "code"),
    [
        (None, Code.RECIPIENT_MISSING),
        ("", Code.RECIPIENT_MISSING),
        ("age1xyz", Code.RECIPIENT_INVALID),
        ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGx", Code.RECIPIENT_INVALID),
    ],
)
def test_the_recipient_is_a_real_age_recipient(
    policy_world: PolicyWorld, recipient: str | None, code: Code
) -> None:
    body = policy_world.warrant()
    if recipient is None:
        del body["recipient"]
    else:
        body["recipient"] = recipient
    assert refused(policy_world, body) is code


def test_an_uppercase_recipient_is_refused(policy_world: PolicyWorld) -> None:
    body = policy_world.warrant(recipient=policy_world.recipient.upper())
    assert refused(policy_world, body) is Code.RECIPIENT_INVALID


def test_token_lifetime_is_bounded(policy_world: PolicyWorld) -> None:
    POLICY.check(parse(policy_world.warrant(token_lifetime_s=86400)), policy_world.ctx())
    body = policy_world.warrant(token_lifetime_s=86401)
    assert refused(policy_world, body) is Code.TOKEN_LIFETIME_TOO_LONG


def test_a_warrant_issued_in_the_future_is_refused(policy_world: PolicyWorld) -> None:
    w = policy_world
    body = w.warrant(issued=w.t(minutes=5))
    assert refused(w, body) is Code.WARRANT_ISSUED_IN_FUTURE


def test_a_warrant_expiring_before_issue_is_refused(policy_world: PolicyWorld) -> None:
    w = policy_world
    body = w.warrant(issued=w.t(hours=-2), expires=w.t(hours=-3))
    assert refused(w, body) is Code.WARRANT_EXPIRY_BEFORE_ISSUE


def test_warrant_validity_is_at_most_14_days(policy_world: PolicyWorld) -> None:
    w = policy_world
    POLICY.check(parse(w.warrant(issued=w.t(days=-1), expires=w.t(days=13))), w.ctx())
    body = w.warrant(issued=w.t(days=-1), expires=w.t(days=13, seconds=1))
    assert refused(w, body) is Code.WARRANT_VALIDITY_TOO_LONG


def test_an_expired_warrant_is_refused(policy_world: PolicyWorld) -> None:
    w = policy_world
    body = w.warrant(issued=w.t(days=-10), expires=w.t(days=-1))
    assert refused(w, body) is Code.WARRANT_EXPIRED
    # ... and exactly at its expiry instant it is already expired.
    at_expiry = w.warrant(issued=w.t(days=-10), expires=w.t())
    assert refused(w, at_expiry) is Code.WARRANT_EXPIRED


@pytest.mark.parametrize(
    "digest",
    [
        "abc",
        "A" * 64,
        "0" * 64,
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",  # empty file
        "g" * 64,
    ],
)
def test_document_hash_must_be_plausible(policy_world: PolicyWorld, digest: str) -> None:
    body = policy_world.warrant(document_sha256=digest)
    assert refused(policy_world, body) is Code.WARRANT_DOCUMENT_HASH_INVALID


def test_delayed_notice_within_90_days_passes(policy_world: PolicyWorld) -> None:
    w = policy_world
    POLICY.check(parse(w.warrant(notify_after=w.t(days=30))), w.ctx())


@pytest.mark.parametrize("delta", [{"hours": -3}, {"days": 90}])
def test_delayed_notice_before_issue_or_too_late_is_refused(
    policy_world: PolicyWorld, delta: dict[str, float]
) -> None:
    w = policy_world  # issued 2 h ago: 90 days from now is 90 days 2 h after issue
    body = w.warrant(notify_after=w.t(**delta))
    assert refused(w, body) is Code.NOTICE_DELAY_INVALID


# --- the court's signature --------------------------------------------------------------------


def test_a_forged_court_signature_is_refused(policy_world: PolicyWorld) -> None:
    # The attacker names a registered court but signs with a key of their own.
    body = policy_world.warrant(key=Ed25519PrivateKey.generate())
    assert refused(policy_world, body) is Code.COURT_SIGNATURE_INVALID


def test_a_court_not_in_the_registry_is_refused(policy_world: PolicyWorld) -> None:
    # A self-made "court" with its own valid key is still not a court we know.
    body = policy_world.warrant(court_id="rogue-court", key=Ed25519PrivateKey.generate())
    assert refused(policy_world, body) is Code.COURT_UNKNOWN


@pytest.mark.parametrize(
    "tamper",
    [
        {"device_ids": ["porch-cam", "garage-cam"]},  # widen to another device
        {"device_ids": ["garage-cam"]},  # swap the device
        {"window": {"start": "2026-11-27T00:00:00Z", "end": "2026-11-29T06:00:00Z"}},
        {"expires": "2026-12-10T12:00:00Z"},  # stretch the expiry
        {"issued": "2026-11-29T09:00:00Z"},
        {"docket": "2026-MJ-00422"},
        {"judge": "Hon. Someone Else"},
        {"document_sha256": "1" * 64},
        {"notify_after": "2026-12-29T12:00:00Z"},  # add a gag the court never ordered
    ],
)
def test_a_statement_altered_after_signing_is_refused(
    policy_world: PolicyWorld, tamper: dict[str, Any]
) -> None:
    body = policy_world.warrant(tamper=tamper)
    assert refused(policy_world, body) is Code.COURT_SIGNATURE_INVALID


def test_a_subpoena_relabelled_as_a_warrant_is_refused(policy_world: PolicyWorld) -> None:
    # The court signed a subpoena; the agency rewrites order_type to reach content.
    body = policy_world.warrant(order_type="subpoena", tamper={"order_type": "search_warrant"})
    assert refused(policy_world, body) is Code.COURT_SIGNATURE_INVALID


def test_a_signature_replayed_from_another_warrant_is_refused(policy_world: PolicyWorld) -> None:
    other = policy_world.warrant(docket="2026-MJ-00001")
    body = policy_world.warrant(court_signature=other["court_signature"])
    assert refused(policy_world, body) is Code.COURT_SIGNATURE_INVALID


@pytest.mark.parametrize("signature", ["not base64!", "AAAA", "A" * 86 + "==", "A" * 88])
def test_a_malformed_signature_is_refused(policy_world: PolicyWorld, signature: str) -> None:
    body = policy_world.warrant(court_signature=signature)
    assert refused(policy_world, body) is Code.COURT_SIGNATURE_INVALID


def test_device_order_is_not_part_of_the_statement(policy_world: PolicyWorld) -> None:
    body = policy_world.warrant(
        device_ids=["b-cam", "a-cam"], tamper={"device_ids": ["a-cam", "b-cam"]}
    )
    POLICY.check(parse(body), policy_world.ctx())


def test_the_same_instant_in_another_offset_still_verifies(policy_world: PolicyWorld) -> None:
    w = policy_world
    utc = w.now - timedelta(hours=2)
    shifted = utc.astimezone(timezone(timedelta(hours=2))).isoformat()
    POLICY.check(parse(w.warrant(tamper={"issued": shifted})), w.ctx())
