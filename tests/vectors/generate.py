"""Write the protocol test vectors (tests/vectors/*.json). docs/protocol.md, "Test vectors".

Run: ``.venv/bin/python tests/vectors/generate.py``. Ed25519 keys derive from fixed
seeds and the age keys are fixed strings below, so every signature, header and claim is
reproducible; only the age ciphertext inside ``keys`` changes between runs (age uses a
fresh ephemeral key per file), which is why the vectors are committed rather than
regenerated in the test run. These keys are public test material: never deploy them.
"""

from __future__ import annotations

import base64
import hashlib
import json
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pyrage
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol._jws import b64url_encode
from protocol.keys import key_id
from protocol.timefmt import format_time
from protocol.token import (
    MAX_TOKEN_BYTES,
    CaseRef,
    ReleaseClaims,
    Window,
    add_signature,
    seal_keys_for_device,
    sign_token,
)
from protocol.trust_root import DEFAULT_LIMITS, Role, TrustRoot, sign_trust_root

OUT = Path(__file__).resolve().parent
FORMAT = "doorbell-vectors/1"
NOW = datetime(2026, 6, 1, 12, 0, 0, tzinfo=UTC)
NOW_S = int(NOW.timestamp())
DEVICE = "porch-1"
ISSUER = "cloud-stub"
TRANSPORT = "AGE-SECRET-KEY-102MW7KSTNAC990WWAVUYYRLCGX4UDA2TP2YXUA5Z0RTM98NHNLGQVNMF3N"
EPOCH_A = "AGE-SECRET-KEY-19FK90D99HFVV9JUH7FYAN6SQQS3J29T3STZM7MGY6LA5SDL9H0EQ5HGREZ"
EPOCH_B = "AGE-SECRET-KEY-1ADZP8FDYUT9RXF8CCF4GVH6HEWK4ZV0AS49CGGGXD0AE6FARK70SH7UF69"
AGENCY = "AGE-SECRET-KEY-12W8N5CH3P5JYTLLEA3RKH2J0RN87A2X35KNRWGWEXQTWWR98PAASAFTF3T"
EPOCH_A_ID = f"{NOW_S - 4 * 3600}-0000000a"
EPOCH_B_ID = f"{NOW_S - 3 * 3600}-0000000b"


def seeded(name: str) -> Ed25519PrivateKey:
    """The vectors' Ed25519 key `name`: its private bytes are sha256("doorbell-vectors/" + name)."""
    return Ed25519PrivateKey.from_private_bytes(
        hashlib.sha256(f"doorbell-vectors/{name}".encode()).digest()
    )


ROOT_KEYS = [seeded("root-1"), seeded("root-2")]
RELEASE_KEYS = [seeded("policy"), seeded("review")]
INTRUDER = seeded("intruder")


def public(identity: str) -> str:
    return str(pyrage.x25519.Identity.from_str(identity).to_public())


def make_root(
    version: int = 1,
    expires: datetime = NOW + timedelta(days=365),
    root_keys: list[Ed25519PrivateKey] | None = None,
) -> TrustRoot:
    root_keys = root_keys or ROOT_KEYS
    every = root_keys + RELEASE_KEYS
    return TrustRoot(
        version=version,
        expires=expires,
        issuer=ISSUER,
        keys=MappingProxyType({key_id(k.public_key()): k.public_key() for k in every}),
        roles=MappingProxyType(
            {
                "root": Role(frozenset(key_id(k.public_key()) for k in root_keys), 2),
                "release": Role(frozenset(key_id(k.public_key()) for k in RELEASE_KEYS), 2),
            }
        ),
        limits=DEFAULT_LIMITS,
    )


SEALED_KEYS = seal_keys_for_device({EPOCH_A_ID: EPOCH_A, EPOCH_B_ID: EPOCH_B}, public(TRANSPORT))


