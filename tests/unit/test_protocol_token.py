"""Release tokens: signing, every acceptance rule in order, and delivered keys."""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pyrage
import pytest
from joserfc import jws as joserfc_jws
from joserfc.jwk import OKPKey

from protocol._jws import b64url_decode, b64url_encode
from protocol.errors import KeyFormatError, RejectionCode, TokenRejected
from protocol.keys import key_id
from protocol.token import (
    MAX_TOKEN_BYTES,
    ReleaseClaims,
    VerificationContext,
    add_signature,
    open_delivered_keys,
    seal_keys_for_device,
    sign_token,
    verify_token,
)
from protocol.trust_root import TrustRoot
from tests.unit.protocol_world import DEVICE, NOW, Replay, World, make_world, seeded_key


@pytest.fixture(scope="module")
def world() -> World:
    return make_world()


def ctx(**changes: Any) -> VerificationContext:
    base: dict[str, Any] = {"device_id": DEVICE, "now": NOW, "clock_synchronized": True}
    base.update(changes)
    return VerificationContext(**base)


def verify(
    world: World,
    token: bytes,
    *,
    root: TrustRoot | None = None,
    replay: Replay | None = None,
    **context: Any,
) -> ReleaseClaims:
    return verify_token(
        token,
        root=root or world.root,
        context=ctx(**context),
        replay=replay if replay is not None else Replay(),
    )


def code_of(world: World, token: bytes, **kwargs: Any) -> RejectionCode:
    with pytest.raises(TokenRejected) as exc:
        verify(world, token, **kwargs)
    assert exc.value.detail
    return exc.value.code


def reshape(token: bytes, edit: Any) -> bytes:
    doc = json.loads(token)
    edit(doc)
    return json.dumps(doc).encode()


def test_valid_warrant_token_is_accepted(world: World) -> None:
    claims = world.claims()
    got = verify(world, world.token(claims))
    assert got == claims
    assert got.window.start == NOW - timedelta(hours=3)


def test_valid_preservation_token_is_accepted(world: World) -> None:
    claims = world.preservation_claims()
    got = verify(world, world.token(claims))
    assert got.hold_until == NOW + timedelta(days=30)
    assert (got.keys, got.recipient, got.upload) == (None, None, None)


def test_token_is_a_general_json_jws_that_joserfc_verifies(world: World) -> None:
    claims = world.claims()
    doc = json.loads(world.token(claims))
    assert set(doc) == {"payload", "signatures"}
    for sig in doc["signatures"]:
        header = json.loads(b64url_decode(sig["protected"]))
        assert header["alg"] == "Ed25519"
        assert header["typ"] == "doorbell-release+jws"
        assert header["kid"] in world.root.roles["release"].keyids
    keys = {kid: OKPKey.import_key(pub) for kid, pub in world.root.keys.items()}
    obj = joserfc_jws.deserialize_json(
        doc, lambda m: keys[m.headers()["kid"]], algorithms=["Ed25519"]
    )
    assert json.loads(obj.payload) == claims.to_payload()


def test_threshold_collection_by_add_signature(world: World) -> None:
    one = sign_token(world.claims(), world.release_keys[:1])
    # One of two required signatures: below threshold.
    assert code_of(world, one) is RejectionCode.below_threshold
    both = add_signature(one, world.release_keys[1])
    assert verify(world, both).jti == "tok-1"
    with pytest.raises(ValueError, match="already signed"):
        add_signature(both, world.release_keys[0])


def test_same_signature_repeated_counts_once(world: World) -> None:
    one = sign_token(world.claims(), world.release_keys[:1])
    doubled = reshape(one, lambda d: d["signatures"].append(d["signatures"][0]))
    assert code_of(world, doubled) is RejectionCode.below_threshold


