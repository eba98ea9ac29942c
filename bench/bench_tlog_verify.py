"""Doorbell-side release-log verification at a tree of 1,000,000 entries, against the
token's own verification, in the same run.

`verify_log_proof` (bundle parse, log signature, two cosignatures, tlog-policy quorum,
consistency proof from a stored checkpoint 1,000 entries back, inclusion proof, strict
statement parse and match against the token) is timed against `verify_token` of the same
token under its trust root (size cap, JSON, headers, two signatures, every rule).
Target (docs/adr/0014-release-log.md): the log check adds at most 1x, i.e. ratio <= 1.
The log policy lives in trust root v2 (docs/adr/0013-trust-root-v2.md), so the token a
doorbell checks beside a log proof is a v2 token: the run also times `verify_release` of
a v2 warrant token (policy, two reviewers, the court's statement) and prints the log
check against it; the v1 `verify_token` line is kept as information.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._report import ratio_line
from bench.bench_token_verify_v2 import _setup as v2_warrant
from protocol.release_check import verify_release
from protocol.tlog.bundle import parse_bundle
from protocol.tlog.checkpoint import Checkpoint
from protocol.tlog.merkle import MemoryTree, leaf_hash
from protocol.tlog.note import parse_note
from protocol.tlog.statement import statement_for
from protocol.tlog.verify import verify_log_proof
from protocol.token import VerificationContext, verify_token
from tests.unit.protocol_world import DEVICE, NOW, make_world
from tests.unit.tlog_world import ORIGIN, LogWorld, seeded

TREE_SIZE = 1_000_000
STORED_BEHIND = 1_000
ROUNDS = 15
LOOPS = 200


@dataclass
class _Replay:
    def seen(self, jti: str) -> bool:
        return False

    def last_seq(self) -> int:
        return 0


def _time(fn: Callable[[], object]) -> float:
    """CPU microseconds of this process per call (process time: a noisy neighbour on the
    shared machine costs neither side)."""
    start = time.process_time()
    for _ in range(LOOPS):
        fn()
    return (time.process_time() - start) / LOOPS * 1e6


def main() -> int:
    world = make_world()
    identity = seeded("device-identity").public_key()
    claims = world.claims()
    token = world.token(claims)
    entry = statement_for(token, claims, identity).encode()

    started = time.monotonic()
    index = TREE_SIZE - 10
    hashes = [leaf_hash(b"%d" % i) for i in range(TREE_SIZE)]
    hashes[index] = leaf_hash(entry)
    log = LogWorld(tree=MemoryTree(hashes))
    log.entries = []  # entries are not kept: the bundle gets the statement directly
    built = time.monotonic() - started
    stored = log.checkpoint(TREE_SIZE - STORED_BEHIND)
    bundle = log.bundle(index, stored_size=stored.size, entry=entry)
    policy = log.policy
    context = VerificationContext(device_id=DEVICE, now=NOW, clock_synchronized=True)
    replay = _Replay()

    def log_check() -> None:
        verify_log_proof(
            token, bundle, policy=policy, origin=ORIGIN, stored=stored, identity=identity
        )

    def token_check() -> None:
        verify_token(token, root=world.root, context=context, replay=replay)

    v2_token, v2_root, v2_context, _ = v2_warrant()
    v2_replay = _Replay()

    def v2_check() -> None:
        verify_release(v2_token, root=v2_root, context=v2_context, replay=v2_replay)

    # The log check's own floor: its three raw Ed25519 verifications (log signature and
    # two cosignatures) over the very same messages.
    note = parse_note(parse_bundle(bundle).proof.checkpoint)
    floor_items = [
        (verifier, sig.signature)
        for verifier in (log.log.verifier, *policy.witness_verifiers)
        for sig in note.signatures
        if (sig.name, sig.key_id) == (verifier.name, verifier.key_id)
    ]
    assert len(floor_items) == 3

    def floor() -> None:
        for verifier, signature in floor_items:
            assert verifier.verify(note.text, signature)

    log_check()
    token_check()
    v2_check()
    floor()
    log_us = token_us = floor_us = v2_us = float("inf")
    for _ in range(ROUNDS):
        token_us = min(token_us, _time(token_check))
        log_us = min(log_us, _time(log_check))
        v2_us = min(v2_us, _time(v2_check))
        floor_us = min(floor_us, _time(floor))
    assert isinstance(stored, Checkpoint)
    print(
        f"tree of {TREE_SIZE:,} entries (built in {built:.1f} s), bundle of {len(bundle)} "
        f"bytes, stored checkpoint {STORED_BEHIND:,} entries behind, 2 of 3 cosignatures"
    )
    print(
        ratio_line(
            "log check (2 cosig, incl+cons @1M) vs v2 warrant verify_release",
            log_us,
            v2_us,
            "us",
            "target <= 1.0x extra",
        )
    )
    print(
        ratio_line(
            "log check vs v1 verify_token (information)",
            log_us,
            token_us,
            "us",
            "a v1 root carries no log policy",
        )
    )
    print(
        ratio_line(
            "log check vs its 3 raw Ed25519 verifications",
            log_us,
            floor_us,
            "us",
            "overhead beyond the signatures",
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
