"""The service publishes each trust root the operator signs to every device, retained,
and a running agent applies it by the rotation rule (docs/adr/0013-trust-root-v2.md).

A fresh deployment with its own broker: the operator rotates it to v2 (reviewer alice),
the cloud stub's MQTT link publishes the chain on connect and a running agent applies
version 2; then, while both run, the operator removes alice and signs version 3, the
link publishes the longer chain on its next pass and the agent applies it."""

from __future__ import annotations

import tomllib
from datetime import UTC, datetime
from pathlib import Path

import pytest
import tomli_w
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cloud_stub.mqtt import CloudMqtt, MqttOptions
from cloud_stub.provision.trust_roots import (
    add_reviewer,
    load_draft,
    remove_reviewer,
    save_draft,
    sign_draft,
)
from protocol.keys import public_key_hex
from protocol.trust_root_v2 import TrustRootV2
from tests.fixtures.broker import running_broker
from tests.fixtures.cloud import open_cloud
from tests.fixtures.deployment import TestDeployment
from tests.fixtures.release import make_rig
from tests.fixtures.trust_v2 import audit_events, wait_root_version

pytestmark = pytest.mark.broker


def test_signed_roots_reach_a_running_agent_through_the_service(
    fresh_deployment: TestDeployment, tmp_path: Path
) -> None:
    d = fresh_deployment
    layout = d.layout
    settings = tomllib.loads(layout.settings.read_text())
    settings["redelivery"] = {"initial_s": 1, "max_s": 10}  # the link's pass: every 0.5 s
    layout.settings.write_text(tomli_w.dumps(settings))
    now = datetime.now(UTC)
    with running_broker(d, tmp_path / "broker") as broker:
        rig = make_rig(d, tmp_path, broker_port=broker.port)  # its bundle holds the v1 root
        alice = public_key_hex(Ed25519PrivateKey.generate())
        save_draft(layout, add_reviewer(load_draft(layout, now), "alice", "acme-review", alice))
        away = d.move_keys_off_host()
        assert sign_draft(layout, away / "offline-root", now).version == 2
        agent = rig.service()
        assert agent.handler.root.version == 1
        agent.start()
        try:
            for cloud in open_cloud(d, tmp_path):
                link = CloudMqtt(cloud.service, MqttOptions.from_service(
                    cloud.service, host=broker.host, port=broker.port))
                link.start()
                try:
                    wait_root_version(agent, 2)
                    assert isinstance(agent.handler.root, TrustRootV2)
                    assert [r.name for r in agent.handler.root.reviewers.values()] == ["alice"]

                    save_draft(layout, remove_reviewer(load_draft(layout, now), "alice"))
                    assert sign_draft(layout, away / "offline-root", now).version == 3
                    wait_root_version(agent, 3)
                    root = agent.handler.root
                    assert isinstance(root, TrustRootV2)
                    assert root.reviewers == {}
                finally:
                    link.stop()
                break
        finally:
            agent.stop()
            rig.close()
    applied = [e["data"]["version"] for e in audit_events(agent, "trust_root")
               if e["data"]["status"] == "applied"]
    assert applied == [2, 3]
    assert sorted(p.name for p in (tmp_path / f"state-{rig.device_id}" / "release" /
                                   "trust-roots").iterdir()) == ["00000002.json",
                                                                 "00000003.json"]
