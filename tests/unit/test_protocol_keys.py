"""Key encodings, key ids, canonical JSON, RFC 3339 times and the error codes."""

from __future__ import annotations

import hashlib
import pickle
from datetime import UTC, datetime, timedelta, timezone

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, generate_private_key
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol.errors import KeyFormatError, ProtocolError, RejectionCode, TokenRejected
from protocol.keys import (
    canonical_json,
    key_id,
    private_key_from_pem,
    private_key_to_pem,
    public_key_from_hex,
    public_key_hex,
)
from protocol.timefmt import format_time, parse_time


def test_key_id_is_sha256_of_raw_public_key() -> None:
    key = Ed25519PrivateKey.from_private_bytes(bytes(32)).public_key()
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert key_id(key) == hashlib.sha256(raw).hexdigest()
    assert public_key_hex(key) == raw.hex()


def test_public_key_hex_round_trip() -> None:
    key = Ed25519PrivateKey.generate()
    again = public_key_from_hex(public_key_hex(key))
    assert key_id(again) == key_id(key.public_key())


@pytest.mark.parametrize("bad", ["", "00" * 31, "AB" * 32, "zz" * 32, "00" * 33, " " + "0" * 63])
def test_public_key_from_hex_refuses_anything_else(bad: str) -> None:
    with pytest.raises(KeyFormatError):
        public_key_from_hex(bad)


def test_private_key_pem_round_trip() -> None:
    key = Ed25519PrivateKey.generate()
    pem = private_key_to_pem(key)
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    assert public_key_hex(private_key_from_pem(pem)) == public_key_hex(key)


def test_private_key_from_pem_refuses_garbage_and_other_key_types() -> None:
    for garbage in (b"", b"not a key", b"-----BEGIN PRIVATE KEY-----\nAAAA\n", b"\xff" * 5000):
        with pytest.raises(KeyFormatError):
            private_key_from_pem(garbage)
    ec_pem = generate_private_key(SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(KeyFormatError, match="Ed25519"):
        private_key_from_pem(ec_pem)


def test_canonical_json_is_sorted_compact_utf8_and_refuses_nan() -> None:
    assert canonical_json({"b": 1, "a": ["é", {"d": 2, "c": 3}]}) == (
        '{"a":["é",{"c":3,"d":2}],"b":1}'.encode()
    )
    with pytest.raises(ValueError, match="JSON compliant"):
        canonical_json({"x": float("nan")})


def test_times_have_one_spelling() -> None:
    t = parse_time("2026-06-01T12:00:00Z")
    assert t == datetime(2026, 6, 1, 12, tzinfo=UTC)
    assert format_time(t) == "2026-06-01T12:00:00Z"
    assert format_time(t.astimezone(timezone(timedelta(hours=2)))) == "2026-06-01T12:00:00Z"
    assert format_time(parse_time("2026-06-01T12:00:00.25Z")) == "2026-06-01T12:00:00.250000Z"
    for bad in (
        "2026-06-01T12:00:00+00:00",
        "2026-06-01 12:00:00Z",
        "2026-06-01T12:00Z",
        "2026-02-30T00:00:00Z",
        "2026-06-01t12:00:00z",
        1780315200,
    ):
        with pytest.raises(ValueError, match="time"):
            parse_time(bad)
    with pytest.raises(ValueError, match="naive"):
        format_time(datetime(2026, 1, 1))


def test_rejection_carries_code_and_detail_and_pickles() -> None:
    exc = TokenRejected(RejectionCode.expired, "expired at 5")
    assert isinstance(exc, ProtocolError)
    assert exc.code is RejectionCode.expired
    assert str(exc) == "expired: expired at 5"
    again = pickle.loads(pickle.dumps(exc))  # noqa: S301 (our own bytes)
    assert (again.code, again.detail) == (exc.code, exc.detail)
    assert RejectionCode("stale_seq") == "stale_seq"
