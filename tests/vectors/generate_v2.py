"""Write the trust root v2 test vectors (tests/vectors/v2/*.json). docs/protocol.md,
"Test vectors", and docs/adr/0013-trust-root-v2.md.

Run: ``.venv/bin/python tests/vectors/generate_v2.py``. Same seeds, device, age keys and
claims as `generate.py` (v1); the v2 root keeps the v1 root keys (`root-1`, `root-2`),
so its rotation from the v1 vectors' root is itself a vector. Added Ed25519 seeds:
`reviewer-alice`, `reviewer-bob` (organisation ``acme-review``), `reviewer-carol`
(``civic-review``), `court-demo` (court ``demo-district-court``), `court-rogue`. Public
test material: never deploy these keys.
"""

from __future__ import annotations

import base64
import hashlib
import json
import sys
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

if __package__ in (None, ""):  # run as a script from the repository root
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from protocol._jws import b64url_encode
from protocol.keys import key_id
from protocol.timefmt import format_time
from protocol.token import ReleaseClaims, sign_token
from protocol.trust_root import DEFAULT_LIMITS, Role, sign_trust_root
from protocol.trust_root_v2 import DEFAULT_RULES, BasisRule, CourtKey, Reviewer, TrustRootV2
from protocol.warrant import WarrantClaim, WarrantStatement, sign_statement
from tests.vectors import generate as v1

OUT = Path(__file__).resolve().parent / "v2"
FORMAT = "doorbell-vectors/2"
NOW = v1.NOW
DEVICE = v1.DEVICE
COURT_ID = "demo-district-court"

POLICY = v1.seeded("policy")
OLD_REVIEW = v1.seeded("review")  # v1's release review key, held by the service host
ALICE = v1.seeded("reviewer-alice")
BOB = v1.seeded("reviewer-bob")
CAROL = v1.seeded("reviewer-carol")
COURT = v1.seeded("court-demo")
ROGUE_COURT = v1.seeded("court-rogue")
REVIEWERS = {ALICE: ("alice", "acme-review"), BOB: ("bob", "acme-review"),
             CAROL: ("carol", "civic-review")}  # fmt: skip


def kid(key: Ed25519PrivateKey) -> str:
    return key_id(key.public_key())


def make_root_v2(
    version: int = 2,
    root_keys: list[Ed25519PrivateKey] | None = None,
    reviewers: dict[Ed25519PrivateKey, tuple[str, str]] | None = None,
    rules: dict[str, BasisRule] | None = None,
    log_policy: str | None = None,
) -> TrustRootV2:
    root_keys = root_keys or v1.ROOT_KEYS
    reviewers = REVIEWERS if reviewers is None else reviewers
    every = [*root_keys, POLICY, *reviewers, COURT]
    return TrustRootV2(
        version=version,
        expires=NOW + timedelta(days=365),
        issuer=v1.ISSUER,
        keys=MappingProxyType({kid(k): k.public_key() for k in every}),
        root_role=Role(frozenset(kid(k) for k in root_keys), 2),
        policy_keyids=frozenset({kid(POLICY)}),
        reviewers=MappingProxyType(
            {kid(k): Reviewer(name=n, org=o) for k, (n, o) in reviewers.items()}
        ),
        courts=MappingProxyType({COURT_ID: CourtKey(name="Demo District Court",
                                                    keyid=kid(COURT))}),
        rules=MappingProxyType(rules or dict(DEFAULT_RULES)),
        limits=DEFAULT_LIMITS,
        log_policy=log_policy,
    )


def statement(**changes: Any) -> WarrantStatement:
    base = WarrantStatement(
        court_id=COURT_ID,
        docket="2026-MJ-0042",
        judge="Hon. A. Example",
        order_type="search_warrant",
        issued=NOW - timedelta(days=1),
        expires=NOW + timedelta(days=7),
        document_sha256=hashlib.sha256(b"warrant document").hexdigest(),
        device_ids=(DEVICE, "porch-2"),
        window_start=NOW - timedelta(hours=6),
        window_end=NOW - timedelta(hours=1),
    )
    return replace(base, **changes)


