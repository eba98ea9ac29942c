"""Named attacks on the legal check, each refused with the code a reviewer would expect."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import ValidationError

from cloud_stub.policy import Code, PolicyViolation, build_policy, parse_request_json
from tests.fixtures.policy import PolicyWorld, parse

POLICY = build_policy()


def refused(world: PolicyWorld, body: dict[str, Any]) -> Code:
    with pytest.raises(PolicyViolation) as info:
        POLICY.check(parse(body), world.ctx())
    return info.value.code


@pytest.mark.parametrize("entry", ["\uff21\uff2c\uff2c", "porch-\uff0a", "\uff41ll devices"])
def test_fullwidth_wildcards_are_still_wildcards(policy_world: PolicyWorld, entry: str) -> None:
    # Attack: dodge the "all"/"*" check with Unicode compatibility forms.
    body = policy_world.warrant(device_ids=[entry])
    assert refused(policy_world, body) is Code.PARTICULARITY_WILDCARD


@pytest.mark.parametrize("entry", ["porch\u2010cam", "p\u043erch-cam"])
def test_lookalike_device_ids_are_not_devices(policy_world: PolicyWorld, entry: str) -> None:
    # Attack: a homoglyph of an enrolled id (Unicode hyphen, Cyrillic o) that a reviewer
    # reads as the real device.
    body = policy_world.warrant(device_ids=[entry])
    assert refused(policy_world, body) is Code.DEVICE_ID_INVALID


def test_a_zero_width_lookalike_is_refused_by_the_text_rule(policy_world: PolicyWorld) -> None:
    # The same attack with a zero-width space: no string may hold one (protocol/text.py),
    # so the body's shape already fails, naming the character.
    with pytest.raises(ValidationError, match="U\\+200B"):
        parse(policy_world.warrant(device_ids=["porch-cam\u200b"]))


def test_a_court_id_in_another_case_is_an_unknown_court(policy_world: PolicyWorld) -> None:
    # Attack: a registry lookup that folds case would let "Demo-District-Court" borrow
    # the real court's trust for a statement the real court never signed.
    body = policy_world.warrant(court_id="Demo-District-Court")
    assert refused(policy_world, body) is Code.COURT_UNKNOWN


def test_a_urlsafe_or_unpadded_signature_is_not_accepted(policy_world: PolicyWorld) -> None:
    # One spelling only: the same bytes in base64url or without padding are refused,
    # so two verifiers can never disagree on what was presented.
    body = policy_world.warrant()
    raw = base64.b64decode(body["court_signature"])
    for spelling in (base64.urlsafe_b64encode(raw).decode(), body["court_signature"].rstrip("=")):
        if spelling == body["court_signature"]:
            continue
        code = refused(policy_world, body | {"court_signature": spelling})
        assert code is Code.COURT_SIGNATURE_INVALID


def test_a_signature_over_the_statement_by_the_agency_itself_is_refused(
    policy_world: PolicyWorld,
) -> None:
    # Attack: the agency registers nothing, just signs with its own key and claims the
    # demo court; the registry's key decides.
    body = policy_world.warrant(key=Ed25519PrivateKey.generate())
    assert refused(policy_world, body) is Code.COURT_SIGNATURE_INVALID


def test_a_court_signature_cannot_be_reused_for_another_agencys_recipient(
    policy_world: PolicyWorld,
) -> None:
    # The recipient is not in the statement on purpose: the court authorises the search,
    # the agency names where the evidence goes. Swapping it keeps the warrant valid, and
    # the service binds the request to the authenticated agency, not to the body.
    body = policy_world.warrant(tamper={"recipient": PolicyWorld().recipient})
    POLICY.check(parse(body), policy_world.ctx())


def test_duplicate_json_keys_cannot_smuggle_a_second_device_list(
    policy_world: PolicyWorld,
) -> None:
    # Attack: {"device_ids": [signed], ..., "device_ids": [other]} hoping a reviewer's
    # viewer shows the first and the verifier checks the last. The parsed value is the
    # one verified, so the smuggled list fails the signature.
    body = policy_world.warrant()
    text = json.dumps(body)[:-1] + ', "device_ids": ["garage-cam"]}'
    request = parse_request_json(text)
    assert request.device_ids == ["garage-cam"]
    with pytest.raises(PolicyViolation) as info:
        POLICY.check(request, policy_world.ctx())
    assert info.value.code is Code.COURT_SIGNATURE_INVALID


def test_an_emergency_cannot_hide_a_dragnet_behind_the_wording(policy_world: PolicyWorld) -> None:
    # Attack: a real emergency that names "every doorbell within 1 km" as its device.
    body = policy_world.emergency(device_ids=["doorbells within 1 km of Elm Street"])
    assert refused(policy_world, body) is Code.PARTICULARITY_WILDCARD


def test_a_voluntary_request_dressed_as_an_emergency_without_facts_is_refused(
    policy_world: PolicyWorld,
) -> None:
    # Attack: the old "Request for Assistance" re-submitted as an emergency with filler.
    filler = "Please share footage to assist our investigation of this incident."
    body = policy_world.emergency(
        danger=filler, persons_at_risk=filler, why_ongoing=filler, device_relevance=filler
    )
    assert refused(policy_world, body) is Code.EMERGENCY_JUSTIFICATION_INSUFFICIENT


def test_a_preservation_cannot_carry_content_under_another_name(policy_world: PolicyWorld) -> None:
    # Attack: add a recipient to a preservation hoping the release step seals to it.
    body = policy_world.preservation(recipient=policy_world.recipient)
    assert refused(policy_world, body) is Code.PRESERVATION_NO_CONTENT
    # ... and other content-only keys are not even in the schema.
    with pytest.raises(ValidationError):
        parse(policy_world.preservation(token_lifetime_s=60))


def test_a_renewal_cannot_extend_a_hold_forever_by_chaining(policy_world: PolicyWorld) -> None:
    # Attack: renew the renewal of the renewal to keep clips pinned past 180 days.
    w = policy_world
    w.preserved("p-1")
    w.preserved("p-2", renewal_of="p-1")
    w.preserved("p-3", renewal_of="p-2")  # history the service should never have allowed
    for target in ("p-1", "p-2", "p-3"):
        assert refused(w, w.preservation(renews=target)) is Code.PRESERVATION_RENEWAL_LIMIT
