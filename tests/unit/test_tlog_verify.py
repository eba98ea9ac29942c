"""The doorbell's pure check of a token's release-log proof, one rejection code at a time,
in the documented order (docs/protocol.md "Release log")."""

from __future__ import annotations

from dataclasses import replace

import pytest

from protocol.tlog.bundle import parse_bundle
from protocol.tlog.checkpoint import Checkpoint
from protocol.tlog.errors import LogRejected, LogRejectionCode
from protocol.tlog.statement import parse_statement, statement_for
from protocol.tlog.verify import verify_log_proof
from tests.unit.protocol_world import World, make_world
from tests.unit.tlog_world import ORIGIN, LogWorld, log_signer, seeded, strip_signatures

IDENTITY = seeded("device-identity").public_key()
OTHER_DEVICE = seeded("other-device").public_key()
Code = LogRejectionCode


@pytest.fixture(scope="module")
def world() -> World:
    return make_world()


def _logged(world: World, *, before: int = 5, after: int = 3) -> tuple[LogWorld, bytes, int]:
    log = LogWorld()
    log.fill(before)
    token = world.token()
    index = log.append(statement_for(token, world.claims(), IDENTITY).encode())
    log.fill(after)
    return log, token, index


def _verify(log: LogWorld, token: bytes, bundle: bytes, stored: Checkpoint | None) -> object:
    return verify_log_proof(
        token, bundle, policy=log.policy, origin=ORIGIN, stored=stored, identity=IDENTITY
    )


def _code(log: LogWorld, token: bytes, bundle: bytes, stored: Checkpoint | None) -> Code:
    with pytest.raises(LogRejected) as caught:
        _verify(log, token, bundle, stored)
    return caught.value.code


def test_a_logged_witnessed_consistent_token_is_accepted(world: World) -> None:
    log, token, index = _logged(world)
    stored = log.checkpoint(3)
    verdict = verify_log_proof(
        token,
        log.bundle(index, stored_size=3),
        policy=log.policy,
        origin=ORIGIN,
        stored=stored,
        identity=IDENTITY,
    )
    assert verdict.index == index
    assert verdict.checkpoint == log.checkpoint()
    assert verdict.witnesses == frozenset({"w1", "w2"})
    assert verdict.statement == parse_statement(log.entries[index])


def test_a_stored_checkpoint_newer_than_the_proof_is_kept(world: World) -> None:
    log, token, index = _logged(world, after=4)
    size = index + 1
    stored = log.checkpoint()
    verdict = _verify(log, token, log.bundle(index, size=size, stored_size=stored.size), stored)
    assert getattr(verdict, "checkpoint") == stored  # noqa: B009


def test_equal_sizes_need_equal_roots(world: World) -> None:
    log, token, index = _logged(world)
    stored = log.checkpoint()
    _verify(log, token, log.bundle(index, stored_size=stored.size), stored)
    forked = replace(stored, root=bytes(32))
    assert (
        _code(log, token, log.bundle(index, stored_size=stored.size), forked)
        is Code.log_inconsistent
    )


def test_a_split_view_is_refused_as_log_inconsistent(world: World) -> None:
    """The doorbell holds a checkpoint of one history; the service shows it another."""
    honest, token, _ = _logged(world)
    stored = honest.checkpoint()
    fork = LogWorld()
    fork.fill(4)  # a different history under the same log key
    fork_index = fork.append(statement_for(token, world.claims(), IDENTITY).encode())
    fork.fill(6)
    bundle = fork.bundle(fork_index, stored_size=stored.size)
    assert _code(honest, token, bundle, stored) is Code.log_inconsistent


def test_malformed_bundles(world: World) -> None:
    log, token, index = _logged(world)
    good = log.bundle(index, stored_size=0)
    for bad in (b"", b"nonsense", good.replace(b"log-bundle/v1", b"log-bundle/v2"), good[:-30]):
        assert _code(log, token, bad, None) is Code.log_proof_malformed


def test_another_logs_checkpoint_is_refused_as_log_origin(world: World) -> None:
    log, token, index = _logged(world)
    other = log_signer("evil.example/log", seed="evil")
    note = log.cosigned(log.checkpoint(), log=other)
    other_cp = replace(log.checkpoint(), origin="evil.example/log")
    note = log.cosigned(other_cp, log=other)
    assert _code(log, token, log.bundle(index, stored_size=0, note=note), None) is Code.log_origin


