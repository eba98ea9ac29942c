"""A compromised cloud host cannot release footage (docs/adr/0013-trust-root-v2.md,
docs/threat-model.md).

A real agent over the real broker (TLS, the deployment's ACL) first rotates from the
deployment's v1 trust root to v2 by the threshold rule, published on its retained
`trust-root` topic. Then every token a host holding all the service's secrets can make
(the policy key, v1's review key, the escrow key, the broker credentials) is published
on `release` and refused with its code, and nothing is uploaded. The court rules are
checked with tokens a reviewer was fooled into signing too: the device still checks the
court. The rotation tests show reviewers added and removed reaching a running agent.
"""

from __future__ import annotations

import dataclasses
import hashlib
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from device.release.decision import UNVERIFIED_CODES
from device.release.messages import unverified_id
from device.release.service import ReleaseService
from protocol.errors import RejectionCode
from protocol.token import ReleaseClaims
from tests.fixtures.broker import Broker
from tests.fixtures.deployment import TestDeployment
from tests.fixtures.evidence import EvidenceCloud, EvidenceEndpoint
from tests.fixtures.release import DeviceRig, Minter, ResultWatcher, make_rig
from tests.fixtures.trust_v2 import (
    Parties,
    audit_events,
    publish_chain,
    sign,
    statement,
    wait_root_version,
    warrant_claim,
)

pytestmark = pytest.mark.broker


@dataclasses.dataclass
class Doorbell:
    rig: DeviceRig
    minter: Minter
    parties: Parties
    evidence: EvidenceEndpoint
    watcher: ResultWatcher
    service: ReleaseService
    roots: list[bytes]

    def claims(self, **changes: Any) -> ReleaseClaims:
        now = self.rig.clock.now()
        claims = self.minter.claims(now - timedelta(hours=1), now - timedelta(minutes=1),
                                    **changes)
        self.evidence.issue(claims)  # the (compromised) cloud would take the upload
        return claims

    def warrant(self, st_changes: dict[str, Any] | None = None,
                court: Ed25519PrivateKey | None = None, **changes: Any) -> ReleaseClaims:
        changes_st = dict(st_changes or {})
        devices = changes_st.pop("device_ids", (self.rig.device_id,))
        st = statement(devices, self.rig.clock.now(), **changes_st)
        claim = warrant_claim(st, court or self.parties.court)
        return self.claims(warrant=claim, **changes)

    def expect(self, token: bytes, jti: str, status: str, code: str = "") -> None:
        self.watcher.publish_token(token)
        if code and RejectionCode(code) in UNVERIFIED_CODES:
            # refused before its signatures verified: reported under the bytes' own id,
            # never the jti it claims (docs/protocol.md)
            jti = unverified_id(hashlib.sha256(token).hexdigest())
        result = self.watcher.result(jti, status)
        assert result["reason"] == code, result


@pytest.fixture
def doorbell(deployment: TestDeployment, broker: Broker, tmp_path: Path,
             evidence_cloud: EvidenceCloud) -> Iterator[Doorbell]:
    rig = make_rig(deployment, tmp_path, broker_port=broker.port)
    now = rig.clock.now()
    rig.record(now - timedelta(minutes=30), 5)
    evidence = EvidenceEndpoint(rig, evidence_cloud)
    evidence.start()
    minter = Minter(rig, evidence.base)
    parties = Parties.of(minter)
    watcher = ResultWatcher(broker, rig.device_id, deployment.prefix)
    service = rig.service()
    service.start()
    v2 = parties.signed_root(parties.root(2, minter.root.issuer, now), parties.root_keys)
    roots = [v2]
    publish_chain(watcher, roots)
    try:
        wait_root_version(service, 2)
        yield Doorbell(rig, minter, parties, evidence, watcher, service, roots)
    finally:
        service.stop()
        evidence.stop()
        rig.close()


def _nothing_left(d: Doorbell) -> None:
    assert d.evidence.files == {}
    assert d.evidence.manifest_posts == {}
    assert d.service.jobs.running_jobs() == []


Attack = Callable[[Doorbell], tuple[bytes, str]]


def policy_alone(d: Doorbell) -> tuple[bytes, str]:
    c = d.warrant()
    return sign(c, d.parties.policy), c.jti


def policy_and_old_review_key(d: Doorbell) -> tuple[bytes, str]:
    c = d.warrant()
    return sign(c, d.parties.policy, d.parties.old_review), c.jti


def policy_and_stranger(d: Doorbell) -> tuple[bytes, str]:
    c = d.warrant()
    return sign(c, d.parties.policy, Ed25519PrivateKey.generate()), c.jti


def policy_and_review_over_other_payload(d: Doorbell) -> tuple[bytes, str]:
    import json

    genuine = d.warrant()  # what alice approved
    # another jti of the form the cloud issues (its endpoint refuses any other form)
    forged = dataclasses.replace(genuine, jti=str(uuid.uuid4()), seq=genuine.seq + 1)
    d.evidence.issue(forged)
    token = json.loads(sign(forged, d.parties.policy))
    alice = json.loads(sign(genuine, d.parties.key("alice")))
    token["signatures"].append(alice["signatures"][0])
    return json.dumps(token).encode(), forged.jti


def _fooled(d: Doorbell, c: ReleaseClaims) -> tuple[bytes, str]:
    return sign(c, d.parties.policy, d.parties.key("alice")), c.jti


