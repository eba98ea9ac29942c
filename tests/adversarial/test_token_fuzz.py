"""Garbage of every shape into the device's token check: only TokenRejected comes out.

Five property tests, 10,300 examples in all: raw bytes, arbitrary JSON, JWS-shaped
documents with random members, correctly signed tokens with random claim values (so that
the input reaches every later rule), and byte-level mutations of a valid token. Any
exception other than TokenRejected, or an acceptance that breaks an invariant, fails.
The trust root, manifest and MQTT payload parsers get 1,000 more examples: each may
raise only its own ProtocolError subclass.
"""

from __future__ import annotations

import base64
import contextlib
import json
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pyrage
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol._jws import b64url_encode
from protocol.errors import (
    ManifestError,
    MessageError,
    RejectionCode,
    TokenRejected,
    TrustRootError,
)
from protocol.keys import key_id
from protocol.manifest import EvidenceManifest, ManifestClip, sign_manifest, verify_manifest
from protocol.messages import (
    parse_escrow,
    parse_escrow_ack,
    parse_notice,
    parse_result,
    parse_status,
)
from protocol.token import (
    ReleaseClaims,
    VerificationContext,
    open_delivered_keys,
    verify_token,
)
from protocol.trust_root import load_trust_root, update_trust_root
from tests.unit.protocol_world import DEVICE, NOW, Replay, make_world

pytestmark = pytest.mark.slow

WORLD = make_world()
CLAIMS = WORLD.claims()
VALID = WORLD.token(CLAIMS)
VALID_PAYLOAD = CLAIMS.to_payload()


def fuzz(examples: int) -> settings:
    return settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**64), max_value=2**64)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12), inner, max_size=5)
    ),
    max_leaves=12,
)
small_json = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=4,
)
contexts = st.builds(
    lambda synced, last, seen: (
        VerificationContext(device_id=DEVICE, now=NOW, clock_synchronized=synced),
        Replay(jtis={"tok-1"} if seen else set(), seq=last),
    ),
    st.booleans(),
    st.integers(min_value=0, max_value=3),
    st.booleans(),
)


def check(
    data: bytes, context: VerificationContext | None = None, replay: Replay | None = None
) -> ReleaseClaims | None:
    """Run the device's check; fail on any outcome other than a verdict."""
    ctx = context or VerificationContext(device_id=DEVICE, now=NOW, clock_synchronized=True)
    try:
        claims = verify_token(data, root=WORLD.root, context=ctx, replay=replay or Replay())
    except TokenRejected as exc:
        if not exc.detail:
            raise AssertionError(f"rejection {exc.code} without a detail") from None
        return None
    # Whatever got through must satisfy the invariants the rules promise.
    assert claims.aud == DEVICE
    assert ctx.clock_synchronized
    assert claims.nbf - ctx.skew_s <= NOW.timestamp() < claims.exp
    assert claims.window.end.timestamp() <= claims.iat
    return claims


@fuzz(5000)
@given(st.binary(max_size=2048))
def test_raw_bytes(data: bytes) -> None:
    check(data)


@fuzz(1400)
@given(json_values)
def test_arbitrary_json(value: Any) -> None:
    check(json.dumps(value).encode())


def _segment(value: Any) -> str:
    return b64url_encode(json.dumps(value).encode())


jws_members = st.fixed_dictionaries(
    {},
    optional={
        "payload": st.one_of(small_json.map(_segment), st.text(max_size=30), small_json),
        "signatures": st.lists(
            st.fixed_dictionaries(
                {},
                optional={
                    "protected": st.one_of(
                        st.fixed_dictionaries(
                            {
                                "alg": st.sampled_from(["Ed25519", "EdDSA", "none"]),
                                "kid": st.sampled_from(sorted(WORLD.root.keys)),
                                "typ": st.sampled_from(["doorbell-release+jws", "JWT"]),
                            }
                        ).map(_segment),
                        small_json.map(_segment),
                        st.text(max_size=20),
                    ),
                    "signature": st.one_of(
                        st.binary(min_size=0, max_size=70).map(b64url_encode), small_json
                    ),
                    "header": small_json,
                },
            ),
            max_size=4,
        ),
        "extra": small_json,
    },
)


@fuzz(1000)
@given(jws_members, contexts)
def test_jws_shaped_documents(doc: dict[str, Any], ctx: tuple[VerificationContext, Replay]) -> None:
    check(json.dumps(doc).encode(), *ctx)


claim_values = st.one_of(
    json_values,
    st.integers(),
    st.sampled_from(
        [
            "warrant",
            "emergency",
            "preservation",
            "voluntary",
            DEVICE,
            "porch-2",
            "cloud-stub",
            "2026-06-01T09:00:00Z",
            "2026-06-01T13:00:00Z",
            "age1",
            "",
            "AAAA",
        ]
    ),
)


@fuzz(1400)
@given(
    st.dictionaries(
        st.sampled_from([*sorted(VALID_PAYLOAD), "hold_until", "notify_after", "extra"]),
        claim_values,
        max_size=4,
    ),
    st.lists(st.sampled_from(sorted(VALID_PAYLOAD)), max_size=2),
    contexts,
)
def test_signed_tokens_with_random_claims(
    changes: dict[str, Any], removed: list[str], ctx: tuple[VerificationContext, Replay]
) -> None:
    """Correctly signed by both release keys, so the input reaches every later rule."""
    payload = {**VALID_PAYLOAD, **changes}
    for name in removed:
        payload.pop(name, None)
    segment = _segment(payload)
    signatures = []
    for key in WORLD.release_keys:
        protected = _segment(
            {"alg": "Ed25519", "kid": key_id(key.public_key()), "typ": "doorbell-release+jws"}
        )
        sig = key.sign(f"{protected}.{segment}".encode())
        signatures.append({"protected": protected, "signature": b64url_encode(sig)})
    check(json.dumps({"payload": segment, "signatures": signatures}).encode(), *ctx)


