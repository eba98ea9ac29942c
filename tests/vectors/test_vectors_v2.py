"""Every committed trust root v2 vector gives its expected verdict with this implementation
(docs/protocol.md, "Test vectors"; docs/adr/0013-trust-root-v2.md)."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from protocol.errors import RejectionCode, TokenRejected, TrustRootError
from protocol.release_check import verify_release
from protocol.timefmt import parse_time
from protocol.token import open_delivered_keys
from protocol.trust_root import load_trust_root, sign_trust_root
from protocol.trust_root_v2 import (
    AnyTrustRoot,
    TrustRootV2,
    load_any_trust_root,
    load_trust_root_v2,
    update_any_trust_root,
)
from tests.vectors.test_vectors import VectorReplay, context_of

HERE = Path(__file__).resolve().parent / "v2"
VECTORS: Mapping[str, Any] = json.loads((HERE / "vectors-v2.json").read_text(encoding="utf-8"))
ROOT_BYTES = (HERE / VECTORS["trust_root"]).read_bytes()
V1_ROOT_BYTES = (HERE / VECTORS["trust_root_v1"]).read_bytes()

V2_CODES = frozenset(
    {
        RejectionCode.policy_signature_missing,
        RejectionCode.review_signature_missing,
        RejectionCode.review_orgs_too_few,
        RejectionCode.warrant_missing,
        RejectionCode.court_unknown,
        RejectionCode.court_signature_invalid,
        RejectionCode.warrant_order_type,
        RejectionCode.warrant_wrong_device,
        RejectionCode.warrant_window_exceeded,
        RejectionCode.warrant_not_in_force,
        RejectionCode.warrant_case_mismatch,
    }
)


def root_at(now: str) -> TrustRootV2:
    return load_trust_root_v2(ROOT_BYTES, now=parse_time(now))


TOKEN_VECTORS = VECTORS["tokens"]


@pytest.mark.parametrize("vector", TOKEN_VECTORS, ids=[v["name"] for v in TOKEN_VECTORS])
def test_token_vector_v2(vector: Mapping[str, Any]) -> None:
    token = base64.b64decode(vector["token_b64"])
    ctx = vector["context"]
    replay = VectorReplay(ctx["replay"]) if ctx["replay"] is not None else None
    expected = vector["expected"]
    if not expected["accepted"]:
        with pytest.raises(TokenRejected) as caught:
            verify_release(token, root=root_at(ctx["now"]), context=context_of(vector),
                           replay=replay)
        assert caught.value.code.value == expected["code"], vector["description"]
        return
    claims = verify_release(
        token, root=root_at(ctx["now"]), context=context_of(vector), replay=replay
    )
    assert claims.to_payload() == expected["claims"]
    if claims.keys is not None:
        device = VECTORS["device"]
        epochs = open_delivered_keys(
            claims, device["transport_identity"], device["recorded_epochs"]
        )
        assert epochs == expected["epochs"]


def test_every_v2_code_has_a_vector() -> None:
    covered = {v["expected"].get("code") for v in TOKEN_VECTORS}
    assert set(V2_CODES) <= covered


ROOT_VECTORS = VECTORS["roots"]


def _current(which: str | None, now: str) -> AnyTrustRoot | None:
    if which is None:
        return None
    data = V1_ROOT_BYTES if which == "v1" else ROOT_BYTES
    return load_any_trust_root(data, now=parse_time(now))


@pytest.mark.parametrize("vector", ROOT_VECTORS, ids=[v["name"] for v in ROOT_VECTORS])
def test_root_vector_v2(vector: Mapping[str, Any]) -> None:
    data = base64.b64decode(vector["root_b64"])
    now = parse_time(vector["now"])
    expected = vector["expected"]
    current = _current(vector["update_from"], vector["now"])
    verdict: tuple[bool, str | int]
    try:
        if current is None:
            verdict = (True, load_any_trust_root(data, now=now).version)
        else:
            verdict = (True, update_any_trust_root(current, data, now=now).version)
    except TrustRootError as exc:
        verdict = (False, exc.code.value)
    wanted = expected["version"] if expected["accepted"] else expected["code"]
    assert verdict == (expected["accepted"], wanted)


def test_v2_root_is_reproducible_from_its_seeds() -> None:
    from tests.vectors import generate, generate_v2

    assert sign_trust_root(generate_v2.make_root_v2(), generate.ROOT_KEYS) == ROOT_BYTES


def test_a_v1_parser_refuses_a_v2_root_by_its_type() -> None:
    with pytest.raises(TrustRootError) as caught:
        load_trust_root(ROOT_BYTES, now=parse_time(VECTORS["tokens"][0]["context"]["now"]))
    assert caught.value.code is RejectionCode.malformed
