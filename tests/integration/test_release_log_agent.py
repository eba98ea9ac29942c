"""A real agent under a trust root v2 that carries a log policy refuses every token that
comes without a valid release-log proof, and uploads nothing (docs/protocol.md section 11,
docs/adr/0014-release-log.md).

Real mosquitto (TLS, the deployment's ACL), the real agent on the simulated camera, and
the real log with three real witness processes (`tlog_network`). The doorbell is seeded
with the log's checkpoint (as enrolment does), then receives a v2 root whose `log`
section is the network's policy. The service's side is `ReleaseLogPublisher` against the
real log; what it publishes is the envelope of `protocol.release_envelope`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from cloud_stub.services.release_log import ReleaseLogPublisher
from device.release.log_gate import LogGate
from device.release.messages import unverified_id
from device.release.service import ReleaseService
from protocol.release_envelope import wrap_release
from protocol.tlog.note import SignatureType
from protocol.tlog.statement import statement_for
from protocol.token import ReleaseClaims
from release_log.client import LogClient
from release_log.log_cli import read_signer
from tests.fixtures.broker import Broker
from tests.fixtures.deployment import TestDeployment
from tests.fixtures.evidence import EvidenceCloud, EvidenceEndpoint
from tests.fixtures.release import DeviceRig, Minter, ResultWatcher, make_rig
from tests.fixtures.tlog import TlogNetwork
from tests.fixtures.trust_v2 import (
    Parties,
    publish_chain,
    sign,
    statement,
    wait_root_version,
    warrant_claim,
)
from tests.unit.tlog_world import LogWorld, seeded

pytestmark = pytest.mark.broker


@dataclasses.dataclass
class LoggedDoorbell:
    rig: DeviceRig
    minter: Minter
    parties: Parties
    evidence: EvidenceEndpoint
    watcher: ResultWatcher
    service: ReleaseService
    network: TlogNetwork
    publisher: ReleaseLogPublisher

    def warrant(self) -> ReleaseClaims:
        now = self.rig.clock.now()
        st = statement((self.rig.device_id,), now)
        claims = self.minter.claims(now - timedelta(hours=1), now - timedelta(minutes=1),
                                    warrant=warrant_claim(st, self.parties.court))
        self.evidence.issue(claims)  # the cloud would take the upload
        return claims

    def token(self, claims: ReleaseClaims) -> bytes:
        return sign(claims, self.parties.policy, self.parties.key("carol"))

    def log_size(self) -> int:
        size = self.service.handler.log_status() or {}
        return int(size.get("log_size") or 0)

    def logged(self, token: bytes, claims: ReleaseClaims, identity: Any = None) -> bytes:
        return self.publisher.log_token(token, claims, identity or self.rig.identity_public,
                                        device_log_size=self.log_size())

    def refused(self, message: bytes, token: bytes, code: str) -> dict[str, Any]:
        """Publish `message`; the result is `rejected` with `code`, under the token
        bytes' own id and naming their sha256; nothing was uploaded."""
        sha = hashlib.sha256(token).hexdigest()
        self.watcher.publish_token(message)
        result = self.watcher.result(unverified_id(sha), "rejected")
        assert (result["reason"], result["token_sha256"]) == (code, sha), result
        assert self.evidence.files == {}
        assert self.evidence.manifest_posts == {}
        assert self.service.jobs.running_jobs() == []
        return result


@pytest.fixture
def doorbell(deployment: TestDeployment, broker: Broker, tlog_network: TlogNetwork,
             evidence_cloud: EvidenceCloud,
             tmp_path: Path) -> Iterator[LoggedDoorbell]:
    rig = make_rig(deployment, tmp_path, broker_port=broker.port)
    now = rig.clock.now()
    rig.record(now - timedelta(minutes=30), 5)
    evidence = EvidenceEndpoint(rig, evidence_cloud)
    evidence.start()
    minter = Minter(rig, evidence.base)
    parties = Parties.of(minter)
    watcher = ResultWatcher(broker, rig.device_id, deployment.prefix)
    publisher = ReleaseLogPublisher(LogClient(tlog_network.log.url), wait_s=20)
    # Another doorbell's release is in the log already; enrolment hands this one the
    # log's current checkpoint.
    earlier = minter.claims(now - timedelta(hours=1), now - timedelta(minutes=1))
    publisher.log_token(minter.sign(earlier), earlier, seeded("another-doorbell").public_key(),
                        device_log_size=0)
    note = httpx.get(tlog_network.log.url + "/checkpoint", timeout=10).content
    LogGate(rig.config.agent.state_dir, tlog_network.policy, rig.identity_public).seed(note)
    service = rig.service()
    service.start()
    lines = tlog_network.policy_path.read_text().splitlines()  # the log line with its URL
    policy = "\n".join([f"{lines[0]} {tlog_network.log.url}", *lines[1:]]) + "\n"
    root = dataclasses.replace(parties.root(2, minter.root.issuer, now), log_policy=policy)
    publish_chain(watcher, [parties.signed_root(root, parties.root_keys)])
    try:
        wait_root_version(service, 2)
        yield LoggedDoorbell(rig, minter, parties, evidence, watcher, service, tlog_network,
                             publisher)
    finally:
        service.stop()
        evidence.stop()
        rig.close()


