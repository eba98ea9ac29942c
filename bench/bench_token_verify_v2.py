"""Warrant token verification under trust root v2 against four raw Ed25519 verifications.

The full `verify_release` (size cap, strict JSON, headers, the policy and two reviewer
signatures, the warrant statement parsed and its court signature checked, every rule,
age recipient and keys parse, with replay state) is timed against four bare
`Ed25519PublicKey.verify` calls over the very same bytes (the three JWS signing inputs
and the statement), in the same run. Target (docs/adr/0013-trust-root-v2.md): at most
1.5x.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._report import ratio_line
from protocol._jws import b64url_decode
from protocol.release_check import verify_release
from protocol.token import VerificationContext
from protocol.trust_root_v2 import TrustRootV2
from tests.vectors import generate_v2 as g

ROUNDS = 25
LOOPS = 400


@dataclass
class _Replay:
    last: int = 0

    def seen(self, jti: str) -> bool:
        return False

    def last_seq(self) -> int:
        return self.last


def _setup() -> tuple[
    bytes, TrustRootV2, VerificationContext, list[tuple[Ed25519PublicKey, bytes, bytes]]
]:
    root = g.make_root_v2()
    claims = g.warrant()
    token = g.signed(claims, g.POLICY, g.ALICE, g.CAROL)
    context = VerificationContext(device_id=g.DEVICE, now=g.NOW, clock_synchronized=True)
    doc = json.loads(token)
    raw = []
    for entry in doc["signatures"]:
        header = json.loads(b64url_decode(entry["protected"]))
        raw.append((root.keys[header["kid"]], b64url_decode(entry["signature"]),
                    f"{entry['protected']}.{doc['payload']}".encode()))
    assert claims.warrant is not None
    court_key = root.court_key(g.COURT_ID)
    assert court_key is not None
    raw.append((court_key, claims.warrant.court_sig, claims.warrant.statement_bytes))
    return token, root, context, raw


def _time(fn: Callable[[], None]) -> float:
    """CPU microseconds of this process per call over LOOPS calls (process time)."""
    start = time.process_time()
    for _ in range(LOOPS):
        fn()
    return (time.process_time() - start) / LOOPS * 1e6


def main() -> int:
    token, root, context, raw = _setup()
    replay = _Replay(last=1)

    def full() -> None:
        verify_release(token, root=root, context=context, replay=replay)

    def baseline() -> None:
        for key, sig, data in raw:
            key.verify(sig, data)

    full()
    baseline()
    base_us = full_us = float("inf")
    for _ in range(ROUNDS):  # alternate; keep each side's best round
        base_us = min(base_us, _time(baseline))
        full_us = min(full_us, _time(full))
    print(f"warrant token of {len(token)} bytes: policy + 2 reviewers + court statement")
    print(ratio_line("verify_release (v2, all rules) vs 4 raw Ed25519 verify", full_us,
                     base_us, "us", "target <= 1.5x"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