def claims(**changes: Any) -> ReleaseClaims:
    iat = NOW_S - 60
    base = ReleaseClaims(
        v=1,
        iss=ISSUER,
        aud=DEVICE,
        jti="vec-warrant-1",
        seq=7,
        iat=iat,
        nbf=iat,
        exp=iat + 6 * 3600,
        basis="warrant",
        case=CaseRef(
            request_id="req-0001",
            docket="2026-MJ-0042",
            authority="demo-district-court",
            document_sha256=hashlib.sha256(b"warrant document").hexdigest(),
        ),
        window=Window(
            start=NOW - timedelta(hours=3, minutes=30), end=NOW - timedelta(hours=2, minutes=30)
        ),
        recipient=public(AGENCY),
        keys=SEALED_KEYS,
        upload="http://127.0.0.1:8080/v1/evidence/vec-warrant-1",
    )
    return replace(base, **changes)


def preservation(**changes: Any) -> ReleaseClaims:
    base = claims(
        basis="preservation",
        jti="vec-preserve-1",
        recipient=None,
        keys=None,
        upload=None,
        hold_until=NOW + timedelta(days=60),
    )
    return replace(base, **changes)


def signed(c: ReleaseClaims, signers: list[Ed25519PrivateKey] | None = None) -> bytes:
    return sign_token(c, RELEASE_KEYS if signers is None else signers)


def with_payload(payload: dict[str, Any]) -> bytes:
    """A token whose payload is `payload` verbatim, correctly signed by both release keys
    (so that only the schema can refuse it)."""
    return with_raw_payload(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode())


def with_raw_payload(raw: bytes) -> bytes:
    """A token whose payload is the bytes `raw`, correctly signed by both release keys."""
    segment = b64url_encode(raw)
    signatures = []
    for key in RELEASE_KEYS:
        header = b64url_encode(
            json.dumps(
                {"alg": "Ed25519", "kid": key_id(key.public_key()), "typ": "doorbell-release+jws"},
                separators=(",", ":"),
            ).encode()
        )
        sig = key.sign(f"{header}.{segment}".encode())
        signatures.append({"protected": header, "signature": b64url_encode(sig)})
    return json.dumps({"payload": segment, "signatures": signatures}).encode()


def with_header(c: ReleaseClaims, header: dict[str, Any]) -> bytes:
    token = json.loads(signed(c))
    key = RELEASE_KEYS[0]
    protected = b64url_encode(json.dumps(header, separators=(",", ":")).encode())
    sig = key.sign(f"{protected}.{token['payload']}".encode())
    token["signatures"][0] = {"protected": protected, "signature": b64url_encode(sig)}
    return json.dumps(token).encode()


def forged_kid(c: ReleaseClaims) -> bytes:
    """One genuine signature plus one by an intruder's key under the review key's kid."""
    token = json.loads(signed(c, RELEASE_KEYS[:1]))
    header = b64url_encode(
        json.dumps(
            {
                "alg": "Ed25519",
                "kid": key_id(RELEASE_KEYS[1].public_key()),
                "typ": "doorbell-release+jws",
            },
            separators=(",", ":"),
        ).encode()
    )
    sig = INTRUDER.sign(f"{header}.{token['payload']}".encode())
    token["signatures"].append({"protected": header, "signature": b64url_encode(sig)})
    return json.dumps(token).encode()


def repeated_signature(c: ReleaseClaims) -> bytes:
    token = json.loads(signed(c, RELEASE_KEYS[:1]))
    token["signatures"].append(token["signatures"][0])
    return json.dumps(token).encode()


def vector(
    name: str, description: str, token: bytes, expected: dict[str, Any], **context: Any
) -> dict[str, Any]:
    ctx: dict[str, Any] = {
        "device_id": DEVICE,
        "now": format_time(NOW),
        "clock_synchronized": True,
        "skew_s": 60,
        "replay": {"seen": [], "last_seq": 0},
        "owner": None,
    }
    ctx.update(context)
    return {
        "name": name,
        "description": description,
        "token_b64": base64.b64encode(token).decode(),
        "context": ctx,
        "expected": expected,
    }


def rejected(code: str, stage: str = "verify") -> dict[str, Any]:
    return {"accepted": False, "code": code, "stage": stage}