def test_untrusted_key_using_a_trusted_kid_is_bad_signature(world: World) -> None:
    # The attacker signs with their own key but writes the review key's kid.
    intruder = seeded_key("intruder")
    review_kid = key_id(world.release_keys[1].public_key())
    one = sign_token(world.claims(), world.release_keys[:1])
    forged = json.loads(sign_token(world.claims(), [intruder]))
    header = b64url_encode(
        json.dumps({"alg": "Ed25519", "kid": review_kid, "typ": "doorbell-release+jws"}).encode()
    )
    signing_input = f"{header}.{forged['payload']}".encode()
    entry = {"protected": header, "signature": b64url_encode(intruder.sign(signing_input))}
    token = reshape(one, lambda d: d["signatures"].append(entry))
    assert code_of(world, token) is RejectionCode.bad_signature


def test_signatures_of_unknown_keys_do_not_count(world: World) -> None:
    token = sign_token(world.claims(), [world.release_keys[0], seeded_key("intruder")])
    assert code_of(world, token) is RejectionCode.below_threshold


def test_root_keys_cannot_sign_releases(world: World) -> None:
    token = sign_token(world.claims(), world.root_keys)
    assert code_of(world, token) is RejectionCode.below_threshold


def test_payload_swapped_under_valid_signatures_is_bad_signature(world: World) -> None:
    other = json.loads(world.token(world.claims(aud="porch-2")))
    token = reshape(world.token(), lambda d: d.update(payload=other["payload"]))
    assert code_of(world, token) is RejectionCode.bad_signature


def test_kid_in_unprotected_header_is_refused(world: World) -> None:
    token = reshape(world.token(), lambda d: d["signatures"][0].update(header={"kid": "00" * 32}))
    assert code_of(world, token) is RejectionCode.bad_header


@pytest.mark.parametrize(
    "header",
    [
        {"alg": "EdDSA", "typ": "doorbell-release+jws"},
        {"alg": "none", "typ": "doorbell-release+jws"},
        {"alg": "Ed25519", "typ": "JWT"},
        {"alg": "Ed25519", "typ": "doorbell-manifest+jws"},
        {"alg": "Ed25519", "typ": "doorbell-release+jws", "crit": ["b64"]},
        {"alg": "Ed25519"},
    ],
)
def test_wrong_header_is_bad_header(world: World, header: dict[str, Any]) -> None:
    key = world.release_keys[0]
    doc = json.loads(world.token())
    full = {"kid": key_id(key.public_key()), **header}
    protected = b64url_encode(json.dumps(full).encode())
    sig = key.sign(f"{protected}.{doc['payload']}".encode())
    doc["signatures"][0] = {"protected": protected, "signature": b64url_encode(sig)}
    assert code_of(world, json.dumps(doc).encode()) is RejectionCode.bad_header


def test_oversized_is_refused_before_parsing(world: World) -> None:
    assert code_of(world, b"{" * (MAX_TOKEN_BYTES + 1)) is RejectionCode.oversized
    assert code_of(world, world.token(), max_token_bytes=100) is RejectionCode.oversized


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"null",
        b"[]",
        b"{}",
        b'{"payload":"","signatures":[]}',
        b"\xff",
        b'{"payload":"e30","signatures":[{"protected":"e30","signature":"AA"}]}',
        b'{"payload":"e30","payload":"e30","signatures":[]}',
        b'{"payload":NaN}',
    ],
)
def test_garbage_is_malformed(world: World, data: bytes) -> None:
    assert code_of(world, data) is RejectionCode.malformed


@pytest.mark.parametrize(
    "edit",
    [
        lambda p: p.update(v=2),
        lambda p: p.update(v=True),
        lambda p: p.update(extra="x"),
        lambda p: p.pop("jti"),
        lambda p: p.update(jti="../../etc"),
        lambda p: p.update(seq=0),
        lambda p: p.update(seq="1"),
        lambda p: p.update(exp=p["iat"]),
        lambda p: p.update(nbf=p["iat"] - 1),
        lambda p: p.update(basis="voluntary"),
        lambda p: p["window"].update(end=p["window"]["start"]),
        lambda p: p["window"].update(start="yesterday"),
        lambda p: p["case"].pop("docket"),
        lambda p: p["case"].update(document_sha256="AB" * 32),
        lambda p: p.pop("keys"),
        lambda p: p.update(hold_until="2026-07-01T00:00:00Z"),
        lambda p: p.update(upload="ftp://x/y"),
        lambda p: p.update(notify_after="soon"),
    ],
)
def test_claims_outside_the_schema_are_malformed(world: World, edit: Any) -> None:
    payload = world.claims().to_payload()
    edit(payload)
    raw = json.dumps(payload).encode()
    token = reshape(world.token(), lambda d: d.update(payload=b64url_encode(raw)))
    # The schema is checked before signatures: the code is malformed, not bad_signature.
    assert code_of(world, token) is RejectionCode.malformed