def warrant_claim(st: WarrantStatement | None = None,
                  court: Ed25519PrivateKey = COURT) -> WarrantClaim:
    st = st or statement()
    return WarrantClaim.of(st, sign_statement(st, court))


def warrant(**changes: Any) -> ReleaseClaims:
    return v1.claims(**{"warrant": warrant_claim(), **changes})


def emergency(**changes: Any) -> ReleaseClaims:
    iat = v1.NOW_S - 60
    return v1.claims(**{"basis": "emergency", "jti": "vec-emergency-1", "exp": iat + 3000,
                        "upload": "http://127.0.0.1:8080/v1/evidence/vec-emergency-1",
                        **changes})


def preservation() -> ReleaseClaims:
    return v1.preservation(jti="vec-preserve-2")


def signed(c: ReleaseClaims, *signers: Ed25519PrivateKey) -> bytes:
    return sign_token(c, list(signers))


def raw_warrant_payload(statement_bytes: bytes, sig: bytes) -> bytes:
    """A warrant token whose `warrant` claim holds exactly these bytes, correctly signed
    by policy and alice (so only the claim's schema can refuse it)."""
    payload = warrant().to_payload()
    payload["warrant"] = {"statement": base64.b64encode(statement_bytes).decode(),
                          "court_sig": base64.b64encode(sig).decode()}
    segment = b64url_encode(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode())
    sigs = []
    for key in (POLICY, ALICE):
        header = b64url_encode(json.dumps(
            {"alg": "Ed25519", "kid": kid(key), "typ": "doorbell-release+jws"},
            separators=(",", ":")).encode())
        sigs.append({"protected": header,
                     "signature": b64url_encode(key.sign(f"{header}.{segment}".encode()))})
    return json.dumps({"payload": segment, "signatures": sigs}).encode()


def alice_signature_over_other_payload() -> bytes:
    """Policy over this token, plus alice's genuine signature copied from another one."""
    token = json.loads(signed(warrant(), POLICY))
    other = json.loads(signed(warrant(jti="vec-warrant-other"), ALICE))
    token["signatures"].append(other["signatures"][0])
    return json.dumps(token).encode()


def intruder_under_alice_kid() -> bytes:
    token = json.loads(signed(warrant(), POLICY))
    header = b64url_encode(json.dumps(
        {"alg": "Ed25519", "kid": kid(ALICE), "typ": "doorbell-release+jws"},
        separators=(",", ":")).encode())
    sig = v1.INTRUDER.sign(f"{header}.{token['payload']}".encode())
    token["signatures"].append({"protected": header, "signature": b64url_encode(sig)})
    return json.dumps(token).encode()