def accepted(c: ReleaseClaims, epochs: dict[str, str] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"accepted": True, "claims": c.to_payload()}
    if epochs is not None:
        out["epochs"] = epochs
    return out


def schema_strictness_vectors(good: ReleaseClaims) -> list[dict[str, Any]]:
    """`v` is the integer 1 (not 1.0, 1e0 or true), and `recipient` and `keys` are strings
    under the text rule like every claim: a C0 character is `malformed` (rule 2), not
    `bad_recipient` or `bad_keys`."""
    payload = good.to_payload()
    compact = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    assert '"v":1,' in compact
    return [
        vector("malformed-v-float", "v is 1.0, not the integer 1.",
               with_payload({**payload, "v": 1.0}), rejected("malformed")),
        vector("malformed-v-exponent", "v is written 1e0, not the integer 1.",
               with_raw_payload(compact.replace('"v":1,', '"v":1e0,').encode()),
               rejected("malformed")),
        vector("malformed-v-true", "v is true, not the integer 1.",
               with_payload({**payload, "v": True}), rejected("malformed")),
        vector("malformed-recipient-control", "recipient holds a C0 control (U+0001).",
               with_payload({**payload, "recipient": payload["recipient"] + "\x01"}),
               rejected("malformed")),
        vector("malformed-keys-control", "keys holds a C0 control (ESC).",
               with_payload({**payload, "keys": "\x1b" + payload["keys"]}),
               rejected("malformed")),
    ]