def test_sign_token_refuses_claims_the_device_would_refuse(world: World) -> None:
    with pytest.raises(ValueError, match="malformed"):
        sign_token(world.claims(jti="has space"), world.release_keys)
    with pytest.raises(ValueError, match="twice"):
        sign_token(world.claims(), [world.release_keys[0], world.release_keys[0]])


def test_other_device_is_wrong_device(world: World) -> None:
    assert code_of(world, world.token(world.claims(aud="porch-2"))) is RejectionCode.wrong_device


def test_other_issuer_is_wrong_issuer(world: World) -> None:
    assert code_of(world, world.token(world.claims(iss="evil"))) is RejectionCode.wrong_issuer


def test_unsynchronized_clock_defers_before_judging_time(world: World) -> None:
    expired = world.claims(iat=0, nbf=0, exp=60, window=world.claims().window)
    token = world.token(
        replace(
            expired,
            window=replace(
                expired.window,
                start=expired.window.start.replace(year=1969),
                end=expired.window.start.replace(year=1969, hour=13),
            ),
        )
    )
    assert code_of(world, world.token(), clock_synchronized=False) is (
        RejectionCode.clock_unsynchronized
    )
    assert code_of(world, token, clock_synchronized=False) is RejectionCode.clock_unsynchronized


def test_time_rules_with_skew(world: World) -> None:
    now = int(NOW.timestamp())
    early = world.claims(iat=now - 100, nbf=now + 61, exp=now + 1000)
    assert code_of(world, world.token(early)) is RejectionCode.not_yet_valid
    within_skew = world.claims(iat=now - 100, nbf=now + 60, exp=now + 1000)
    assert verify(world, world.token(within_skew)).nbf == now + 60
    future_iat = world.claims(iat=now + 61, nbf=now + 61, exp=now + 1000)
    assert code_of(world, world.token(future_iat)) is RejectionCode.not_yet_valid
    at_exp = world.claims(iat=now - 100, nbf=now - 100, exp=now)
    assert code_of(world, world.token(at_exp)) is RejectionCode.expired


def test_token_life_limit_per_basis_and_owner_tightening(world: World) -> None:
    now = int(NOW.timestamp())
    emergency = world.claims(basis="emergency", iat=now - 10, nbf=now - 10, exp=now - 10 + 3601)
    assert code_of(world, world.token(emergency)) is RejectionCode.token_life_too_long
    ok = world.claims(iat=now - 10, nbf=now - 10, exp=now + 1800)
    assert verify(world, world.token(ok)).exp == now + 1800
    assert code_of(world, world.token(ok), max_token_life_s={"warrant": 600}) is (
        RejectionCode.token_life_too_long
    )
    # The owner cannot loosen: a huge owner limit leaves the root's 24 h in force.
    long = world.claims(iat=now - 10, nbf=now - 10, exp=now - 10 + 25 * 3600)
    assert code_of(world, world.token(long), max_token_life_s={"warrant": 10**7}) is (
        RejectionCode.token_life_too_long
    )


