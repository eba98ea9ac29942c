"""The release side over a real mosquitto (TLS, client certificates, the deployment's
ACL): tokens in on `release`, results out on `result`, notices retained on `notice`,
status with a last will; persistent sessions across device downtime and a broker restart;
deferral while the clock is unsynchronized."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest

from device.release.jobs import IMMEDIATE
from device.release.messages import unverified_id
from tests.fixtures.broker import Broker
from tests.fixtures.deployment import TestDeployment
from tests.fixtures.evidence import EvidenceCloud, EvidenceEndpoint
from tests.fixtures.release import (
    DeviceRig,
    Minter,
    ResultWatcher,
)

pytestmark = pytest.mark.broker

FAR_FUTURE = IMMEDIATE + timedelta(days=365 * 200)  # every row of the outbox is due


@pytest.fixture
def cloud_side(mqtt_rig: DeviceRig, evidence_cloud: EvidenceCloud
               ) -> Iterator[EvidenceEndpoint]:
    with EvidenceEndpoint(mqtt_rig, evidence_cloud) as server:
        yield server


def test_token_over_mqtt_uploads_and_reports(
    mqtt_rig: DeviceRig, cloud_side: EvidenceEndpoint, broker: Broker, deployment: TestDeployment
) -> None:
    rig = mqtt_rig
    now = rig.clock.now()
    clip = rig.record(now - timedelta(minutes=30), 5)
    watcher = ResultWatcher(broker, rig.device_id, deployment.prefix)
    minter = Minter(rig, cloud_side.base)
    claims = minter.claims(now - timedelta(hours=1), now - timedelta(minutes=1))
    cloud_side.issue(claims)
    service = rig.service()
    service.start()
    try:
        status = watcher.wait(watcher.topics.status, lambda b: b["state"] == "online")
        assert "release_deferred" in status
        watcher.publish_token(minter.sign(claims))
        result = watcher.result(claims.jti, "uploaded")
        assert result["clips"] == [clip.id]
        notice = watcher.wait(watcher.topics.notice, lambda b: b["jti"] == claims.jti)
        assert notice["clips"] == [clip.id]
        assert cloud_side.manifest_posts == {claims.jti: 1}
    finally:
        service.stop()
    # the retained status now says offline; the retained notice stays for the owner
    owner = ResultWatcher(broker, rig.device_id, deployment.prefix)
    assert owner.wait(owner.topics.status)["state"] == "offline"
    assert owner.wait(owner.topics.notice)["jti"] == claims.jti


def test_token_sent_while_offline_runs_on_reconnect_also_across_a_broker_restart(
    mqtt_rig: DeviceRig, cloud_side: EvidenceEndpoint, broker: Broker, deployment: TestDeployment
) -> None:
    rig = mqtt_rig
    now = rig.clock.now()
    rig.record(now - timedelta(minutes=30), 5)
    minter = Minter(rig, cloud_side.base)
    service = rig.service()
    service.start()  # the first connection creates the persistent session
    assert service.link.wait_connected(10)
    service.stop()

    watcher = ResultWatcher(broker, rig.device_id, deployment.prefix)
    first = minter.claims(now - timedelta(hours=1), now - timedelta(minutes=1))
    cloud_side.issue(first)
    watcher.publish_token(minter.sign(first))  # the device is offline
    broker.restart()  # the queued QoS 1 message must survive this
    watcher = ResultWatcher(broker, rig.device_id, deployment.prefix)
    second = minter.claims(now - timedelta(hours=1), now - timedelta(minutes=2))
    cloud_side.issue(second)
    watcher.publish_token(minter.sign(second))  # offline again, after the restart

    service = rig.service()
    service.start()
    try:
        assert watcher.result(first.jti, "uploaded")["status"] == "uploaded"
        assert watcher.result(second.jti, "uploaded")["status"] == "uploaded"
        assert cloud_side.manifest_posts == {first.jti: 1, second.jti: 1}
    finally:
        service.stop()


def test_token_waits_for_a_synchronized_clock(
    mqtt_rig: DeviceRig, cloud_side: EvidenceEndpoint, broker: Broker, deployment: TestDeployment
) -> None:
    rig = mqtt_rig
    now = rig.clock.now()
    rig.record(now - timedelta(minutes=30), 5)
    minter = Minter(rig, cloud_side.base)
    fresh = minter.claims(now - timedelta(hours=1), now - timedelta(minutes=1), life_s=3600)
    short = minter.claims(now - timedelta(hours=1), now - timedelta(minutes=2), life_s=120)
    cloud_side.issue(fresh)
    cloud_side.issue(short)
    watcher = ResultWatcher(broker, rig.device_id, deployment.prefix)
    rig.clock.set_synchronized(False)  # a Pi that just booted without NTP yet
    service = rig.service()
    service.start()
    try:
        # the device's session (and its subscription) exists before the cloud publishes
        watcher.wait(watcher.topics.status, lambda b: b["state"] == "online")
        watcher.publish_token(minter.sign(fresh))
        watcher.publish_token(minter.sign(short))
        deferred = watcher.result(fresh.jti, "deferred")
        assert deferred["reason"] == "clock_unsynchronized"
        watcher.result(short.jti, "deferred")
        assert cloud_side.files == {}
        # NTP synchronizes; ten minutes have passed: the short token expired meanwhile
        rig.clock.set(now + timedelta(minutes=10), synchronized=True)
        assert watcher.result(fresh.jti, "uploaded")["status"] == "uploaded"
        assert watcher.result(short.jti, "rejected")["reason"] == "expired"
        assert list(cloud_side.manifest_posts) == [fresh.jti]
        assert service.jobs.deferred() == []
    finally:
        service.stop()


def test_replay_after_an_agent_restart_is_rejected(
    mqtt_rig: DeviceRig, cloud_side: EvidenceEndpoint, broker: Broker, deployment: TestDeployment
) -> None:
    """Attack: a token re-signed under an accepted jti, published once the agent has
    restarted (the replay state must be on disk, not in memory), is `replayed`; the same
    bytes again (the cloud's re-publish, ADR 0011) get the same `uploaded` result again,
    and neither uploads anything."""
    rig = mqtt_rig
    now = rig.clock.now()
    rig.record(now - timedelta(minutes=30), 5)
    minter = Minter(rig, cloud_side.base)
    claims = minter.claims(now - timedelta(hours=1), now - timedelta(minutes=1))
    cloud_side.issue(claims)
    token = minter.sign(claims)
    watcher = ResultWatcher(broker, rig.device_id, deployment.prefix)
    service = rig.service()
    service.start()
    try:
        watcher.wait(watcher.topics.status, lambda b: b["state"] == "online")
        watcher.publish_token(token)
        watcher.result(claims.jti, "uploaded")
        # Stop only once the broker acknowledged the result: a result still in the outbox
        # is published again by the restarted agent (and the same bytes then find it
        # queued, `result_already_queued`), which is not the re-send this test is about.
        deadline = time.monotonic() + 20
        while any(i.topic == service.topics.result for i in service.jobs.due(FAR_FUTURE)):
            assert time.monotonic() < deadline, "the result was never acknowledged"
            time.sleep(0.01)
    finally:
        service.stop()
    files = {k: bytes(v.data) for k, v in cloud_side.files.items()}
    first = watcher.result(claims.jti, "uploaded")
    service = rig.service()  # the agent restarts
    service.start()
    try:
        forged = minter.sign(dataclasses.replace(claims, exp=claims.exp - 1))
        watcher.publish_token(forged)
        # Reported under the forged bytes' own id: the accepted token was not rejected.
        own_id = unverified_id(hashlib.sha256(forged).hexdigest())
        assert watcher.result(own_id, "rejected")["reason"] == "replayed"
        assert all(r["jti"] != claims.jti or r["status"] == "uploaded"
                   for r in watcher.results())
        watcher.publish_token(token)
        while True:  # the next result message (the inbox's get is the hang guard)
            message = watcher.inbox.get(timeout=20)
            if message.topic == watcher.topics.result:
                break
        assert json.loads(message.payload) == first
        assert cloud_side.manifest_posts == {claims.jti: 1}
        assert {k: bytes(v.data) for k, v in cloud_side.files.items()} == files
    finally:
        service.stop()


def test_link_reconnects_by_itself_after_a_broker_restart(
    mqtt_rig: DeviceRig, cloud_side: EvidenceEndpoint, broker: Broker, deployment: TestDeployment
) -> None:
    rig = mqtt_rig
    now = rig.clock.now()
    rig.record(now - timedelta(minutes=30), 5)
    minter = Minter(rig, cloud_side.base)
    service = rig.service()
    service.start()
    try:
        assert service.link.wait_connected(10)
        broker.restart()  # the running agent loses its connection
        watcher = ResultWatcher(broker, rig.device_id, deployment.prefix)
        claims = minter.claims(now - timedelta(hours=1), now - timedelta(minutes=1))
        cloud_side.issue(claims)
        watcher.publish_token(minter.sign(claims))  # queued if the device is not back yet
        assert watcher.result(claims.jti, "uploaded", timeout=60)["status"] == "uploaded"
        assert service.link.connected()
        assert service.alive()
    finally:
        service.stop()