def token_vectors() -> list[dict[str, Any]]:
    good = claims()
    both = {EPOCH_A_ID: EPOCH_A, EPOCH_B_ID: EPOCH_B}
    v = [
        vector(
            "valid-warrant",
            "Two release signatures, every rule met; keys open.",
            signed(good),
            accepted(good, both),
        ),
        vector(
            "valid-warrant-collected",
            "The same claims signed one key at a time (add_signature), in the opposite order.",
            add_signature(signed(good, RELEASE_KEYS[1:]), RELEASE_KEYS[0]),
            accepted(good, both),
        ),
        vector(
            "valid-emergency",
            "Emergency: 12 h window, 1 h token life, both at the limit.",
            signed(
                e := claims(
                    basis="emergency",
                    jti="vec-emergency-1",
                    iat=NOW_S - 60,
                    nbf=NOW_S - 60,
                    exp=NOW_S - 60 + 3600,
                    window=Window(start=NOW - timedelta(hours=13), end=NOW - timedelta(hours=1)),
                )
            ),
            accepted(e, both),
        ),
        vector(
            "valid-preservation",
            "Preservation: no recipient, keys or upload; a hold.",
            signed(p := preservation()),
            accepted(p),
        ),
        vector(
            "valid-with-replay-state",
            "seq 7 above the last accepted 6, jti unseen.",
            signed(good),
            accepted(good, both),
            replay={"seen": ["vec-older"], "last_seq": 6},
        ),
        vector(
            "valid-nbf-within-skew",
            "nbf 60 s in the future, skew 60 s.",
            signed(n := claims(nbf=NOW_S + 60, exp=NOW_S + 3600, iat=NOW_S - 60)),
            accepted(n, both),
        ),
        vector(
            "oversized",
            "65537 bytes: refused before parsing.",
            b"{" + b" " * MAX_TOKEN_BYTES,
            rejected("oversized"),
        ),
        vector("malformed-not-json", "Not JSON.", b"doorbell?", rejected("malformed")),
        vector(
            "malformed-compact-serialization",
            "A JWS compact serialization.",
            b"eyJhbGciOiJFZDI1NTE5In0.e30.AAAA",
            rejected("malformed"),
        ),
        vector(
            "malformed-unknown-claim",
            "An extra claim, correctly signed.",
            with_payload({**good.to_payload(), "scope": "all-devices"}),
            rejected("malformed"),
        ),
        vector(
            "malformed-preservation-with-keys",
            "A preservation token carrying keys.",
            with_payload({**preservation().to_payload(), "keys": SEALED_KEYS}),
            rejected("malformed"),
        ),
        *schema_strictness_vectors(good),
        vector(
            "bad-header-eddsa",
            "alg EdDSA instead of Ed25519 (RFC 9864).",
            with_header(
                good,
                {
                    "alg": "EdDSA",
                    "kid": key_id(RELEASE_KEYS[0].public_key()),
                    "typ": "doorbell-release+jws",
                },
            ),
            rejected("bad_header"),
        ),
        vector(
            "bad-header-typ",
            "typ of a manifest.",
            with_header(
                good,
                {
                    "alg": "Ed25519",
                    "kid": key_id(RELEASE_KEYS[0].public_key()),
                    "typ": "doorbell-manifest+jws",
                },
            ),
            rejected("bad_header"),
        ),
        vector(
            "bad-signature-forged-kid",
            "An intruder's key signing under a trusted kid.",
            forged_kid(good),
            rejected("bad_signature"),
        ),
        vector(
            "below-threshold-one-signature",
            "One of two required signatures.",
            signed(good, RELEASE_KEYS[:1]),
            rejected("below_threshold"),
        ),
        vector(
            "below-threshold-repeated-signature",
            "The same signature twice counts once.",
            repeated_signature(good),
            rejected("below_threshold"),
        ),
        vector(
            "below-threshold-root-keys",
            "Root keys are not release keys.",
            signed(good, ROOT_KEYS),
            rejected("below_threshold"),
        ),
        vector(
            "wrong-device",
            "aud names another device.",
            signed(claims(aud="porch-2")),
            rejected("wrong_device"),
        ),
        vector(
            "wrong-issuer",
            "iss is not the trust root's issuer.",
            signed(claims(iss="someone-else")),
            rejected("wrong_issuer"),
        ),
        vector(
            "clock-unsynchronized",
            "The device clock is not synchronized: defer.",
            signed(good),
            rejected("clock_unsynchronized"),
            clock_synchronized=False,
        ),
        vector(
            "not-yet-valid",
            "nbf 61 s ahead with 60 s skew.",
            signed(claims(nbf=NOW_S + 61, exp=NOW_S + 3600)),
            rejected("not_yet_valid"),
        ),
        vector(
            "expired",
            "now == exp.",
            signed(
                claims(
                    iat=NOW_S - 3600,
                    nbf=NOW_S - 3600,
                    exp=NOW_S,
                    window=Window(start=NOW - timedelta(hours=4), end=NOW - timedelta(hours=3)),
                )
            ),
            rejected("expired"),
        ),
        vector(
            "token-life-too-long",
            "Emergency token living 1 h + 1 s.",
            signed(
                claims(basis="emergency", iat=NOW_S - 60, nbf=NOW_S - 60, exp=NOW_S - 60 + 3601)
            ),
            rejected("token_life_too_long"),
        ),
        vector(
            "replayed",
            "jti already seen.",
            signed(good),
            rejected("replayed"),
            replay={"seen": ["vec-warrant-1"], "last_seq": 0},
        ),
        vector(
            "stale-seq",
            "seq 7 not above the last accepted 7.",
            signed(good),
            rejected("stale_seq"),
            replay={"seen": [], "last_seq": 7},
        ),
        vector(
            "basis-not-allowed",
            "The owner allows warrants only.",
            signed(claims(basis="emergency", exp=NOW_S + 1800)),
            rejected("basis_not_allowed"),
            owner={"allowed_bases": ["warrant"], "max_window_s": {}, "max_token_life_s": {}},
        ),
        vector(
            "window-too-long",
            "A warrant window of 72 h + 1 s.",
            signed(
                claims(
                    window=Window(
                        start=NOW - timedelta(hours=73, seconds=1), end=NOW - timedelta(hours=1)
                    )
                )
            ),
            rejected("window_too_long"),
        ),
        vector(
            "window-too-long-owner",
            "Within the root's 72 h but above the owner's 1 h.",
            signed(good),
            rejected("window_too_long"),
            owner={
                "allowed_bases": None,
                "max_window_s": {"warrant": 3600 - 1},
                "max_token_life_s": {},
            },
        ),
        vector(
            "window-in-future",
            "The window ends after iat.",
            signed(claims(window=Window(start=NOW - timedelta(hours=1), end=NOW))),
            rejected("window_in_future"),
        ),
        vector(
            "hold-too-long",
            "A preservation hold of 91 days.",
            signed(preservation(hold_until=NOW + timedelta(days=91))),
            rejected("hold_too_long"),
        ),
        vector(
            "bad-recipient",
            "recipient is not an age recipient.",
            signed(claims(recipient="age1notarecipient")),
            rejected("bad_recipient"),
        ),
        vector(
            "bad-keys-not-base64",
            "keys is not base64.",
            signed(claims(keys="not base64!")),
            rejected("bad_keys"),
        ),
        vector(
            "bad-keys-other-transport",
            "keys sealed to another device's transport key.",
            signed(claims(keys=seal_keys_for_device({EPOCH_A_ID: EPOCH_A}, public(AGENCY)))),
            rejected("bad_keys", stage="open_keys"),
        ),
        vector(
            "keys-mismatch",
            "A delivered identity is not the recipient the device recorded for its epoch.",
            signed(claims(keys=seal_keys_for_device({EPOCH_A_ID: EPOCH_B}, public(TRANSPORT)))),
            rejected("keys_mismatch", stage="open_keys"),
        ),
    ]
    return v