def test_replay_and_stale_seq(world: World) -> None:
    token = world.token(world.claims(seq=5))
    assert code_of(world, token, replay=Replay(jtis={"tok-1"})) is RejectionCode.replayed
    assert code_of(world, token, replay=Replay(seq=5)) is RejectionCode.stale_seq
    assert code_of(world, token, replay=Replay(seq=9)) is RejectionCode.stale_seq
    assert verify(world, token, replay=Replay(seq=4)).seq == 5
    # Without replay state (offline checks) the rule is skipped.
    assert verify_token(token, root=world.root, context=ctx(), replay=None).seq == 5


def test_a_window_half_a_second_too_long_is_not_rounded_away(world: World) -> None:
    end = NOW - timedelta(hours=1)
    claims = world.claims(window=replace(world.claims().window,
                                         start=end - timedelta(hours=72, seconds=0.5), end=end))
    with pytest.raises(TokenRejected) as exc:
        verify(world, world.token(claims))
    assert exc.value.code is RejectionCode.window_too_long
    assert exc.value.detail == "window is 259200.5 s, the warrant limit is 259200 s"


def test_basis_refused_by_owner(world: World) -> None:
    token = world.token(world.claims(basis="emergency"))
    assert code_of(world, token, allowed_bases=frozenset({"warrant"})) is (
        RejectionCode.basis_not_allowed
    )


def test_window_length_per_basis_and_owner_tightening(world: World) -> None:
    end = NOW - timedelta(hours=1)
    long_emergency = world.claims(
        basis="emergency",
        window=replace(world.claims().window, start=end - timedelta(hours=12, seconds=1), end=end),
    )
    assert code_of(world, world.token(long_emergency)) is RejectionCode.window_too_long
    twelve = replace(
        long_emergency, window=replace(long_emergency.window, start=end - timedelta(hours=12))
    )
    assert verify(world, world.token(twelve)).basis == "emergency"
    assert code_of(world, world.token(twelve), max_window_s={"emergency": 3600}) is (
        RejectionCode.window_too_long
    )
    long_warrant = world.claims(
        window=replace(world.claims().window, start=end - timedelta(hours=73), end=end)
    )
    assert code_of(world, world.token(long_warrant), max_window_s={"warrant": 10**8}) is (
        RejectionCode.window_too_long
    )


def test_window_ending_after_iat_is_in_future(world: World) -> None:
    claims = world.claims()
    future = replace(
        claims, window=replace(claims.window, end=NOW, start=NOW - timedelta(hours=1))
    )  # iat is NOW - 10 s
    assert code_of(world, world.token(future)) is RejectionCode.window_in_future


def test_preservation_hold_limit(world: World) -> None:
    token = world.token(world.preservation_claims(hold_until=NOW + timedelta(days=91)))
    assert code_of(world, token) is RejectionCode.hold_too_long


@pytest.mark.parametrize(
    "recipient", ["age1nope", "not-age", "age1" + "q" * 58, "AGE-SECRET-KEY-1QQQ"]
)
def test_recipient_must_parse(world: World, recipient: str) -> None:
    token = world.token(world.claims(recipient=recipient))
    assert code_of(world, token) is RejectionCode.bad_recipient


@pytest.mark.parametrize(
    "keys",
    [
        "",
        "%%%",
        "aGVsbG8",
        base64.b64encode(b"hello").decode(),
        base64.urlsafe_b64encode(b"age-encryption.org/v1\n??").decode(),
    ],
)
def test_keys_must_be_base64_of_an_age_file(world: World, keys: str) -> None:
    assert code_of(world, world.token(world.claims(keys=keys))) is RejectionCode.bad_keys


def test_open_delivered_keys(world: World) -> None:
    claims = verify(world, world.token())
    opened = open_delivered_keys(claims, str(world.transport), world.recorded)
    assert opened == {world.epoch_id: str(world.epoch_identity)}


def test_delivered_identity_must_match_recorded_recipient(world: World) -> None:
    claims = verify(world, world.token())
    other = str(pyrage.x25519.Identity.generate().to_public())
    with pytest.raises(TokenRejected) as exc:
        open_delivered_keys(claims, str(world.transport), {world.epoch_id: other})
    assert exc.value.code is RejectionCode.keys_mismatch
    with pytest.raises(TokenRejected) as exc:
        open_delivered_keys(claims, str(world.transport), {})
    assert exc.value.code is RejectionCode.keys_mismatch