def test_a_checkpoint_not_signed_by_the_log_is_refused(world: World) -> None:
    log, token, index = _logged(world)
    impostor = log_signer(ORIGIN, seed="impostor")
    note = log.cosigned(log.checkpoint(), log=impostor)
    assert (
        _code(log, token, log.bundle(index, stored_size=0, note=note), None) is Code.log_signature
    )
    tampered = log.cosigned(log.checkpoint()).replace(b"\n\n\xe2\x80\x94 ", b"\n\n\xe2\x80\x94 ", 1)
    sig_start = tampered.index(b"\xe2\x80\x94 " + ORIGIN.encode()) + len(ORIGIN) + 12
    flipped = (
        tampered[:sig_start]
        + (b"B" if tampered[sig_start : sig_start + 1] != b"B" else b"C")
        + tampered[sig_start + 1 :]
    )
    assert (
        _code(log, token, log.bundle(index, stored_size=0, note=flipped), None)
        is Code.log_signature
    )


@pytest.mark.parametrize("cosigners", [0, 1])
def test_too_few_cosignatures_are_refused(world: World, cosigners: int) -> None:
    log, token, index = _logged(world)
    bundle = log.bundle(index, stored_size=0, cosigners=cosigners)
    assert _code(log, token, bundle, None) is Code.witness_quorum


def test_a_corrupt_cosignature_from_a_known_witness_is_refused(world: World) -> None:
    log, token, index = _logged(world)
    note = log.cosigned(log.checkpoint(), cosigners=3)
    last = note.rstrip(b"\n").rsplit(b" ", 1)
    corrupt = (
        last[0]
        + b" "
        + last[1][:20]
        + (b"A" if last[1][20:21] != b"A" else b"B")
        + last[1][21:]
        + b"\n"
    )
    assert (
        _code(log, token, log.bundle(index, stored_size=0, note=corrupt), None)
        is Code.witness_quorum
    )
    assert strip_signatures(note, 3)  # two cosignatures remain a quorum
    _verify(log, token, log.bundle(index, stored_size=0, note=strip_signatures(note, 3)), None)


def test_a_statement_not_in_the_log_is_refused(world: World) -> None:
    log, token, index = _logged(world)
    unlogged = statement_for(token, world.claims(seq=9), IDENTITY).encode()
    bundle = log.bundle(index, stored_size=0, entry=unlogged)
    assert _code(log, token, bundle, None) is Code.not_logged


def test_a_statement_for_another_device_is_refused(world: World) -> None:
    log = LogWorld()
    token = world.token()
    index = log.append(statement_for(token, world.claims(), OTHER_DEVICE).encode())
    assert _code(log, token, log.bundle(index, stored_size=0), None) is Code.statement_wrong_device


def test_a_statement_for_another_token_is_refused(world: World) -> None:
    log = LogWorld()
    other = world.token(world.claims(jti="tok-2"))
    index = log.append(statement_for(other, world.claims(jti="tok-2"), IDENTITY).encode())
    token = world.token()
    assert _code(log, token, log.bundle(index, stored_size=0), None) is Code.statement_wrong_token


def test_a_statement_that_misstates_the_token_is_refused(world: World) -> None:
    log = LogWorld()
    token = world.token()
    honest = statement_for(token, world.claims(), IDENTITY)
    index = log.append(replace(honest, basis="emergency", court=None, docket_sha256=None).encode())
    with pytest.raises(LogRejected) as caught:
        _verify(log, token, log.bundle(index, stored_size=0), None)
    assert caught.value.code is Code.statement_wrong_token
    assert "basis" in caught.value.detail


def test_a_logged_entry_that_is_not_a_statement_is_refused(world: World) -> None:
    log = LogWorld()
    index = log.append(b'{"hello": "world"}')
    assert (
        _code(log, world.token(), log.bundle(index, stored_size=0), None)
        is Code.statement_malformed
    )


def test_the_bundle_round_trips(world: World) -> None:
    log, _, index = _logged(world)
    data = log.bundle(index, stored_size=2)
    assert parse_bundle(data).encode() == data
