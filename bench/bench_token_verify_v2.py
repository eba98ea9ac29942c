"""Warrant token verification under trust root v2 against four raw Ed25519 verifications.

The full `verify_release` (size cap, strict JSON, headers, the policy and two reviewer
signatures, the warrant statement parsed and its court signature checked, every rule,
age recipient and keys parse, with replay state) is timed against four bare
`Ed25519PublicKey.verify` calls over the very same bytes (the three JWS signing inputs
and the statement), in the same run. Target (docs/adr/0013-trust-root-v2.md): at most
1.5x.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._report import ratio_line
from bench._verify_common import NoReplay, RawVerify, best_alternating, jws_signatures, raw_verifier
from protocol.release_check import verify_release
from protocol.token import VerificationContext
from protocol.trust_root_v2 import TrustRootV2
from tests.vectors import generate_v2 as g

ROUNDS = 25
LOOPS = 400


def _setup() -> tuple[bytes, TrustRootV2, VerificationContext, list[RawVerify]]:
    root = g.make_root_v2()
    claims = g.warrant()
    token = g.signed(claims, g.POLICY, g.ALICE, g.CAROL)
    context = VerificationContext(device_id=g.DEVICE, now=g.NOW, clock_synchronized=True)
    raw = jws_signatures(token, root.keys)
    assert claims.warrant is not None
    court_key = root.court_key(g.COURT_ID)
    assert court_key is not None
    raw.append((court_key, claims.warrant.court_sig, claims.warrant.statement_bytes))
    return token, root, context, raw


def main() -> int:
    token, root, context, raw = _setup()
    replay = NoReplay(last=1)

    def full() -> None:
        verify_release(token, root=root, context=context, replay=replay)

    full_us, base_us = best_alternating(full, raw_verifier(raw), rounds=ROUNDS, loops=LOOPS)
    print(f"warrant token of {len(token)} bytes: policy + 2 reviewers + court statement")
    print(ratio_line("verify_release (v2, all rules) vs 4 raw Ed25519 verify", full_us,
                     base_us, "us", "target <= 1.5x"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
