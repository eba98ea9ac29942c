"""End to end: a token the broker acknowledged and then lost still reaches the device,
because the cloud publishes it again until a result arrives (ADR 0011).

A deployment of the test's own sets `[redelivery]` in its deployment.toml; the real
cloud stub (HTTP and MQTT), a real mosquitto with the deployment's config, and the
device's real release service with a sealed store. The device escrows its epoch over
MQTT (its persistent session now exists) and goes offline; a warrant is approved and
the broker acknowledges the token into the device's queue. Then the broker loses that
queue: it is stopped, its persistence file deleted, and started again (a crash between
saves, or a restore from backup). The device comes back:

- with re-publishing (1 s, capped at 2 s) it receives the token and the release
  completes: evidence uploaded once, `uploaded` recorded by the cloud;
- without it (a first delay of an hour, longer than the test) the token never arrives,
  while a second token issued after the device is back does, which shows the device was
  connected and listening all along.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from sqlalchemy import select

from cloud_stub.mqtt import CloudMqtt, MqttOptions
from cloud_stub.store.models import AuditRow, CustodyRecord, Device, Token
from device.release.service import ReleaseService
from protocol.timefmt import format_time
from tests.fixtures.broker import Broker, running_broker
from tests.fixtures.cloud import CloudServer, open_cloud
from tests.fixtures.deployment import make_deployment
from tests.fixtures.release import DeviceRig, make_rig
from tests.fixtures.waiting import wait_until

pytestmark = [pytest.mark.broker, pytest.mark.slow]

REASON = "Warrant verified with the issuing court's clerk."


@dataclass
class Scene:
    cloud: CloudServer
    broker: Broker
    link: CloudMqtt
    rig: DeviceRig
    clip_id: str

    def token(self, jti: str) -> Token:
        with self.cloud.service.store.read() as session:
            row = session.get(Token, jti)
            assert row is not None
            return row

    def status(self, jti: str) -> str:
        return self.token(jti).status

    def audit_actions(self, jti: str) -> list[str]:
        with self.cloud.service.store.read() as session:
            return [str(a) for a in session.execute(
                select(AuditRow.action).where(AuditRow.subject == f"token:{jti}")
                .order_by(AuditRow.seq)).scalars()]

    def approve(self) -> str:
        """A warrant for the last hour, approved; the jti of its token."""
        agency = self.cloud.principal("agency", org="metro-pd")
        reviewer = self.cloud.principal("reviewer", org="legal")
        world = self.cloud.world(agency, self.rig.device_id)
        now = datetime.now(UTC).replace(microsecond=0)
        window = {"start": format_time(now - timedelta(hours=1)),
                  "end": format_time(now - timedelta(minutes=1))}
        submitted = self.cloud.submit(
            agency, world.warrant(device_ids=[self.rig.device_id], window=window))
        assert submitted.status_code in (200, 201), submitted.text
        approved = self.cloud.http.post(
            f"/v1/requests/{submitted.json()['id']}/approve", json={"reason": REASON},
            headers=reviewer.headers).json()
        assert approved["status"] == "released", approved
        return str(approved["tokens"][0]["jti"])

    def device_service(self) -> ReleaseService:
        self.rig.clock.set(datetime.now(UTC).replace(microsecond=0))
        return self.rig.service()

    def lose_the_brokers_queue(self) -> None:
        """Stop mosquitto (it saves its database), delete the database, start it."""
        self.broker.stop()
        wait_until("the cloud to see the broker gone", lambda: not self.link.connected)
        saved = list(self.broker.data_dir.iterdir())
        assert [p.name for p in saved] == ["mosquitto.db"], saved
        for path in saved:
            path.unlink()
        self.broker.start()
        wait_until("the cloud to reconnect", lambda: self.link.connected)

    def device_said_online(self) -> bool:
        with self.cloud.service.store.read() as session:
            device = session.get(Device, self.rig.device_id)
            return device is not None and device.last_status == "online"


@contextlib.contextmanager
def scene(tmp_path: Path, *, initial_s: int, max_s: int) -> Iterator[Scene]:
    deployment = make_deployment(tmp_path / "fresh")
    settings = deployment.layout.settings  # `init` wrote the defaults there
    raw = tomllib.loads(settings.read_text(encoding="utf-8"))
    assert raw["redelivery"] == {"initial_s": 60, "max_s": 3600}
    raw["redelivery"] = {"initial_s": initial_s, "max_s": max_s}
    settings.write_text(tomli_w.dumps(raw), encoding="utf-8")
    with contextlib.ExitStack() as stack:
        cloud = stack.enter_context(
            contextlib.contextmanager(open_cloud)(deployment, tmp_path))
        assert cloud.service.releaser.redelivery.initial_s == initial_s  # from the file
        device = cloud.enroll("redeliver")  # before the broker renders its ACL
        broker = stack.enter_context(running_broker(deployment, tmp_path / "broker"))
        link = CloudMqtt(cloud.service, MqttOptions.from_service(
            cloud.service, host=broker.host, port=broker.port))
        assert link.start(), broker.log()
        stack.callback(link.stop)
        rig = make_rig(deployment, tmp_path, broker_port=broker.port, bundle=device.bundle,
                       release={"cloud_url": cloud.url})
        stack.callback(rig.close)
        now = rig.clock.now()
        clip = rig.record(now - timedelta(minutes=30), 5)
        # the device escrows its epoch over MQTT: its persistent session now exists
        service = rig.service()
        service.start()
        try:
            wait_until("the cloud's escrow-ack", lambda: rig.store.escrow_outbox.pending() == [])
        finally:
            service.stop()
        yield Scene(cloud, broker, link, rig, clip.id)


def _device_audit(rig: DeviceRig) -> list[dict[str, Any]]:
    path = rig.config.agent.state_dir / "release" / "audit.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_token_the_broker_lost_is_delivered_by_the_cloud_and_released(
    tmp_path: Path
) -> None:
    with scene(tmp_path, initial_s=1, max_s=2) as s:
        jti = s.approve()
        wait_until("the broker's acknowledgement", lambda: s.status(jti) == "published")
        s.lose_the_brokers_queue()
        service = s.device_service()
        service.start()
        try:
            wait_until("the cloud to record the device's result",
                       lambda: s.status(jti) == "uploaded", timeout=90)
        finally:
            service.stop()
        assert "token.republished" in s.audit_actions(jti)
        with s.cloud.service.store.read() as session:
            custody = session.execute(
                select(CustodyRecord.clip_id).where(CustodyRecord.jti == jti)).scalars().all()
        assert list(custody) == [s.clip_id]
        events = _device_audit(s.rig)
        decisions = [e["data"]["status"] for e in events if e["event"] == "decision"]
        assert decisions.count("accepted") == 1
        assert set(decisions) <= {"accepted", "duplicate"}  # later copies did nothing
        assert [e["data"]["clip"] for e in events if e["event"] == "resealed"] == [s.clip_id]
        assert [e["data"]["clip"] for e in events if e["event"] == "uploaded"] == [s.clip_id]


def test_without_redelivery_the_lost_token_never_arrives(tmp_path: Path) -> None:
    """The control: the same loss with a first re-publish an hour away."""
    with scene(tmp_path, initial_s=3600, max_s=3600) as s:
        lost = s.approve()
        wait_until("the broker's acknowledgement", lambda: s.status(lost) == "published")
        s.lose_the_brokers_queue()
        service = s.device_service()
        service.start()
        try:
            # the broker has the device's subscription once it has its later status
            wait_until("the device's online status", s.device_said_online)
            s.rig.clock.set(datetime.now(UTC).replace(microsecond=0))
            later = s.approve()
            wait_until("the later token's result", lambda: s.status(later) == "uploaded",
                       timeout=90)
        finally:
            service.stop()
        assert s.status(lost) == "published"
        assert "token.republished" not in s.audit_actions(lost)
        lost_sha = hashlib.sha256(s.token(lost).jws.encode()).hexdigest()
        later_sha = hashlib.sha256(s.token(later).jws.encode()).hexdigest()
        received = [e["data"]["sha256"] for e in _device_audit(s.rig)
                    if e["event"] == "token_received"]
        assert later_sha in received
        assert lost_sha not in received
