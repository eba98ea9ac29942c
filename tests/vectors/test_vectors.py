"""Every committed vector gives its expected verdict with this implementation.

The same files let another implementation check itself (docs/protocol.md, "Test
vectors"): this test is the reference reading of the format.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from protocol.errors import RejectionCode, TokenRejected, TrustRootError
from protocol.timefmt import parse_time
from protocol.token import (
    ReleaseClaims,
    VerificationContext,
    open_delivered_keys,
    verify_token,
)
from protocol.trust_root import TrustRoot, load_trust_root, sign_trust_root, update_trust_root

HERE = Path(__file__).resolve().parent
VECTORS: Mapping[str, Any] = json.loads((HERE / "vectors.json").read_text(encoding="utf-8"))
ROOT_BYTES = (HERE / VECTORS["trust_root"]).read_bytes()


class VectorReplay:
    def __init__(self, state: Mapping[str, Any]) -> None:
        self._seen = frozenset(state["seen"])
        self._last = int(state["last_seq"])

    def seen(self, jti: str) -> bool:
        return jti in self._seen

    def last_seq(self) -> int:
        return self._last


def context_of(vector: Mapping[str, Any]) -> VerificationContext:
    ctx = vector["context"]
    owner = ctx["owner"] or {"allowed_bases": None, "max_window_s": {}, "max_token_life_s": {}}
    allowed = owner["allowed_bases"]
    return VerificationContext(
        device_id=ctx["device_id"],
        now=parse_time(ctx["now"]),
        clock_synchronized=ctx["clock_synchronized"],
        skew_s=ctx["skew_s"],
        allowed_bases=None if allowed is None else frozenset(allowed),
        max_window_s=owner["max_window_s"],
        max_token_life_s=owner["max_token_life_s"],
    )


def root_at(now: str) -> TrustRoot:
    return load_trust_root(ROOT_BYTES, now=parse_time(now))


def run_token_vector(
    vector: Mapping[str, Any],
) -> tuple[bool, str | None, ReleaseClaims | None, dict[str, str] | None]:
    """(accepted, code, claims, epochs) as a device would reach them."""
    token = base64.b64decode(vector["token_b64"])
    ctx = vector["context"]
    replay = VectorReplay(ctx["replay"]) if ctx["replay"] is not None else None
    try:
        claims = verify_token(
            token, root=root_at(ctx["now"]), context=context_of(vector), replay=replay
        )
    except TokenRejected as exc:
        return False, exc.code.value, None, None
    if claims.keys is None:
        return True, None, claims, None
    device = VECTORS["device"]
    try:
        epochs = open_delivered_keys(
            claims, device["transport_identity"], device["recorded_epochs"]
        )
    except TokenRejected as exc:
        return False, exc.code.value, claims, None
    return True, None, claims, epochs


TOKEN_VECTORS = VECTORS["tokens"]


@pytest.mark.parametrize("vector", TOKEN_VECTORS, ids=[v["name"] for v in TOKEN_VECTORS])
def test_token_vector(vector: Mapping[str, Any]) -> None:
    accepted, code, claims, epochs = run_token_vector(vector)
    expected = vector["expected"]
    assert (accepted, code) == (expected["accepted"], expected.get("code")), vector["description"]
    if accepted:
        assert claims is not None
        assert claims.to_payload() == expected["claims"]
        assert epochs == expected.get("epochs")
    elif expected["stage"] == "open_keys":
        assert claims is not None  # verification passed; opening the keys failed


def test_every_rejection_code_of_a_token_has_a_vector() -> None:
    covered = {v["expected"].get("code") for v in TOKEN_VECTORS}
    from tests.vectors.test_vectors_v2 import V2_CODES  # covered by the v2 vectors

    token_codes = set(RejectionCode) - {RejectionCode.root_expired, RejectionCode.bad_version}
    token_codes -= V2_CODES
    assert token_codes <= covered


ROOT_VECTORS = VECTORS["roots"]


@pytest.mark.parametrize("vector", ROOT_VECTORS, ids=[v["name"] for v in ROOT_VECTORS])
def test_root_vector(vector: Mapping[str, Any]) -> None:
    data = base64.b64decode(vector["root_b64"])
    now = parse_time(vector["now"])
    expected = vector["expected"]
    verdict: tuple[bool, str | int]
    try:
        if vector["update_from_current"]:
            verdict = (True, update_trust_root(root_at(vector["now"]), data, now=now).version)
        else:
            verdict = (True, load_trust_root(data, now=now).version)
    except TrustRootError as exc:
        verdict = (False, exc.code.value)
    wanted = expected["version"] if expected["accepted"] else expected["code"]
    assert verdict == (expected["accepted"], wanted)


def test_root_codes_are_covered() -> None:
    covered = {v["expected"].get("code") for v in ROOT_VECTORS}
    assert {"root_expired", "bad_version", "below_threshold"} <= covered


def test_vectors_are_reproducible_from_their_seeds() -> None:
    # Everything but age ciphertext is deterministic: the trust root and a token without
    # keys come out byte for byte as committed.
    from tests.vectors import generate

    assert sign_trust_root(generate.make_root(), generate.ROOT_KEYS) == ROOT_BYTES
    committed = base64.b64decode(
        next(v for v in TOKEN_VECTORS if v["name"] == "valid-preservation")["token_b64"]
    )
    assert generate.signed(generate.preservation()) == committed
