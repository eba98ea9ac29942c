"""The trust root: initial trust, rotation, and the attacks TUF names."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta
from types import MappingProxyType

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol.errors import RejectionCode, TokenRejected, TrustRootError
from protocol.keys import canonical_json, key_id, public_key_hex
from protocol.token import VerificationContext, sign_token, verify_token
from protocol.trust_root import (
    DEFAULT_LIMITS,
    MAX_ROOT_BYTES,
    BasisLimits,
    Role,
    TrustRoot,
    load_trust_root,
    sign_trust_root,
    update_trust_root,
)
from tests.unit.protocol_world import DEVICE, NOW, Replay, make_world, seeded_key


def _code(exc: pytest.ExceptionInfo[TrustRootError]) -> RejectionCode:
    return exc.value.code


def test_signed_root_loads_back_equal() -> None:
    world = make_world()
    root = load_trust_root(world.root_bytes, now=NOW)
    assert root.version == 1
    assert root.issuer == "cloud-stub"
    assert set(root.keys) == set(world.root.keys)
    assert root.roles["release"] == world.root.roles["release"]
    assert dict(root.limits) == dict(DEFAULT_LIMITS)
    doc = json.loads(world.root_bytes)
    assert doc["signed"]["_type"] == "doorbell-root"
    assert canonical_json(doc) == world.root_bytes


def test_default_limits_match_design() -> None:
    assert DEFAULT_LIMITS["warrant"] == BasisLimits(72 * 3600, 24 * 3600)
    assert DEFAULT_LIMITS["emergency"] == BasisLimits(12 * 3600, 3600)
    assert DEFAULT_LIMITS["preservation"] == BasisLimits(7 * 24 * 3600, 24 * 3600)


def test_one_root_signature_of_two_is_below_threshold() -> None:
    world = make_world()
    data = sign_trust_root(world.root, world.root_keys[:1])
    with pytest.raises(TrustRootError) as exc:
        load_trust_root(data, now=NOW)
    assert _code(exc) is RejectionCode.below_threshold


def test_release_keys_cannot_sign_the_root() -> None:
    world = make_world()
    data = sign_trust_root(world.root, world.release_keys)
    with pytest.raises(TrustRootError) as exc:
        load_trust_root(data, now=NOW)
    assert _code(exc) is RejectionCode.below_threshold


def test_repeated_root_signature_counts_once() -> None:
    world = make_world()
    doc = json.loads(sign_trust_root(world.root, world.root_keys[:1]))
    doc["signatures"].append(doc["signatures"][0])
    with pytest.raises(TrustRootError) as exc:
        load_trust_root(json.dumps(doc).encode(), now=NOW)
    assert _code(exc) is RejectionCode.below_threshold


def test_tampered_root_fails_signature() -> None:
    world = make_world()
    doc = json.loads(world.root_bytes)
    # An attacker loosens the emergency window limit in a signed root.
    doc["signed"]["limits"]["emergency"]["max_window_s"] = 10**6
    with pytest.raises(TrustRootError) as exc:
        load_trust_root(json.dumps(doc).encode(), now=NOW)
    assert _code(exc) is RejectionCode.bad_signature


def test_expired_root_is_refused() -> None:
    # Check for a freeze attack: an old, expired root must not be trusted.
    world = make_world(expires=NOW - timedelta(seconds=1))
    with pytest.raises(TrustRootError) as exc:
        load_trust_root(world.root_bytes, now=NOW)
    assert _code(exc) is RejectionCode.root_expired


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.pop("signatures"),
        lambda d: d["signed"].update(extra=1),
        lambda d: d["signed"].update(version=0),
        lambda d: d["signed"].update(version=True),
        lambda d: d["signed"].update(_type="root"),
        lambda d: d["signed"].update(expires="2027-01-01"),
        lambda d: d["signed"]["roles"].pop("release"),
        lambda d: d["signed"]["roles"]["release"].update(threshold=3),
        lambda d: d["signed"]["roles"]["release"].update(threshold=0),
        lambda d: d["signed"]["roles"]["release"]["keyids"].append("00" * 32),
        lambda d: d["signed"]["limits"].pop("preservation"),
        lambda d: d["signed"]["limits"]["warrant"].update(max_window_s=-1),
        lambda d: d["signatures"][0].update(sig="zz"),
    ],
)
def test_schema_violations_are_malformed(mutate: object) -> None:
    world = make_world()
    doc = json.loads(world.root_bytes)
    mutate(doc)  # type: ignore[operator]
    with pytest.raises(TrustRootError) as exc:
        load_trust_root(json.dumps(doc).encode(), now=NOW)
    assert _code(exc) is RejectionCode.malformed


def test_key_entry_whose_id_is_not_its_hash_is_malformed() -> None:
    world = make_world()
    doc = json.loads(world.root_bytes)
    kid = next(iter(doc["signed"]["keys"]))
    doc["signed"]["keys"][kid]["public"] = public_key_hex(seeded_key("intruder"))
    with pytest.raises(TrustRootError) as exc:
        load_trust_root(json.dumps(doc).encode(), now=NOW)
    assert _code(exc) is RejectionCode.malformed


@pytest.mark.parametrize(
    "data", [b"", b"{", b"[]", b"null", b"\xff\xfe", b'{"signed":1}', b'{"signed":{},"signed":{}}']
)
def test_garbage_is_malformed(data: bytes) -> None:
    with pytest.raises(TrustRootError) as exc:
        load_trust_root(data, now=NOW)
    assert _code(exc) is RejectionCode.malformed


def test_oversized_root_is_refused_before_parsing() -> None:
    with pytest.raises(TrustRootError) as exc:
        load_trust_root(b" " * (MAX_ROOT_BYTES + 1), now=NOW)
    assert _code(exc) is RejectionCode.oversized


def _successor(
    world_root: TrustRoot, new_root_keys: list[Ed25519PrivateKey], version: int
) -> TrustRoot:
    keys = dict(world_root.keys)
    for k in new_root_keys:
        keys[key_id(k.public_key())] = k.public_key()
    ids = frozenset(key_id(k.public_key()) for k in new_root_keys)
    return replace(
        world_root,
        version=version,
        keys=MappingProxyType(keys),
        roles=MappingProxyType({**world_root.roles, "root": Role(ids, 2)}),
    )


def test_rotation_to_new_root_keys_needs_old_and_new_thresholds() -> None:
    world = make_world()
    new_keys = [seeded_key("root-3"), seeded_key("root-4")]
    new = _successor(world.root, new_keys, 2)
    # Both thresholds present: accepted.
    data = sign_trust_root(new, world.root_keys + new_keys)
    rotated = update_trust_root(world.root, data, now=NOW)
    assert rotated.version == 2
    assert rotated.roles["root"].keyids == frozenset(key_id(k.public_key()) for k in new_keys)
    # Only the new keys: an attacker who stole new keys cannot rotate alone.
    with pytest.raises(TrustRootError) as exc:
        update_trust_root(world.root, sign_trust_root(new, new_keys), now=NOW)
    assert _code(exc) is RejectionCode.below_threshold
    # Only the old keys: the new root must prove its own keys are held.
    with pytest.raises(TrustRootError) as exc:
        update_trust_root(world.root, sign_trust_root(new, world.root_keys), now=NOW)
    assert _code(exc) is RejectionCode.below_threshold


def test_rollback_and_skip_are_refused() -> None:
    world = make_world()
    # Check for a rollback attack: version 1 again (or lower) is refused.
    with pytest.raises(TrustRootError) as exc:
        update_trust_root(world.root, world.root_bytes, now=NOW)
    assert _code(exc) is RejectionCode.bad_version
    # Versions must not be skipped: 1 -> 3 is refused even when well signed.
    skip = replace(world.root, version=3)
    with pytest.raises(TrustRootError) as exc:
        update_trust_root(world.root, sign_trust_root(skip, world.root_keys), now=NOW)
    assert _code(exc) is RejectionCode.bad_version


def test_freeze_attack_expired_successor_is_refused() -> None:
    # Check for a freeze attack: a correctly signed but expired successor.
    world = make_world()
    stale = replace(world.root, version=2, expires=NOW - timedelta(days=1))
    with pytest.raises(TrustRootError) as exc:
        update_trust_root(world.root, sign_trust_root(stale, world.root_keys), now=NOW)
    assert _code(exc) is RejectionCode.root_expired


def test_mix_and_match_signatures_from_another_root_do_not_count() -> None:
    # Check for a mix-and-match attack: signatures copied from a different (real) v2
    # onto an attacker's v2 with a loosened limit must not verify.
    world = make_world()
    genuine = replace(world.root, version=2)
    genuine_doc = json.loads(sign_trust_root(genuine, world.root_keys))
    loosened = replace(
        world.root,
        version=2,
        limits=MappingProxyType(
            {**world.root.limits, "emergency": BasisLimits(30 * 24 * 3600, 30 * 24 * 3600)}
        ),
    )
    forged = json.loads(sign_trust_root(loosened, []))
    forged["signatures"] = genuine_doc["signatures"]
    with pytest.raises(TrustRootError) as exc:
        update_trust_root(world.root, json.dumps(forged).encode(), now=NOW)
    assert _code(exc) is RejectionCode.bad_signature


def test_trust_root_invariants_refuse_inconsistent_roots() -> None:
    world = make_world()
    with pytest.raises(ValueError, match="threshold"):
        Role(frozenset({"a"}), 2)
    with pytest.raises(ValueError, match="roles"):
        replace(world.root, roles=MappingProxyType({"root": world.root.roles["root"]}))
    with pytest.raises(ValueError, match="sign"):
        sign_trust_root(world.root, [world.root_keys[0], world.root_keys[0]])


def test_rotating_release_keys_retires_the_old_signers() -> None:
    # A compromised release key is retired by rotating the root: tokens signed by the
    # old release keys stop counting as soon as the device holds version 2.
    world = make_world()
    fresh = [seeded_key("policy-2"), seeded_key("review-2")]
    keys = dict(world.root.keys)
    keys.update({key_id(k.public_key()): k.public_key() for k in fresh})
    v2 = replace(
        world.root,
        version=2,
        keys=MappingProxyType(keys),
        roles=MappingProxyType(
            {
                "root": world.root.roles["root"],
                "release": Role(frozenset(key_id(k.public_key()) for k in fresh), 2),
            }
        ),
    )
    rotated = update_trust_root(world.root, sign_trust_root(v2, world.root_keys), now=NOW)
    ctx = VerificationContext(device_id=DEVICE, now=NOW, clock_synchronized=True)
    claims = world.claims()
    with pytest.raises(TokenRejected) as exc:
        verify_token(world.token(claims), root=rotated, context=ctx, replay=Replay())
    assert exc.value.code is RejectionCode.below_threshold
    accepted = verify_token(sign_token(claims, fresh), root=rotated, context=ctx, replay=Replay())
    assert accepted.jti == claims.jti
