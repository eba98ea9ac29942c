"""End to end with the release log (docs/protocol.md section 11, ADR 0014): a deployment
whose trust root v2 carries a log policy, the real log and three real witness processes,
a real mosquitto, the real cloud stub over HTTP and MQTT, a reviewer approving with
`doorbell-review` and the real agent on the simulated camera.

With two of the three witnesses down the approved warrant's token is logged but not
published (nothing reaches the doorbell); once one witness returns the service publishes
it with its proof, the doorbell checks it and uploads. Then the owner's
`doorbell-owner monitor`, reading the log's tiles only, reports the entry for this
doorbell, and `cloud-stub report --verify-log` agrees with the database.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from cloud_stub.mqtt import CloudMqtt, MqttOptions
from cloud_stub.policy.courts import load_court_key
from cloud_stub.provision.log_enrolment import DEVICE_CHECKPOINT_FILE
from cloud_stub.store.models import Token
from device.agent import Agent
from device.clock import ManualClock
from device.config import AgentConfig
from device.release.layout import ReleaseLayout
from device.vault import open_store
from protocol.keys import public_key_from_hex
from protocol.release_envelope import parse_release_message
from protocol.timefmt import format_time
from protocol.tlog.bundle import parse_bundle
from protocol.tlog.checkpoint import open_checkpoint
from protocol.tlog.policy import witnessed_names
from protocol.tlog.statement import device_tag
from tests.fixtures.broker import Inbox, running_broker, subscribe
from tests.fixtures.cloud import open_cloud
from tests.fixtures.deployment import TestDeployment
from tests.fixtures.policy import COURT_ID, PolicyWorld
from tests.fixtures.release import ResultWatcher, rig_config
from tests.fixtures.tlog import TlogNetwork

pytestmark = [pytest.mark.broker, pytest.mark.slow]

BIN = Path(sys.executable).parent
CAMERA = {"width": 320, "height": 240, "fps": 15, "lores_width": 160, "lores_height": 120}
RECORDER = {"pre_roll_s": 2.0, "post_roll_s": 3.0, "bitrate": 200_000}


def _run(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False,
                          env={**os.environ, **(env or {})})


def _config(base: AgentConfig, *, scene: str, realtime: bool) -> AgentConfig:
    camera = base.camera.model_copy(
        update={**CAMERA, "source": "sim", "scene": scene, "realtime": realtime})
    return base.model_copy(update={"camera": camera,
                                   "recorder": base.recorder.model_copy(update=RECORDER)})


def _wait(what: str, check: Any, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def _policy_with_log_url(network: TlogNetwork) -> str:
    """The network's policy, its `log` line given the log's URL (what the service and the
    owner's monitor read the log from)."""
    lines = network.policy_path.read_text().splitlines()
    assert lines[0].startswith("log ")
    return "\n".join([f"{lines[0]} {network.log.url}", *lines[1:]]) + "\n"


def test_a_warrant_goes_through_the_witnessed_log_to_the_doorbell_and_the_owner(
    fresh_deployment: TestDeployment, tlog_network: TlogNetwork, tmp_path: Path
) -> None:
    d = fresh_deployment
    store = f"sqlite:///{tmp_path / 'cloud.sqlite3'}"

    def cloud_stub(*argv: str) -> subprocess.CompletedProcess[str]:
        return _run(str(BIN / "cloud-stub"), *argv, "--deployment", str(d.layout.root),
                    "--store-url", store)

    # The operator: decisive keys off the host, reviewer alice, the log policy, root v2.
    away = d.move_keys_off_host()
    home = tmp_path / "alice-home"
    keygen = _run(str(BIN / "doorbell-review"), "keygen", env={"XDG_CONFIG_HOME": str(home)})
    assert keygen.returncode == 0, keygen.stderr
    public = next(line.split()[-1] for line in keygen.stdout.splitlines()
                  if line.startswith("public key:"))
    added = cloud_stub("reviewers", "add", "alice", "--org", "acme-review",
                       "--public-key", public, "--json")
    assert added.returncode == 0, added.stderr
    api_key = json.loads(added.stdout)["api_key"]
    policy_file = tmp_path / "log-policy.txt"
    policy_file.write_text(_policy_with_log_url(tlog_network))
    assert cloud_stub("root", "log-policy", str(policy_file)).returncode == 0
    signed = cloud_stub("root", "sign", "--keys", str(away / "offline-root"))
    assert signed.returncode == 0, signed.stderr

    with running_broker(d, tmp_path / "broker") as broker:
        for cloud in open_cloud(d, tmp_path, store_url=store):
            link = CloudMqtt(cloud.service, MqttOptions.from_service(
                cloud.service, host=broker.host, port=broker.port))
            assert link.start(), "the cloud stub did not connect to the broker"
            try:
                _released_through_the_log(d, cloud, broker, tlog_network, home, api_key,
                                          away, tmp_path)
            finally:
                link.stop()
            break

    # The auditor: the report's counts recomputed from the public log agree.
    report = cloud_stub("report", "--verify-log", str(policy_file))
    assert report.returncode == 0, report.stderr
    assert "the release log agrees (1 releases)" in report.stderr


def _released_through_the_log(d: TestDeployment, cloud: Any, broker: Any,
                              network: TlogNetwork, home: Path, api_key: str, away: Path,
                              tmp_path: Path) -> None:
    device = cloud.enroll("logged")
    device_id = device.device_id
    # enrolment handed the doorbell the log's checkpoint and the owner the policy and tag
    assert (device.bundle.root / DEVICE_CHECKPOINT_FILE).read_bytes().startswith(
        network.log_verifier.name.encode())
    owner_bundle = d.layout.owner_bundle(device_id).root
    identity = public_key_from_hex(device.bundle.identity_pub.read_text().strip())
    assert (owner_bundle / "release-log" / "device-tag").read_text().strip() == \
        device_tag(identity)
    config = rig_config(device.bundle, tmp_path / "state", broker_port=broker.port,
                        release={"cloud_url": cloud.url})
    watcher = ResultWatcher(broker, device_id, d.prefix)
    # what the service sends the doorbell, read as the doorbell (the ACL lets only it)
    listener = broker.client(device_id)
    sent = Inbox(listener)
    subscribe(listener, watcher.topics.release)

    now = datetime.now(UTC).replace(microsecond=0)
    Agent.from_config(_config(config, scene="visitor", realtime=False),
                      clock=ManualClock(now - timedelta(minutes=10)),
                      simulated=True).run(duration_s=20)
    vault = open_store(config)
    clips = vault.list_clips()
    vault.close()
    assert len(clips) == 1, clips
    visitor = clips[0]
    assert visitor.end is not None

    agent = Agent.from_config(_config(config, scene="empty", realtime=True),
                              clock=ManualClock(datetime.now(UTC).replace(microsecond=0)),
                              simulated=True)
    runner = threading.Thread(target=agent.run, kwargs={"duration_s": 600}, daemon=True)
    runner.start()
    try:
        outbox = agent.store.escrow_outbox
        _wait("the cloud's escrow-ack", lambda: outbox.pending() == [])
        watcher.wait(watcher.topics.status,
                     lambda body: body.get("release_log_size") == 0, timeout=60)

        # the warrant, approved with the reviewer's own key, while two witnesses are down
        agency = cloud.principal("agency", org="metro-pd")
        world = PolicyWorld(now=datetime.now(UTC).replace(microsecond=0),
                            court_key=load_court_key(away / "courts" / f"{COURT_ID}.key"),
                            recipient=agency.recipient or "")
        window = {"start": format_time(visitor.start - timedelta(minutes=1)),
                  "end": format_time(visitor.end.replace(microsecond=0)
                                     + timedelta(seconds=1))}
        submitted = cloud.submit(agency, world.warrant(device_ids=[device_id], window=window))
        assert submitted.status_code == 201, submitted.text
        request_id = submitted.json()["id"]
        network.witnesses[0].stop()
        network.witnesses[1].stop()
        env = {"XDG_CONFIG_HOME": str(home), "DOORBELL_REVIEW_API": cloud.url,
               "DOORBELL_REVIEW_API_KEY": api_key}
        approved = _run(str(BIN / "doorbell-review"), "approve", request_id, "--reason",
                        "warrant checked against the court's docket", env=env)
        assert approved.returncode == 0, approved.stderr
        with cloud.service.store.read() as session:
            from sqlalchemy import select

            token = session.execute(select(Token).where(Token.request_id == request_id)
                                    ).scalar_one()
            jti, jws = token.jti, token.jws.encode()
            assert token.status == "issued"  # logged, but no quorum: not published
        time.sleep(2.0)  # redelivery passes run meanwhile; nothing goes out
        assert sent.drain() == []
        assert [r for r in watcher.results() if r["jti"] == jti] == []

        network.restart_witness(0)  # the quorum is back: the pending pass publishes it
        result = watcher.result(jti, timeout=90)
        assert result["status"] == "uploaded", result
        assert result["clips"] == [visitor.id]
    finally:
        agent.request_stop()
        runner.join(timeout=60)

    # what went out: the envelope with the exact token and a proof cosigned by the quorum
    published = sent.drain()
    assert published, "the doorbell's listener saw no release message"
    message = parse_release_message(published[0].payload)
    assert message.token == jws
    assert message.log is not None
    proof = parse_bundle(message.log).proof
    policy = network.policy
    opened = open_checkpoint(proof.checkpoint, [network.log_verifier,
                                                *policy.witness_verifiers])
    assert policy.satisfied(witnessed_names(policy, (v for v, _ in opened.note.verified)))
    audit = ReleaseLayout(config.agent.state_dir).audit_log.read_text().splitlines()
    received = [json.loads(line)["data"] for line in audit
                if json.loads(line)["event"] == "token_received"]
    assert [r["log_proof"] for r in received] == [True]

    # the owner, from the log's tiles alone, finds the entry for this doorbell
    monitor = _run(str(BIN / "doorbell-owner"), "--bundle", str(owner_bundle), "monitor",
                   "--state", str(tmp_path / "owner-state"), "--json")
    assert monitor.returncode == 0, monitor.stderr + monitor.stdout
    entries = [json.loads(line) for line in monitor.stdout.splitlines()
               if line.startswith("{") and "token_sha256" in line]
    import hashlib

    assert [e["token_sha256"] for e in entries] == [hashlib.sha256(jws).hexdigest()]
    assert entries[0]["court"] == COURT_ID