def token_vectors() -> list[dict[str, Any]]:
    vec, rej, acc = v1.vector, v1.rejected, v1.accepted
    both = {v1.EPOCH_A_ID: v1.EPOCH_A, v1.EPOCH_B_ID: v1.EPOCH_B}
    good = warrant()
    emerg = emergency()
    pres = preservation()
    st = statement()
    canonical = st.canonical_bytes()
    spaced = json.dumps(st.to_json_obj(), sort_keys=True).encode()  # not canonical
    return [
        vec("v2-valid-warrant", "Policy, one reviewer and the court's statement; keys open.",
            signed(good, POLICY, ALICE), acc(good, both)),
        vec("v2-valid-emergency", "Policy and two reviewers of two organisations.",
            signed(emerg, POLICY, ALICE, CAROL), acc(emerg, both)),
        vec("v2-valid-preservation", "Policy and one reviewer.",
            signed(pres, POLICY, BOB), acc(pres)),
        vec("v2-reviewers-only", "Alice alone, no policy signature.",
            signed(good, ALICE), rej("policy_signature_missing")),
        vec("v2-policy-only", "The service's policy key alone.",
            signed(good, POLICY), rej("review_signature_missing")),
        vec("v2-policy-plus-old-review-key",
            "Policy plus v1's review key (held by the service host, not a reviewer of v2).",
            signed(good, POLICY, OLD_REVIEW), rej("review_signature_missing")),
        vec("v2-policy-plus-stranger", "Policy plus a key that is not in the trust root.",
            signed(good, POLICY, v1.INTRUDER), rej("review_signature_missing")),
        vec("v2-policy-plus-court-key", "Policy plus the court's key as a release signer.",
            signed(good, POLICY, COURT), rej("review_signature_missing")),
        vec("v2-review-over-other-payload",
            "Policy plus alice's genuine signature copied from another token.",
            alice_signature_over_other_payload(), rej("bad_signature")),
        vec("v2-intruder-under-reviewer-kid",
            "Policy plus an intruder's signature under alice's kid.",
            intruder_under_alice_kid(), rej("bad_signature")),
        vec("v2-emergency-one-org", "Two reviewers of one organisation for an emergency.",
            signed(emerg, POLICY, ALICE, BOB), rej("review_orgs_too_few")),
        vec("v2-emergency-one-review", "One reviewer for an emergency.",
            signed(emerg, POLICY, CAROL), rej("review_signature_missing")),
        vec("v2-warrant-no-statement", "A warrant token without the court's statement.",
            signed(v1.claims(), POLICY, ALICE), rej("warrant_missing")),
        vec("v2-court-unknown", "A statement of a court that is not in the trust root.",
            signed(warrant(warrant=warrant_claim(statement(court_id="rogue-court"), ROGUE_COURT),
                           case=replace(good.case, authority="rogue-court")), POLICY, ALICE),
            rej("court_unknown")),
        vec("v2-court-signature-forged", "The known court's statement signed by another key.",
            signed(warrant(warrant=warrant_claim(court=ROGUE_COURT)), POLICY, ALICE),
            rej("court_signature_invalid")),
        vec("v2-court-signature-other-statement",
            "The court's genuine signature over another statement (a wider window).",
            signed(warrant(warrant=WarrantClaim.of(
                statement(window_start=NOW - timedelta(days=3)),
                sign_statement(st, COURT))), POLICY, ALICE),
            rej("court_signature_invalid")),
        vec("v2-subpoena", "A subpoena signed by the court, relabelled as a warrant token.",
            signed(warrant(warrant=warrant_claim(statement(order_type="subpoena"))), POLICY, ALICE),
            rej("warrant_order_type")),
        vec("v2-warrant-other-device", "The warrant names other devices only.",
            signed(warrant(warrant=warrant_claim(statement(device_ids=("garage-9",)))),
                   POLICY, ALICE), rej("warrant_wrong_device")),
        vec("v2-window-wider-than-warrant", "The token window starts before the warrant's.",
            signed(warrant(window=replace(good.window, start=NOW - timedelta(hours=7))),
                   POLICY, ALICE), rej("warrant_window_exceeded")),
        vec("v2-warrant-expired", "The warrant expired before the token was issued.",
            signed(warrant(warrant=warrant_claim(statement(
                issued=NOW - timedelta(days=30), expires=NOW - timedelta(hours=2)))),
                POLICY, ALICE), rej("warrant_not_in_force")),
        vec("v2-token-outlives-warrant", "exp is after the warrant's expiry.",
            signed(warrant(warrant=warrant_claim(statement(expires=NOW + timedelta(hours=1)))),
                   POLICY, ALICE), rej("warrant_not_in_force")),
        vec("v2-document-mismatch", "The case names another warrant document.",
            signed(warrant(case=replace(good.case, document_sha256="0" * 64)), POLICY, ALICE),
            rej("warrant_case_mismatch")),
        vec("v2-statement-not-canonical", "Statement bytes with spaces (two spellings).",
            raw_warrant_payload(spaced, COURT.sign(spaced)), rej("malformed")),
        vec("v2-statement-on-emergency", "A warrant claim on an emergency token.",
            raw_emergency_with_warrant(canonical), rej("malformed")),
        vec("v2-wrong-device", "Shared rules still apply: the token is for another device.",
            signed(good, POLICY, ALICE), rej("wrong_device"), device_id="porch-2"),
    ]


