"""The device's decision on a token is a pure function: bytes, keys, trust root, clock
and read-only state in, a typed verdict out (device/release/decision.py).

Everything here runs in memory: a vault index and a set of held tokens that cannot be
written to, so a verdict that needed an effect could not be produced.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

import pytest

from device.release.decision import (
    Accept,
    Defer,
    Duplicate,
    Reject,
    judge,
    redelivery,
)
from device.release.messages import unverified_id
from device.vault.index import ClipRecord, ClipState, EpochRecord
from protocol.errors import RejectionCode
from protocol.token import VerificationContext
from protocol.unverified import claimed_jti
from tests.unit.protocol_world import DEVICE, NOW, Replay, World, make_world


@pytest.fixture(scope="module")
def world() -> World:
    return make_world()


@dataclass(frozen=True)
class Index:
    """A vault index in memory, read-only."""

    clips: tuple[ClipRecord, ...]
    epoch_list: tuple[EpochRecord, ...]

    def list_clips(
        self,
        since: datetime | None = None,
        until: datetime | None = None,
        states: Iterable[ClipState] | None = None,
    ) -> Sequence[ClipRecord]:
        wanted = None if states is None else set(states)
        return [
            c for c in self.clips
            if (wanted is None or c.state in wanted)
            and (until is None or c.start <= until)
            and (since is None or (c.end or c.start) >= since)
        ]

    def epochs(self) -> Sequence[EpochRecord]:
        return self.epoch_list


@dataclass(frozen=True)
class Held:
    accepted: dict[str, str] = field(default_factory=dict)  # sha256 -> jti
    deferred: frozenset[str] = frozenset()

    def accepted_jti(self, sha256: str) -> str | None:
        return self.accepted.get(sha256)

    def is_deferred(self, sha256: str) -> bool:
        return sha256 in self.deferred


def clip(world: World, clip_id: str, start: datetime, minutes: int = 5) -> ClipRecord:
    return ClipRecord(
        id=clip_id, start=start, end=start + timedelta(minutes=minutes), events=(), bytes=100,
        sha256=None, epoch_id=world.epoch_id, state=ClipState.SEALED, complete=True,
        hold_until=None, pending_upload=False,
    )


def index(world: World, *, recipient: str | None = None) -> Index:
    inside = clip(world, "in-window", NOW - timedelta(hours=2))
    outside = clip(world, "before-window", NOW - timedelta(hours=5))
    epoch = EpochRecord(
        world.epoch_id, NOW - timedelta(days=1), NOW,
        recipient or str(world.epoch_identity.to_public()),
    )
    return Index((inside, outside), (epoch,))


def decide(world: World, token: bytes, *, synchronized: bool = True,
           vault: Index | None = None) -> Accept | Reject | Defer:
    return judge(
        token,
        hashlib.sha256(token).hexdigest(),
        root=world.root,
        context=VerificationContext(device_id=DEVICE, now=NOW, clock_synchronized=synchronized),
        replay=Replay(),
        vault=vault or index(world),
        transport_identity=str(world.transport),
    )


def test_a_valid_token_is_accepted_with_its_window_and_opened_keys(world: World) -> None:
    verdict = decide(world, world.token())
    assert isinstance(verdict, Accept)
    assert verdict.claims.jti == "tok-1"
    assert [c.id for c in verdict.clips] == ["in-window"]
    assert verdict.keys == {world.epoch_id: str(world.epoch_identity)}
    assert "AGE-SECRET-KEY" not in repr(verdict)  # opened keys never reach a log line


def test_the_same_inputs_give_the_same_verdict(world: World) -> None:
    token = world.token()
    assert decide(world, token) == decide(world, token)


def test_a_preservation_token_opens_no_keys(world: World) -> None:
    verdict = decide(world, world.token(world.preservation_claims()))
    assert isinstance(verdict, Accept)
    assert verdict.keys is None


def test_an_unsynchronized_clock_defers_under_the_claimed_jti(world: World) -> None:
    token = world.token()
    verdict = decide(world, token, synchronized=False)
    assert isinstance(verdict, Defer)
    assert verdict.jti == "tok-1"
    assert verdict.sha256 == hashlib.sha256(token).hexdigest()


def test_a_forgery_is_rejected_under_its_own_id_not_the_jti_it_claims(world: World) -> None:
    """A token signed by keys the root does not trust claims a real jti: the rejection
    must not name that jti (it could be a release in flight)."""
    forged = replace(world, release_keys=list(world.root_keys))
    token = forged.token()
    verdict = decide(world, token)
    assert isinstance(verdict, Reject)
    assert verdict.report_as == unverified_id(hashlib.sha256(token).hexdigest())
    assert claimed_jti(token) == "tok-1"


def test_garbage_is_malformed(world: World) -> None:
    verdict = decide(world, b"\x00not a token")
    assert isinstance(verdict, Reject)
    assert verdict.code is RejectionCode.malformed
    assert verdict.report_as.startswith("sha256-")


def test_keys_for_another_epoch_recipient_are_rejected_under_the_jti(world: World) -> None:
    other = "age1" + "q" * 58
    verdict = decide(world, world.token(), vault=index(world, recipient=other))
    assert isinstance(verdict, Reject)
    assert verdict.code is RejectionCode.keys_mismatch
    assert verdict.report_as == "tok-1"


def test_held_bytes_are_a_duplicate_and_other_bytes_are_not(world: World) -> None:
    token = world.token()
    sha = hashlib.sha256(token).hexdigest()
    assert redelivery(token, sha, Held(accepted={sha: "tok-1"})) == Duplicate(
        "tok-1", sha, accepted=True
    )
    assert redelivery(token, sha, Held(deferred=frozenset({sha}))) == Duplicate(
        "tok-1", sha, accepted=False
    )
    assert redelivery(token, sha, Held()) is None


@pytest.mark.parametrize("data", [b"", b"{}", b'{"payload": 5}', b'{"payload": "!!"}',
                                  b'{"payload": "eyJqdGkiOiAiLi4vZXRjIn0"}'])
def test_claimed_jti_reads_nothing_from_bytes_without_a_well_formed_one(data: bytes) -> None:
    assert claimed_jti(data) == ""
