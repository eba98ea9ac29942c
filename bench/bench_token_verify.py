"""Token verification cost against its floor: two raw Ed25519 verifications.

The full `verify_token` (size cap, strict JSON, headers, two signatures, every rule,
age recipient and keys parse, with replay state) is timed against two bare
`Ed25519PublicKey.verify` calls over the very same signing inputs, in the same run.
Target: at most 1.5x (bench/README.md, docs/adr/0001-token-format.md).
"""

from __future__ import annotations

import hashlib
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import MappingProxyType

import pyrage
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._report import ratio_line
from bench._verify_common import NoReplay, RawVerify, best_alternating, jws_signatures, raw_verifier
from protocol.keys import key_id
from protocol.token import (
    CaseRef,
    ReleaseClaims,
    VerificationContext,
    Window,
    seal_keys_for_device,
    sign_token,
    verify_token,
)
from protocol.trust_root import DEFAULT_LIMITS, Role, TrustRoot

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
ROUNDS = 25
LOOPS = 400


def _key(seed: str) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(seed.encode()).digest())


def _setup() -> tuple[bytes, TrustRoot, VerificationContext, list[RawVerify]]:
    root_keys = [_key("root-1"), _key("root-2")]
    release = [_key("policy"), _key("review")]
    every = root_keys + release
    root = TrustRoot(
        version=1,
        expires=NOW + timedelta(days=365),
        issuer="cloud-stub",
        keys=MappingProxyType({key_id(k.public_key()): k.public_key() for k in every}),
        roles=MappingProxyType(
            {
                "root": Role(frozenset(key_id(k.public_key()) for k in root_keys), 2),
                "release": Role(frozenset(key_id(k.public_key()) for k in release), 2),
            }
        ),
        limits=DEFAULT_LIMITS,
    )
    transport = pyrage.x25519.Identity.generate()
    epochs = {
        f"{int(NOW.timestamp()) - 3600 * i}-{i:08x}": str(pyrage.x25519.Identity.generate())
        for i in range(1, 5)
    }
    iat = int(NOW.timestamp()) - 10
    claims = ReleaseClaims(
        v=1,
        iss="cloud-stub",
        aud="porch-1",
        jti="bench-1",
        seq=2,
        iat=iat,
        nbf=iat,
        exp=iat + 3600,
        basis="warrant",
        case=CaseRef("req-1", "2026-MJ-1", "demo-district-court", "ab" * 32),
        window=Window(NOW - timedelta(hours=3), NOW - timedelta(hours=1)),
        recipient=str(pyrage.x25519.Identity.generate().to_public()),
        keys=seal_keys_for_device(epochs, str(transport.to_public())),
        upload="http://127.0.0.1:8080/v1/evidence/bench-1",
    )
    token = sign_token(claims, release)
    context = VerificationContext(device_id="porch-1", now=NOW, clock_synchronized=True)
    raw = jws_signatures(token, root.keys)
    return token, root, context, raw


def main() -> int:
    token, root, context, raw = _setup()
    replay = NoReplay(last=1)

    def full() -> None:
        verify_token(token, root=root, context=context, replay=replay)

    full_us, base_us = best_alternating(full, raw_verifier(raw), rounds=ROUNDS, loops=LOOPS)
    print(f"token of {len(token)} bytes, 2 signatures, 4 epoch keys")
    print(
        ratio_line(
            "verify_token (full rules) vs 2 raw Ed25519 verify",
            full_us,
            base_us,
            "us",
            "target <= 1.5x",
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
