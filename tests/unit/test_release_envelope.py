"""The `release` message forms (docs/protocol.md section 11): a bare JWS means "no
proof"; an envelope is parsed strictly and hands back the token's exact bytes."""

from __future__ import annotations

import json

import pytest

from protocol.release_envelope import EnvelopeError, parse_release_message, wrap_release

TOKEN = b'{"payload":"eyJ2IjoxfQ","signatures":[{"protected":"e30","signature":"AA"}]}'
BUNDLE = b"sealed-doorbell/log-bundle/v1\nconsistency 0 1\n"


def test_a_bare_token_has_no_proof() -> None:
    for data in (TOKEN, b"not json", b"[1]", b'{"payload": 1}'):
        parsed = parse_release_message(data)
        assert (parsed.token, parsed.log) == (data, None)


def test_the_envelope_keeps_the_exact_token_bytes() -> None:
    spaced = b'{ "payload" : "eyJ2IjoxfQ" , "signatures" : [] }'
    for token in (TOKEN, spaced):
        parsed = parse_release_message(wrap_release(token, BUNDLE))
        assert (parsed.token, parsed.log) == (token, BUNDLE)


@pytest.mark.parametrize("envelope", [
    {"v": 1, "token": TOKEN.decode()},
    {"v": 1, "token": TOKEN.decode(), "log": BUNDLE.decode(), "extra": 1},
    {"v": 2, "token": TOKEN.decode(), "log": BUNDLE.decode()},
    {"v": True, "token": TOKEN.decode(), "log": BUNDLE.decode()},
    {"v": 1, "token": json.loads(TOKEN), "log": BUNDLE.decode()},
    {"v": 1, "token": "", "log": BUNDLE.decode()},
    {"v": 1, "token": TOKEN.decode(), "log": ""},
    {"v": 1, "token": TOKEN.decode(), "log": None},
])
def test_an_envelope_that_breaks_a_rule_is_refused(envelope: dict[str, object]) -> None:
    with pytest.raises(EnvelopeError):
        parse_release_message(json.dumps(envelope).encode())


def test_a_lone_surrogate_is_refused() -> None:
    with pytest.raises(EnvelopeError):
        parse_release_message(b'{"v":1,"token":"\\ud800","log":"x"}')
