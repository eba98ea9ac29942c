"""Every case of device.json gives its verdict: the doorbell's release-log check, in the
documented order of rejection codes (docs/protocol.md "Release log")."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from protocol.tlog.checkpoint import Checkpoint
from protocol.tlog.errors import LogRejected, LogRejectionCode
from protocol.tlog.policy import parse_policy
from protocol.tlog.verify import verify_log_proof

DOC: dict[str, Any] = json.loads(
    (Path(__file__).resolve().parent / "device.json").read_text(encoding="utf-8")
)
CASES: list[dict[str, Any]] = DOC["cases"]


def test_every_code_has_a_case() -> None:
    expected = {c["expect"] for c in CASES}
    assert expected == {"accept"} | {code.value for code in LogRejectionCode}


@pytest.mark.parametrize("case", CASES, ids=lambda c: c["name"])
def test_device_vector(case: dict[str, Any]) -> None:
    stored = case["stored"]
    kwargs: dict[str, Any] = {
        "policy": parse_policy(DOC["policy"].encode()),
        "origin": DOC["origin"],
        "stored": None
        if stored is None
        else Checkpoint(stored["origin"], stored["size"], base64.b64decode(stored["root"])),
        "identity": Ed25519PublicKey.from_public_bytes(bytes.fromhex(DOC["identity_public_key"])),
    }
    token, bundle = case["token"].encode(), case["bundle"].encode()
    if case["expect"] == "accept":
        verify_log_proof(token, bundle, **kwargs)
        return
    with pytest.raises(LogRejected) as caught:
        verify_log_proof(token, bundle, **kwargs)
    assert caught.value.code.value == case["expect"], caught.value.detail