def test_a_logged_warrant_is_released_and_the_status_reports_the_new_size(
    doorbell: LoggedDoorbell,
) -> None:
    d = doorbell
    assert d.log_size() == 1
    claims = d.warrant()
    token = d.token(claims)
    d.watcher.publish_token(wrap_release(token, d.logged(token, claims)))
    result = d.watcher.result(claims.jti, "uploaded", timeout=60)
    assert result["token_sha256"] == hashlib.sha256(token).hexdigest()
    assert d.evidence.manifest_posts == {claims.jti: 1}
    assert d.log_size() == 2
    d.service.publish_status()
    status = d.watcher.wait(d.watcher.topics.status,
                            lambda body: body.get("release_log_size") == 2)
    assert status["release_log_inconsistent"] is False


def test_tokens_without_a_valid_proof_are_refused_and_nothing_is_uploaded(
    doorbell: LoggedDoorbell,
) -> None:
    d = doorbell
    bare = d.warrant()
    bare_token = d.token(bare)
    d.refused(bare_token, bare_token, "not_logged")

    logged = d.warrant()
    logged_token = d.token(logged)
    bundle = d.logged(logged_token, logged)
    other = d.warrant()
    other_token = d.token(other)
    d.refused(wrap_release(other_token, bundle), other_token, "statement_wrong_token")

    stranger = d.warrant()
    stranger_token = d.token(stranger)
    strangers_bundle = d.logged(stranger_token, stranger, seeded("a-neighbour").public_key())
    d.refused(wrap_release(stranger_token, strangers_bundle), stranger_token,
              "statement_wrong_device")

    garbled = d.token(d.warrant())
    d.refused(wrap_release(garbled, b"not a bundle"), garbled, "log_proof_malformed")
    broken = json.dumps({"v": 2, "token": garbled.decode(), "log": "x"}).encode()
    d.refused(broken, broken, "malformed")

    # the doorbell still releases the genuine one, with its own (still valid) proof
    d.watcher.publish_token(wrap_release(logged_token, d.logged(logged_token, logged)))
    d.watcher.result(logged.jti, "uploaded", timeout=60)
    assert d.evidence.manifest_posts == {logged.jti: 1}


def test_a_split_view_is_refused_log_inconsistent_and_the_evidence_kept(
    doorbell: LoggedDoorbell,
) -> None:
    """The operator holds the log key and two witnesses collude: a checkpoint of another
    history, properly signed with the quorum, is shown to the doorbell."""
    d = doorbell
    stored = (d.rig.config.agent.state_dir / "release" / "log" / "checkpoint").read_bytes()
    directory = d.network.directory
    fork = LogWorld(
        log=read_signer(directory / "log" / "log.key", SignatureType.ed25519),
        witnesses=[read_signer(directory / f"w{i}" / "witness.key", SignatureType.cosignature_v1)
                   for i in (1, 2)],
    )
    fork.fill(3)  # not the history the doorbell holds (size 1)
    claims = d.warrant()
    token = d.token(claims)
    index = fork.append(statement_for(token, claims, d.rig.identity_public).encode())
    d.refused(wrap_release(token, fork.bundle(index, stored_size=1)), token, "log_inconsistent")

    status = d.service.handler.log_status()
    assert status is not None
    assert (status["log_size"], status["log_inconsistent"], status["log_evidence"]) == (1, True, 1)
    evidence = next((d.rig.config.agent.state_dir / "release" / "log" / "evidence").iterdir())
    assert (evidence / "stored-checkpoint").read_bytes() == stored
    assert b"log-bundle" in (evidence / "offered-bundle").read_bytes()
    assert json.loads((evidence / "reason.json").read_text())["code"] == "log_inconsistent"
    d.service.publish_status()
    d.watcher.wait(d.watcher.topics.status,
                   lambda body: body.get("release_log_inconsistent") is True)


def test_a_proof_from_a_stale_size_is_completed_from_the_logs_tiles(
    doorbell: LoggedDoorbell,
) -> None:
    """The service proved both tokens from the size the doorbell reported before either
    arrived; the second proof then starts from a size the doorbell no longer holds, and
    the doorbell computes the consistency proof from the log's tiles itself."""
    d = doorbell
    first, second = d.warrant(), d.warrant()
    first_token, second_token = d.token(first), d.token(second)
    first_bundle = d.logged(first_token, first)
    second_bundle = d.logged(second_token, second)  # both from size 1
    for claims, token, bundle in ((first, first_token, first_bundle),
                                  (second, second_token, second_bundle)):
        d.watcher.publish_token(wrap_release(token, bundle))
        result = d.watcher.result(claims.jti, timeout=60)
        assert result["status"] == "uploaded", result
    assert d.log_size() == 3
    status = d.service.handler.log_status()
    assert status is not None
    assert status["log_evidence"] == 0
