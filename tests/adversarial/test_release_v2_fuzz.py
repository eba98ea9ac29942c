"""Hostile bytes against the v2 verifier: nothing but `TokenRejected` comes out, and no
change to a valid warrant token (its bytes, or the court's statement inside it, even
re-signed by the policy key and a reviewer) is accepted unless it is the token itself."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.errors import TokenRejected
from protocol.release_check import verify_release
from protocol.token import VerificationContext
from tests.vectors import generate_v2 as g

ROOT = g.make_root_v2()
CONTEXT = VerificationContext(device_id=g.DEVICE, now=g.NOW, clock_synchronized=True)
GOOD_CLAIMS = g.warrant()
GOOD = g.signed(GOOD_CLAIMS, g.POLICY, g.ALICE)


def test_the_control_is_accepted() -> None:
    assert verify_release(GOOD, root=ROOT, context=CONTEXT, replay=None).jti == GOOD_CLAIMS.jti


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=0, max_value=len(GOOD) - 1), st.integers(min_value=1, max_value=255))
def test_a_changed_byte_is_rejected(position: int, delta: int) -> None:
    data = bytearray(GOOD)
    data[position] = (data[position] + delta) % 256
    try:
        verify_release(bytes(data), root=ROOT, context=CONTEXT, replay=None)
    except TokenRejected:
        return
    # a change JSON does not see (whitespace between members) leaves the same token
    assert json.loads(bytes(data)) == json.loads(GOOD)


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0), st.integers(min_value=1, max_value=255))
def test_a_changed_statement_even_freshly_signed_by_policy_and_reviewer_is_rejected(
    seed: int, delta: int
) -> None:
    warrant = GOOD_CLAIMS.warrant
    assert warrant is not None
    raw = bytearray(warrant.statement_bytes)
    raw[seed % len(raw)] = (raw[seed % len(raw)] + delta) % 256
    token = g.raw_warrant_payload(bytes(raw), warrant.court_sig)
    with pytest.raises(TokenRejected) as caught:
        verify_release(token, root=ROOT, context=CONTEXT, replay=None)
    # another court id names no court of the root; anything else breaks the signature
    assert caught.value.code.value in {"malformed", "court_unknown", "court_signature_invalid"}


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2048))
def test_random_bytes_only_ever_give_a_rejection(data: bytes) -> None:
    try:
        verify_release(data, root=ROOT, context=CONTEXT, replay=None)
    except TokenRejected:
        return
    raise AssertionError("random bytes were accepted")
