"""Trust root v2 and the root chain: the document's invariants, rotation across formats,
and the chain a device applies (docs/adr/0013-trust-root-v2.md)."""

from __future__ import annotations

import dataclasses
import json
from types import MappingProxyType
from typing import Any

import pytest

from protocol.errors import RejectionCode, TrustRootError
from protocol.keys import canonical_json
from protocol.root_chain import MAX_CHAIN_BYTES, apply_chain, encode_chain, parse_chain
from protocol.trust_root import sign_trust_root
from protocol.trust_root_v2 import (
    BasisRule,
    CourtKey,
    Reviewer,
    load_any_trust_root,
    load_trust_root_v2,
    parse_unsigned_v2,
    update_any_trust_root,
)
from tests.vectors import generate as v1
from tests.vectors import generate_v2 as g

NOW = g.NOW


def _signed(**changes: Any) -> bytes:
    return sign_trust_root(dataclasses.replace(g.make_root_v2(), **changes), v1.ROOT_KEYS)


def test_a_key_may_hold_one_role_only() -> None:
    root = g.make_root_v2()
    policy_kid = next(iter(root.policy_keyids))
    with pytest.raises(ValueError, match="more than one role"):
        dataclasses.replace(root, reviewers=MappingProxyType(
            {**root.reviewers, policy_kid: Reviewer("sneaky", "host")}))


def test_two_courts_cannot_share_a_key() -> None:
    root = g.make_root_v2()
    court = next(iter(root.courts.values()))
    with pytest.raises(ValueError, match="share one key"):
        dataclasses.replace(root, courts=MappingProxyType(
            {**root.courts, "other-court": CourtKey("Other", court.keyid)}))


@pytest.mark.parametrize("rule", [
    {"policy": 0, "review": 1, "review_orgs": 1, "court": True},
    {"policy": 1, "review": 0, "review_orgs": 1, "court": True},
    {"policy": 1, "review": 1, "review_orgs": 2, "court": True},
    {"policy": 1, "review": 1, "review_orgs": 1, "court": False},
])
def test_rules_below_the_floor_are_malformed(rule: dict[str, object]) -> None:
    signed = g.make_root_v2().to_signed()
    signed["rules"]["warrant"] = rule
    with pytest.raises(TrustRootError) as caught:
        parse_unsigned_v2(canonical_json(signed))
    assert caught.value.code is RejectionCode.malformed


def test_reviewers_must_describe_exactly_the_review_role() -> None:
    signed = g.make_root_v2().to_signed()
    signed["reviewers"].popitem()
    with pytest.raises(TrustRootError, match="exactly the keys of the review role"):
        parse_unsigned_v2(canonical_json(signed))


def test_the_log_policy_is_carried_and_must_be_printable_ascii() -> None:
    text = "log example 00\nwitness w1 11\nquorum w1\n"
    root = load_trust_root_v2(_signed(log_policy=text), now=NOW)
    assert root.log_policy == text
    with pytest.raises(ValueError, match="printable ASCII"):
        dataclasses.replace(g.make_root_v2(), log_policy="log \u202e evil\n")


def test_an_emergency_rule_may_ask_for_more_but_never_for_less() -> None:
    assert BasisRule(policy=1, review=3, review_orgs=3, court=False).review == 3
    with pytest.raises(ValueError, match="review_orgs"):
        BasisRule(policy=1, review=1, review_orgs=0, court=False)


def test_the_draft_parser_round_trips() -> None:
    root = g.make_root_v2()
    assert parse_unsigned_v2(canonical_json(root.to_signed())).to_signed() == root.to_signed()


def _chain_roots() -> tuple[bytes, bytes, bytes]:
    v1_root = (v1.OUT / "trust-root.json").read_bytes()
    v2_root = sign_trust_root(g.make_root_v2(version=2), v1.ROOT_KEYS)
    v3_root = sign_trust_root(g.make_root_v2(version=3), v1.ROOT_KEYS)
    return v1_root, v2_root, v3_root


def test_a_chain_catches_up_over_several_versions_and_skips_what_it_has() -> None:
    v1_root, v2_root, v3_root = _chain_roots()
    current = load_any_trust_root(v1_root, now=NOW)
    outcome = apply_chain(current, parse_chain(encode_chain([v2_root, v3_root])), now=NOW)
    assert outcome.root.version == 3
    assert [v for v, _ in outcome.applied] == [2, 3]
    assert outcome.refused is None
    again = apply_chain(outcome.root, [v2_root, v3_root], now=NOW)
    assert again.applied == ()
    assert again.root.version == 3


def test_a_chain_stops_at_the_first_refused_root_and_keeps_what_it_applied() -> None:
    v1_root, v2_root, _ = _chain_roots()
    forged = sign_trust_root(g.make_root_v2(version=3, root_keys=[v1.seeded("x1"),
                                                                  v1.seeded("x2")]),
                             [v1.seeded("x1"), v1.seeded("x2")])
    outcome = apply_chain(load_any_trust_root(v1_root, now=NOW), [v2_root, forged], now=NOW)
    assert outcome.root.version == 2
    assert outcome.refused is not None
    assert outcome.refused.code is RejectionCode.below_threshold


@pytest.mark.parametrize("payload", [b"{}", b'{"v":1,"roots":[1]}', b'{"v":1,"roots":["%%"]}',
                                     b'{"v":2,"roots":[]}', b"\xff"])
def test_a_chain_that_is_not_one_is_malformed(payload: bytes) -> None:
    with pytest.raises(TrustRootError) as caught:
        parse_chain(payload)
    assert caught.value.code is RejectionCode.malformed


def test_a_chain_fits_the_device_link_by_dropping_the_oldest_roots() -> None:
    _, v2_root, _ = _chain_roots()
    many = [v2_root + b" " * (20 * 1024)] * 16
    payload = encode_chain(many)
    assert len(payload) <= MAX_CHAIN_BYTES
    assert 1 <= len(json.loads(payload)["roots"]) < 16
    with pytest.raises(TrustRootError) as caught:
        parse_chain(b" " * (MAX_CHAIN_BYTES + 1))
    assert caught.value.code is RejectionCode.oversized


def test_a_v2_root_rotates_only_by_the_threshold_of_the_current_root() -> None:
    v1_root, v2_root, _ = _chain_roots()
    current = load_any_trust_root(v1_root, now=NOW)
    assert update_any_trust_root(current, v2_root, now=NOW).version == 2
    one_key = sign_trust_root(g.make_root_v2(), v1.ROOT_KEYS[:1])
    with pytest.raises(TrustRootError) as caught:
        update_any_trust_root(current, one_key, now=NOW)
    assert caught.value.code is RejectionCode.below_threshold