def test_keys_for_another_transport_key_are_bad_keys(world: World) -> None:
    stranger = pyrage.x25519.Identity.generate()
    sealed = seal_keys_for_device(
        {world.epoch_id: str(world.epoch_identity)}, str(stranger.to_public())
    )
    claims = verify(world, world.token(world.claims(keys=sealed)))
    with pytest.raises(TokenRejected) as exc:
        open_delivered_keys(claims, str(world.transport), world.recorded)
    assert exc.value.code is RejectionCode.bad_keys


def test_keys_plaintext_of_wrong_shape_is_bad_keys(world: World) -> None:
    for plaintext in (
        b"AGE-SECRET-KEY-1",
        b'{"epochs": []}',
        b'{"epochs": {"x": "y"}}',
        b'{"epochs": {"1-0a1b2c3d": "AGE-SECRET-KEY-1QQ"}}',
    ):
        sealed = pyrage.encrypt(plaintext, [world.transport.to_public()])
        keys = base64.b64encode(sealed).decode()
        claims = verify(world, world.token(world.claims(keys=keys)))
        with pytest.raises(TokenRejected) as exc:
            open_delivered_keys(claims, str(world.transport), world.recorded)
        assert exc.value.code is RejectionCode.bad_keys


def test_preservation_token_has_no_keys_to_open(world: World) -> None:
    claims = verify(world, world.token(world.preservation_claims()))
    with pytest.raises(TokenRejected) as exc:
        open_delivered_keys(claims, str(world.transport), world.recorded)
    assert exc.value.code is RejectionCode.bad_keys


def test_bad_local_transport_identity_is_a_key_error(world: World) -> None:
    claims = verify(world, world.token())
    with pytest.raises(KeyFormatError):
        open_delivered_keys(claims, "nonsense", world.recorded)
    with pytest.raises(KeyFormatError):
        seal_keys_for_device({world.epoch_id: "nonsense"}, str(world.transport.to_public()))
    with pytest.raises(KeyFormatError):
        seal_keys_for_device(
            {"bad id": str(world.epoch_identity)}, str(world.transport.to_public())
        )


def test_first_failing_rule_wins(world: World) -> None:
    # Wrong device AND expired AND replayed: the earlier rule (aud) is reported.
    now = int(NOW.timestamp())
    claims = world.claims(
        aud="porch-2",
        iat=now - 7200,
        nbf=now - 7200,
        exp=now - 3600,
        window=replace(
            world.claims().window, start=NOW - timedelta(hours=4), end=NOW - timedelta(hours=3)
        ),
    )
    assert code_of(world, world.token(claims), replay=Replay(jtis={"tok-1"})) is (
        RejectionCode.wrong_device
    )


def test_context_refuses_loosening_shapes() -> None:
    with pytest.raises(ValueError, match="positive"):
        ctx(max_window_s={"warrant": 0})
    with pytest.raises(ValueError, match="basis"):
        ctx(max_window_s={"voluntary": 10})
    with pytest.raises(ValueError, match="subset"):
        ctx(allowed_bases=frozenset({"voluntary"}))
    with pytest.raises(ValueError, match="aware"):
        ctx(now=NOW.replace(tzinfo=None))


@pytest.mark.parametrize(
    "segment", ["e30=", "e3+", "e3/", "e 30", "e", "e31", "ZZ", "é30", "e30\n"]
)
def test_base64url_has_one_spelling(segment: str) -> None:
    # Padding, the standard alphabet, whitespace, impossible lengths and non-zero
    # trailing bits ("e31" and "ZZ" decode, leniently, to the same bytes as other strings).
    with pytest.raises(ValueError, match="base64url"):
        b64url_decode(segment)


def test_base64url_round_trip() -> None:
    for size in range(0, 40):
        raw = bytes(range(size))
        assert b64url_decode(b64url_encode(raw)) == raw
