"""Write tests/vectors/tlog/device.json: the doorbell's release-log check, case by case.

Run: ``.venv/bin/python tests/vectors/tlog/generate_device.py``. Ed25519 keys derive
from fixed seeds (tests/unit/tlog_world.py); the tokens carry age ciphertext, which
changes between runs, so the file is committed rather than regenerated in the test run.
Each case gives a token, a proof bundle, the doorbell's stored checkpoint (or null) and
the verdict: `accept` or the `LogRejectionCode` of the first check that fails
(docs/protocol.md "Release log"). These keys are public test material: never deploy.
"""

from __future__ import annotations

import base64
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from protocol.keys import raw_public_bytes
from protocol.tlog.checkpoint import Checkpoint
from protocol.tlog.statement import statement_for
from tests.unit.protocol_world import make_world
from tests.unit.tlog_world import ORIGIN, LogWorld, log_signer, policy_text, seeded

OUT = Path(__file__).resolve().parent / "device.json"


def _cp(checkpoint: Checkpoint | None) -> dict[str, Any] | None:
    if checkpoint is None:
        return None
    return {
        "origin": checkpoint.origin,
        "size": checkpoint.size,
        "root": base64.b64encode(checkpoint.root).decode(),
    }


def main() -> int:
    world = make_world()
    identity = seeded("device-identity").public_key()
    other_device = seeded("other-device").public_key()
    claims = world.claims()
    token = world.token(claims)
    other_claims = world.claims(jti="tok-2", seq=2)
    other_token = world.token(other_claims)

    log = LogWorld()
    log.fill(5)
    index = log.append(statement_for(token, claims, identity).encode())
    wrong_device = log.append(statement_for(token, claims, other_device).encode())
    wrong_token = log.append(statement_for(other_token, other_claims, identity).encode())
    junk = log.append(b'{"not":"a statement"}')
    log.fill(3)
    stored = log.checkpoint(4)

    fork = LogWorld()
    fork.fill(5)
    fork_index = fork.append(statement_for(token, claims, identity).encode())
    fork.fill(7)

    evil = log_signer("evil.example/log", seed="evil")
    impostor = log_signer(ORIGIN, seed="impostor")
    unlogged = statement_for(token, replace(claims, seq=99), identity).encode()

    cases: list[dict[str, Any]] = []

    def case(
        name: str, expect: str, bundle: bytes, stored_cp: Checkpoint | None, tok: bytes = token
    ) -> None:
        cases.append(
            {
                "name": name,
                "expect": expect,
                "token": tok.decode(),
                "bundle": bundle.decode(),
                "stored": _cp(stored_cp),
            }
        )

    case("logged, witnessed, consistent", "accept", log.bundle(index, stored_size=4), stored)
    case("first checkpoint (nothing stored)", "accept", log.bundle(index, stored_size=0), None)
    case(
        "stored newer than the proof",
        "accept",
        log.bundle(index, size=index + 1, stored_size=log.tree.size),
        log.checkpoint(),
    )
    case("not a bundle", "log_proof_malformed", b"sealed-doorbell/log-bundle/v1\n", stored)
    case(
        "another log's checkpoint",
        "log_origin",
        log.bundle(
            index,
            stored_size=0,
            note=log.cosigned(replace(log.checkpoint(), origin=evil.name), log=evil),
        ),
        None,
    )
    case(
        "checkpoint signed by another key",
        "log_signature",
        log.bundle(index, stored_size=0, note=log.cosigned(log.checkpoint(), log=impostor)),
        None,
    )
    case(
        "one cosignature of the two needed",
        "witness_quorum",
        log.bundle(index, stored_size=4, cosigners=1),
        stored,
    )
    case(
        "split view: a fork of the stored checkpoint",
        "log_inconsistent",
        fork.bundle(fork_index, stored_size=log.tree.size),
        log.checkpoint(),
    )
    case(
        "equal size, other root",
        "log_inconsistent",
        log.bundle(index, stored_size=log.tree.size),
        replace(log.checkpoint(), root=bytes(32)),
    )
    case(
        "statement not in the log",
        "not_logged",
        log.bundle(index, stored_size=4, entry=unlogged),
        stored,
    )
    case("entry is not a statement", "statement_malformed", log.bundle(junk, stored_size=4), stored)
    case(
        "statement for another device",
        "statement_wrong_device",
        log.bundle(wrong_device, stored_size=4),
        stored,
    )
    case(
        "statement for another token",
        "statement_wrong_token",
        log.bundle(wrong_token, stored_size=4),
        stored,
    )

    doc = {
        "format": "doorbell-tlog-device-vectors/1",
        "origin": ORIGIN,
        "policy": policy_text(log.log, log.witnesses).decode(),
        "identity_public_key": raw_public_bytes(identity).hex(),
        "cases": cases,
    }
    OUT.write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {len(cases)} cases to {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