def root_vectors(root_bytes: bytes) -> list[dict[str, Any]]:
    v2 = make_root(version=2)
    new_keys = [seeded("root-3"), seeded("root-4")]
    rotated = make_root(version=2, root_keys=new_keys)

    def entry(
        name: str,
        description: str,
        data: bytes,
        expected: dict[str, Any],
        now: datetime = NOW,
        current: bool = False,
    ) -> dict[str, Any]:
        return {
            "name": name,
            "description": description,
            "root_b64": base64.b64encode(data).decode(),
            "now": format_time(now),
            "update_from_current": current,
            "expected": expected,
        }

    return [
        entry(
            "load-valid", "The vectors' trust root.", root_bytes, {"accepted": True, "version": 1}
        ),
        entry(
            "load-expired",
            "Loaded after it expired (freeze attack).",
            root_bytes,
            {"accepted": False, "code": "root_expired"},
            now=NOW + timedelta(days=366),
        ),
        entry(
            "load-one-signature",
            "One of two root signatures.",
            sign_trust_root(make_root(), ROOT_KEYS[:1]),
            {"accepted": False, "code": "below_threshold"},
        ),
        entry(
            "update-valid-same-keys",
            "Version 2, signed by the same root keys.",
            sign_trust_root(v2, ROOT_KEYS),
            {"accepted": True, "version": 2},
            current=True,
        ),
        entry(
            "update-valid-new-keys",
            "Version 2 with new root keys, signed by old and new.",
            sign_trust_root(rotated, ROOT_KEYS + new_keys),
            {"accepted": True, "version": 2},
            current=True,
        ),
        entry(
            "update-new-keys-only",
            "Version 2 signed only by its new keys.",
            sign_trust_root(rotated, new_keys),
            {"accepted": False, "code": "below_threshold"},
            current=True,
        ),
        entry(
            "update-rollback",
            "Version 1 again (rollback).",
            root_bytes,
            {"accepted": False, "code": "bad_version"},
            current=True,
        ),
    ]


def main() -> int:
    root_bytes = sign_trust_root(make_root(), ROOT_KEYS)
    (OUT / "trust-root.json").write_bytes(root_bytes)
    doc = {
        "format": FORMAT,
        "trust_root": "trust-root.json",
        "device": {
            "id": DEVICE,
            "transport_identity": TRANSPORT,
            "recorded_epochs": {EPOCH_A_ID: public(EPOCH_A), EPOCH_B_ID: public(EPOCH_B)},
        },
        "agency_identity": AGENCY,
        "tokens": token_vectors(),
        "roots": root_vectors(root_bytes),
    }
    text = json.dumps(doc, indent=1, sort_keys=False) + "\n"
    (OUT / "vectors.json").write_text(text, encoding="utf-8")
    print(f"wrote {len(doc['tokens'])} token and {len(doc['roots'])} root vectors to {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
