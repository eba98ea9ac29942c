"""From the service to the doorbell over the real log and witnesses: the service logs a
warrant token's statement and gets the bundle only once 2 of 3 witnesses cosigned; the
doorbell's gate accepts it and moves its stored checkpoint; with two witnesses down the
token waits (nothing to publish), and goes through, once, when one returns."""

from __future__ import annotations

import httpx
import pytest

from cloud_stub.services.release_log import NotWitnessedYet, ReleaseLogPublisher
from device.release.log_gate import LogGate
from protocol.keys import public_key_hex
from protocol.tlog.errors import LogRejected, LogRejectionCode
from release_log.client import LogClient
from tests.fixtures.tlog import TlogNetwork
from tests.unit.protocol_world import make_world
from tests.unit.tlog_world import seeded

IDENTITY_KEY = seeded("device-identity")


def test_service_to_doorbell_through_the_witnessed_log(
    tlog_network: TlogNetwork, tmp_path: object
) -> None:
    world = make_world()
    publisher = ReleaseLogPublisher(LogClient(tlog_network.log.url), wait_s=20)
    identity_hex = public_key_hex(IDENTITY_KEY.public_key())
    # Enrolment: the log's current checkpoint (after one earlier release) seeds the gate.
    first = world.claims(jti="tok-0", seq=1)
    publisher.log_token(world.token(first), first, identity_hex, device_log_size=0)
    gate = LogGate(
        tlog_network.directory / "device-state", tlog_network.policy, IDENTITY_KEY.public_key()
    )
    gate.seed(httpx.get(tlog_network.log.url + "/checkpoint", timeout=10).content)
    assert gate.status()["log_size"] == 1

    claims = world.claims(jti="tok-1", seq=2)
    token = world.token(claims)
    bundle = publisher.log_token(token, claims, identity_hex, device_log_size=1)
    verdict = gate.check(token, bundle)
    assert verdict.statement.court == "demo-district-court"
    assert gate.status()["log_size"] == 2

    # Another device's token logged under its own tag is refused by this doorbell.
    stranger = seeded("another-device").public_key()
    other = world.claims(jti="tok-x", seq=3)
    other_token = world.token(other)
    other_bundle = publisher.log_token(other_token, other, stranger, device_log_size=2)
    with pytest.raises(LogRejected) as caught:
        gate.check(other_token, other_bundle)
    assert caught.value.code is LogRejectionCode.statement_wrong_device

    # Two of three witnesses down: the token is logged but cannot be published yet.
    tlog_network.witnesses[0].stop()
    tlog_network.witnesses[1].stop()
    waiting_claims = world.claims(jti="tok-2", seq=4)
    waiting = world.token(waiting_claims)
    quick = ReleaseLogPublisher(LogClient(tlog_network.log.url), wait_s=1)
    with pytest.raises(NotWitnessedYet):
        quick.log_token(waiting, waiting_claims, identity_hex, device_log_size=2)
    tlog_network.restart_witness(0)
    bundle = publisher.log_token(waiting, waiting_claims, identity_hex, device_log_size=2)
    verdict = gate.check(waiting, bundle)
    assert verdict.index == 3  # the retry did not append the statement a second time
    assert gate.status() == {
        "log_origin": tlog_network.log_verifier.name,
        "log_size": 4,
        "log_inconsistent": False,
        "log_evidence": [],
    }