def raw_emergency_with_warrant(statement_bytes: bytes) -> bytes:
    payload = emergency().to_payload()
    payload["warrant"] = {"statement": base64.b64encode(statement_bytes).decode(),
                          "court_sig": base64.b64encode(COURT.sign(statement_bytes)).decode()}
    segment = b64url_encode(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode())
    header = b64url_encode(json.dumps(
        {"alg": "Ed25519", "kid": kid(POLICY), "typ": "doorbell-release+jws"},
        separators=(",", ":")).encode())
    sig = POLICY.sign(f"{header}.{segment}".encode())
    return json.dumps({"payload": segment, "signatures": [
        {"protected": header, "signature": b64url_encode(sig)}]}).encode()


def root_vectors(v1_root: bytes, v2_root: bytes) -> list[dict[str, Any]]:
    new_keys = [v1.seeded("root-3"), v1.seeded("root-4")]

    def entry(name: str, description: str, data: bytes, expected: dict[str, Any],
              update_from: str | None = None, now: datetime = NOW) -> dict[str, Any]:
        return {"name": name, "description": description,
                "root_b64": base64.b64encode(data).decode(), "now": format_time(now),
                "update_from": update_from, "expected": expected}

    removed_bob = make_root_v2(version=3, reviewers={ALICE: REVIEWERS[ALICE],
                                                     CAROL: REVIEWERS[CAROL]})
    weak = make_root_v2().to_signed()
    weak["rules"]["warrant"]["court"] = False
    weak_doc = json.dumps({"signed": weak, "signatures": []}).encode()
    return [
        entry("v2-load-valid", "The v2 vectors' trust root.", v2_root,
              {"accepted": True, "version": 2}),
        entry("v2-rotate-from-v1", "v1 -> v2, signed by the v1 root keys (old and new).",
              v2_root, {"accepted": True, "version": 2}, update_from="v1"),
        entry("v2-rotate-from-v1-new-keys-only",
              "v1 -> v2 with new root keys, signed only by the new ones.",
              sign_trust_root(make_root_v2(root_keys=new_keys), new_keys),
              {"accepted": False, "code": "below_threshold"}, update_from="v1"),
        entry("v2-rotate-from-v1-one-old-key", "v1 -> v2 signed by one of two root keys.",
              sign_trust_root(make_root_v2(), v1.ROOT_KEYS[:1]),
              {"accepted": False, "code": "below_threshold"}, update_from="v1"),
        entry("v2-remove-reviewer", "v2 -> v3 without bob, signed by the root keys.",
              sign_trust_root(removed_bob, v1.ROOT_KEYS), {"accepted": True, "version": 3},
              update_from="v2"),
        entry("v2-downgrade-to-v1", "A v1 document (version 3) after the v2 root.",
              sign_trust_root(v1.make_root(version=3), v1.ROOT_KEYS),
              {"accepted": False, "code": "bad_version"}, update_from="v2"),
        entry("v2-warrant-without-court", "A rule set that drops the court (below the floor).",
              weak_doc, {"accepted": False, "code": "malformed"}),
        entry("v2-with-log-policy", "A root carrying a witness policy for the release log.",
              sign_trust_root(make_root_v2(log_policy="log example-log 0011\nquorum none\n"),
                              v1.ROOT_KEYS), {"accepted": True, "version": 2}),
    ]


def main() -> int:
    OUT.mkdir(exist_ok=True)
    v1_root = (OUT.parent / "trust-root.json").read_bytes()
    v2_root = sign_trust_root(make_root_v2(), v1.ROOT_KEYS)
    (OUT / "trust-root-v2.json").write_bytes(v2_root)
    doc = {
        "format": FORMAT,
        "trust_root": "trust-root-v2.json",
        "trust_root_v1": "../trust-root.json",
        "device": {
            "id": DEVICE,
            "transport_identity": v1.TRANSPORT,
            "recorded_epochs": {v1.EPOCH_A_ID: v1.public(v1.EPOCH_A),
                                v1.EPOCH_B_ID: v1.public(v1.EPOCH_B)},
        },
        "agency_identity": v1.AGENCY,
        "tokens": token_vectors(),
        "roots": root_vectors(v1_root, v2_root),
    }
    (OUT / "vectors-v2.json").write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {len(doc['tokens'])} token and {len(doc['roots'])} root vectors to {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