@fuzz(1500)
@given(
    st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=len(VALID) - 1),
            st.integers(min_value=0, max_value=255),
        ),
        min_size=1,
        max_size=6,
    ),
    st.integers(min_value=0, max_value=len(VALID)),
)
def test_byte_mutations_of_a_valid_token(flips: list[tuple[int, int]], cut: int) -> None:
    data = bytearray(VALID)
    for index, value in flips:
        data[index] = value
    mutated = bytes(data)
    claims = check(mutated)
    if claims is not None:
        # Only bytes outside what is signed may change (JSON whitespace cannot exist in the
        # compact form, so in practice nothing): the claims must be the signed ones.
        assert claims.to_payload() == VALID_PAYLOAD
    check(VALID[:cut])


def test_mutated_delivered_keys_only_reject() -> None:
    """Corrupting any of ~300 spread bytes of the sealed keys is refused as bad_keys
    (age's authenticated encryption), never an exception from the library."""
    claims = verify_token(
        VALID,
        root=WORLD.root,
        replay=Replay(),
        context=VerificationContext(device_id=DEVICE, now=NOW, clock_synchronized=True),
    )
    assert claims.keys is not None
    sealed = base64.b64decode(claims.keys)
    step = max(1, len(sealed) // 300)
    for index in range(0, len(sealed), step):
        corrupt = bytearray(sealed)
        corrupt[index] ^= 0x41
        broken = replace(claims, keys=base64.b64encode(bytes(corrupt)).decode())
        with pytest.raises(TokenRejected) as exc:
            open_delivered_keys(broken, str(WORLD.transport), WORLD.recorded)
        assert exc.value.code is RejectionCode.bad_keys, index


def test_keys_do_not_open_with_another_transport_identity() -> None:
    claims = verify_token(
        VALID,
        root=WORLD.root,
        replay=None,
        context=VerificationContext(device_id=DEVICE, now=NOW, clock_synchronized=True),
    )
    with pytest.raises(TokenRejected) as exc:
        open_delivered_keys(claims, str(pyrage.x25519.Identity.generate()), WORLD.recorded)
    assert exc.value.code is RejectionCode.bad_keys


# The other parsers of hostile bytes: the same promise, one error type each.

ROOT_DOC = json.loads(WORLD.root_bytes)
DEVICE_KEY = WORLD.release_keys[0]
MANIFEST = sign_manifest(
    EvidenceManifest(
        jti="tok-1",
        device=DEVICE,
        created=NOW,
        clips=(
            ManifestClip(
                clip_id="c1",
                start=NOW - timedelta(hours=2),
                end=NOW - timedelta(hours=1),
                bytes=10,
                sha256="ab" * 32,
            ),
        ),
    ),
    DEVICE_KEY,
)
PARSERS = (parse_escrow, parse_escrow_ack, parse_result, parse_status, parse_notice)


@fuzz(300)
@given(
    st.one_of(
        st.binary(max_size=512),
        json_values.map(lambda v: json.dumps(v).encode()),
        st.dictionaries(
            st.sampled_from(["version", "expires", "issuer", "keys", "roles", "limits", "_type"]),
            small_json,
            max_size=3,
        ).map(
            lambda changes: json.dumps(
                {**ROOT_DOC, "signed": {**ROOT_DOC["signed"], **changes}}
            ).encode()
        ),
    )
)
def test_trust_root_parsers_only_raise_trust_root_error(data: bytes) -> None:
    with contextlib.suppress(TrustRootError):
        load_trust_root(data, now=NOW)
    with contextlib.suppress(TrustRootError):
        update_trust_root(WORLD.root, data, now=NOW)


@fuzz(300)
@given(
    st.one_of(
        st.binary(max_size=512),
        json_values.map(lambda v: json.dumps(v).encode()),
        st.lists(st.tuples(st.integers(0, len(MANIFEST) - 1), st.integers(0, 255)), min_size=1).map(
            lambda flips: _flip(MANIFEST, flips)
        ),
    )
)
def test_manifest_parser_only_raises_manifest_error(data: bytes) -> None:
    with contextlib.suppress(ManifestError):
        verify_manifest(data, DEVICE_KEY.public_key())


def _flip(data: bytes, flips: list[tuple[int, int]]) -> bytes:
    out = bytearray(data)
    for index, value in flips:
        out[index] = value
    return bytes(out)


@fuzz(400)
@given(
    st.sampled_from(PARSERS),
    st.one_of(
        st.binary(max_size=256),
        json_values.map(lambda v: json.dumps(v).encode()),
        st.dictionaries(
            st.sampled_from(
                [
                    "v",
                    "jti",
                    "epoch",
                    "status",
                    "reason",
                    "detail",
                    "clips",
                    "state",
                    "device",
                    "start",
                    "end",
                    "recipient",
                    "sealed",
                    "basis",
                    "case",
                    "window",
                    "released_at",
                ]
            ),
            claim_values,
            max_size=8,
        ).map(lambda v: json.dumps(v).encode()),
    ),
)
def test_message_parsers_only_raise_message_error(parser: Any, data: bytes) -> None:
    with contextlib.suppress(MessageError):
        parser(data)
