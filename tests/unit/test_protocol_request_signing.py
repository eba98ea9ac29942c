"""Signed device requests: what is bound, freshness, and refusal of look-alikes."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from protocol.errors import RequestSignatureError
from protocol.request_signing import (
    HEADER_DEVICE,
    HEADER_JTI,
    HEADER_SIGNATURE,
    HEADER_TIMESTAMP,
    sign_request,
    signing_input,
    verify_request,
)
from tests.unit.protocol_world import seeded_key

KEY = seeded_key("device-identity")
BODY = hashlib.sha256(b"chunk").hexdigest()
REQ: dict[str, Any] = {
    "method": "PUT",
    "path": "/v1/evidence/tok-1/clip-7",
    "query": "offset=1024",
    "timestamp": 1_780_000_000,
    "body_sha256": BODY,
    "device": "porch-1",
    "jti": "tok-1",
}


def test_headers_are_the_contract_names() -> None:
    assert (HEADER_DEVICE, HEADER_JTI, HEADER_TIMESTAMP, HEADER_SIGNATURE) == (
        "X-Doorbell-Device",
        "X-Doorbell-Jti",
        "X-Doorbell-Timestamp",
        "X-Doorbell-Signature",
    )


def test_signing_input_is_the_documented_lines() -> None:
    assert signing_input(**REQ) == (
        b"doorbell-request-v1\nPUT\n/v1/evidence/tok-1/clip-7\noffset=1024\n1780000000\n"
        + BODY.encode()
        + b"\nporch-1\ntok-1"
    )


def test_round_trip() -> None:
    sig = sign_request(KEY, **REQ)
    assert "=" not in sig
    verify_request(KEY.public_key(), sig, now=REQ["timestamp"] + 300, **REQ)
    verify_request(KEY.public_key(), sig, now=REQ["timestamp"] - 300, **REQ)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("method", "GET"),
        ("path", "/v1/evidence/tok-1/clip-8"),
        ("query", "offset=0"),
        ("timestamp", 1_780_000_001),
        ("body_sha256", "00" * 32),
        ("device", "porch-2"),
        ("jti", "tok-2"),
    ],
)
def test_every_field_is_bound(field: str, value: Any) -> None:
    sig = sign_request(KEY, **REQ)
    changed = {**REQ, field: value}
    with pytest.raises(RequestSignatureError, match="does not verify"):
        verify_request(KEY.public_key(), sig, now=REQ["timestamp"], **changed)


def test_stale_and_future_timestamps_are_refused() -> None:
    sig = sign_request(KEY, **REQ)
    for now in (REQ["timestamp"] + 301, REQ["timestamp"] - 301):
        with pytest.raises(RequestSignatureError, match="more than 300 s"):
            verify_request(KEY.public_key(), sig, now=now, **REQ)


def test_other_key_and_garbage_signatures_are_refused() -> None:
    sig = sign_request(seeded_key("other"), **REQ)
    with pytest.raises(RequestSignatureError, match="does not verify"):
        verify_request(KEY.public_key(), sig, now=REQ["timestamp"], **REQ)
    for garbage in ("", "AAAA", sig + "=", sig[:-2], "!" * 86):
        with pytest.raises(RequestSignatureError, match="base64url"):
            verify_request(KEY.public_key(), garbage, now=REQ["timestamp"], **REQ)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("method", "put"),
        ("path", "no-slash"),
        ("query", "a\nb"),
        ("device", "x\ny"),
        ("jti", ""),
        ("timestamp", -1),
        ("timestamp", True),
        ("body_sha256", "AB" * 32),
    ],
)
def test_fields_that_could_collide_are_refused(field: str, value: Any) -> None:
    with pytest.raises(RequestSignatureError):
        signing_input(**{**REQ, field: value})
