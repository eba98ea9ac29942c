"""The doorbell's log gate on real files: the stored checkpoint moves only forward and
only after a passing check; a split view is refused and its evidence kept."""

from __future__ import annotations

from pathlib import Path

import pytest

from device.release.log_gate import LogGate, LogStateError
from protocol.tlog.errors import LogRejected, LogRejectionCode
from protocol.tlog.statement import statement_for
from tests.unit.protocol_world import make_world
from tests.unit.tlog_world import LogWorld, seeded

IDENTITY = seeded("device-identity").public_key()


def test_the_gate_stores_checkpoints_forward_and_keeps_split_view_evidence(
    tmp_path: Path,
) -> None:
    world = make_world()
    log = LogWorld()
    log.fill(3)
    gate = LogGate(tmp_path, log.policy, IDENTITY)
    assert gate.status()["log_size"] is None
    gate.seed(log.cosigned(log.checkpoint()))
    with pytest.raises(LogStateError):
        gate.seed(log.cosigned(log.checkpoint()))
    assert gate.stored() == log.checkpoint(3)

    token = world.token()
    index = log.append(statement_for(token, world.claims(), IDENTITY).encode())
    log.fill(2)
    verdict = gate.check(token, log.bundle(index, stored_size=3))
    assert verdict.index == index
    assert gate.stored() == log.checkpoint(6)

    # An older proof (before the stored size) passes and leaves the stored one in place.
    gate.check(token, log.bundle(index, size=index + 1, stored_size=6))
    assert gate.stored() == log.checkpoint(6)

    # A statement that is not in the log: refused, nothing stored, no evidence.
    other = world.token(world.claims(jti="tok-9", seq=9))
    with pytest.raises(LogRejected) as caught:
        gate.check(other, log.bundle(index, stored_size=6))
    assert caught.value.code is LogRejectionCode.statement_wrong_token
    assert gate.status()["log_inconsistent"] is False

    # A split view: another history under the same key, larger than the stored one.
    fork = LogWorld()
    fork.fill(4)
    fork_index = fork.append(statement_for(token, world.claims(), IDENTITY).encode())
    fork.fill(5)
    with pytest.raises(LogRejected) as caught:
        gate.check(token, fork.bundle(fork_index, stored_size=6))
    assert caught.value.code is LogRejectionCode.log_inconsistent
    assert gate.stored() == log.checkpoint(6)
    status = gate.status()
    assert status["log_inconsistent"] is True
    assert status["log_size"] == 6
    (kept,) = gate.layout.evidence.iterdir()
    assert sorted(p.name for p in kept.iterdir()) == [
        "offered-bundle",
        "reason.json",
        "stored-checkpoint",
    ]


def test_a_first_checkpoint_without_the_quorum_is_refused(tmp_path: Path) -> None:
    log = LogWorld()
    log.fill(2)
    gate = LogGate(tmp_path, log.policy, IDENTITY)
    with pytest.raises(LogRejected) as caught:
        gate.seed(log.cosigned(log.checkpoint(), cosigners=1))
    assert caught.value.code is LogRejectionCode.witness_quorum
    assert gate.stored() is None