def warrant_for_another_device(d: Doorbell) -> tuple[bytes, str]:
    return _fooled(d, d.warrant({"device_ids": ("another-porch",)}))


def window_wider_than_warrant(d: Doorbell) -> tuple[bytes, str]:
    now = d.rig.clock.now()
    return _fooled(d, d.warrant({"window_start": now - timedelta(minutes=40)}))


def expired_warrant(d: Doorbell) -> tuple[bytes, str]:
    now = d.rig.clock.now().replace(microsecond=0)
    return _fooled(d, d.warrant({"issued": now - timedelta(days=20),
                                 "expires": now - timedelta(minutes=5)}))


def warrant_signed_by_a_non_court(d: Doorbell) -> tuple[bytes, str]:
    return _fooled(d, d.warrant(court=d.parties.policy))


def warrant_of_an_unknown_court(d: Doorbell) -> tuple[bytes, str]:
    c = d.warrant({"court_id": "host-made-court"}, court=Ed25519PrivateKey.generate())
    return _fooled(d, dataclasses.replace(c, case=dataclasses.replace(
        c.case, authority="host-made-court")))


def emergency_two_reviews_one_org(d: Doorbell) -> tuple[bytes, str]:
    c = d.claims(basis="emergency", life_s=1800)
    return sign(c, d.parties.policy, d.parties.key("alice"), d.parties.key("bob")), c.jti


ATTACKS: list[tuple[Attack, str]] = [
    (policy_alone, "review_signature_missing"),
    (policy_and_old_review_key, "review_signature_missing"),
    (policy_and_stranger, "review_signature_missing"),
    (policy_and_review_over_other_payload, "bad_signature"),
    (warrant_for_another_device, "warrant_wrong_device"),
    (window_wider_than_warrant, "warrant_window_exceeded"),
    (expired_warrant, "warrant_not_in_force"),
    (warrant_signed_by_a_non_court, "court_signature_invalid"),
    (warrant_of_an_unknown_court, "court_unknown"),
    (emergency_two_reviews_one_org, "review_orgs_too_few"),
]


def test_every_token_a_compromised_host_can_make_is_refused(doorbell: Doorbell) -> None:
    for attack, code in ATTACKS:
        token, jti = attack(doorbell)
        doorbell.expect(token, jti, "rejected", code)
        _nothing_left(doorbell)


def test_the_same_doorbell_releases_with_policy_reviewer_and_court(doorbell: Doorbell) -> None:
    """The control: the refusals above are the rules, not a broken device."""
    c = doorbell.warrant()
    doorbell.expect(sign(c, doorbell.parties.policy, doorbell.parties.key("carol")), c.jti,
                    "uploaded")
    assert doorbell.evidence.manifest_posts == {c.jti: 1}


def test_a_v1_token_no_longer_counts_after_rotation(doorbell: Doorbell) -> None:
    c = doorbell.claims()
    doorbell.expect(doorbell.minter.sign(c), c.jti, "rejected", "review_signature_missing")
    _nothing_left(doorbell)


def test_reviewer_added_then_removed_reaches_the_running_agent(doorbell: Doorbell) -> None:
    d = doorbell
    now = d.rig.clock.now()
    issuer = d.minter.root.issuer
    dave = Ed25519PrivateKey.generate()
    d.parties.reviewers["dave"] = (dave, "civic-review")
    d.roots.append(d.parties.signed_root(d.parties.root(3, issuer, now)))
    publish_chain(d.watcher, d.roots)
    wait_root_version(d.service, 3)
    kept = d.claims(basis="preservation")
    d.expect(sign(kept, d.parties.policy, dave), kept.jti, "preserved")

    d.roots.append(d.parties.signed_root(
        d.parties.root(4, issuer, now, reviewers=("alice", "bob", "carol"))))
    publish_chain(d.watcher, d.roots)
    wait_root_version(d.service, 4)
    refused = d.claims(basis="preservation")
    d.expect(sign(refused, d.parties.policy, dave), refused.jti, "rejected",
             "review_signature_missing")


def test_a_root_not_signed_by_the_old_threshold_is_refused_and_the_old_one_kept(
    doorbell: Doorbell,
) -> None:
    d = doorbell
    now = d.rig.clock.now()
    new_keys = [Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()]
    takeover = dataclasses.replace(d.parties, root_keys=new_keys)
    takeover.reviewers = {"mallory": (Ed25519PrivateKey.generate(), "host-org")}
    forged = takeover.signed_root(takeover.root(3, d.minter.root.issuer, now))
    publish_chain(d.watcher, [*d.roots, forged])
    deadline = 20.0
    import time

    start = time.monotonic()
    while not [e for e in audit_events(d.service, "trust_root")
               if e["data"]["status"] == "refused"]:
        assert time.monotonic() - start < deadline, "the agent never judged the forged root"
        time.sleep(0.05)
    refusal = [e for e in audit_events(d.service, "trust_root")
               if e["data"]["status"] == "refused"][-1]
    assert refusal["data"]["code"] == "below_threshold"
    assert d.service.handler.root.version == 2
    c = d.claims(basis="preservation")
    d.expect(sign(c, d.parties.policy, takeover.key("mallory")), c.jti, "rejected",
             "review_signature_missing")


def test_the_applied_root_survives_a_restart(doorbell: Doorbell) -> None:
    d = doorbell
    d.service.stop()
    again = d.rig.service()
    assert again.handler.root.version == 2
    again.audit.close()
    again.db.close()
    d.service = d.rig.service()
    d.service.start()
