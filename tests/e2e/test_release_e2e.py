"""End to end: the agent on the simulated camera, a real mosquitto (TLS, ACL), the real
cloud stub over real HTTP and MQTT.

The agent records a visitor, then a passer-by; its epoch keys are escrowed to the cloud
over MQTT. An agency asks for a window that covers only the visitor; a reviewer approves;
the cloud publishes the threshold-signed token; the running agent verifies it, re-seals
exactly the overlapping clip to the agency, uploads it, and reports. The agency
downloads the evidence and opens it with `age -d`; ffprobe reads H.264; the manifest
verifies against the device's enrolled identity; the owner notice is on the broker.
"""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cloud_stub.mqtt import CloudMqtt, MqttOptions
from device.agent import Agent
from device.clock import ManualClock
from device.config import AgentConfig
from device.release.audit import verify_log
from device.release.layout import ReleaseLayout
from device.vault import open_store
from protocol.keys import public_key_from_hex
from protocol.manifest import verify_manifest
from protocol.timefmt import format_time
from tests.fixtures.broker import Broker
from tests.fixtures.cloud import CloudServer
from tests.fixtures.release import ResultWatcher, rig_config
from tests.fixtures.waiting import wait_until

pytestmark = [pytest.mark.broker, pytest.mark.slow]

CAMERA = {"width": 320, "height": 240, "fps": 15, "lores_width": 160, "lores_height": 120}
RECORDER = {"pre_roll_s": 2.0, "post_roll_s": 3.0, "bitrate": 200_000}


@pytest.fixture
def cloud_mqtt(cloud: CloudServer, broker: Broker) -> Iterator[CloudMqtt]:
    link = CloudMqtt(
        cloud.service, MqttOptions.from_service(cloud.service, host=broker.host, port=broker.port)
    )
    assert link.start(), "the cloud stub did not connect to the broker"
    try:
        yield link
    finally:
        link.stop()


def _config(base: AgentConfig, *, scene: str, realtime: bool) -> AgentConfig:
    camera = base.camera.model_copy(
        update={**CAMERA, "source": "sim", "scene": scene, "realtime": realtime}
    )
    recorder = base.recorder.model_copy(update=RECORDER)
    return base.model_copy(update={"camera": camera, "recorder": recorder})


def _record(config: AgentConfig, scene: str, duration_s: float, start: datetime) -> None:
    agent = Agent.from_config(
        _config(config, scene=scene, realtime=False),
        clock=ManualClock(start),
        simulated=True,
    )
    agent.run(duration_s=duration_s)


def test_warrant_release_end_to_end(
    cloud: CloudServer, cloud_mqtt: CloudMqtt, broker: Broker, tmp_path: Path
) -> None:
    device = cloud.enroll("e2e")
    device_id = device.device_id
    config = rig_config(
        device.bundle,
        tmp_path / "state",
        broker_port=broker.port,
        release={"cloud_url": cloud.url},
    )
    owner = ResultWatcher(broker, device_id, cloud.deployment.prefix)

    # 1. the doorbell records a visitor, then (a second run) a passer-by
    now = datetime.now(UTC).replace(microsecond=0)
    _record(config, "visitor", 24, now - timedelta(minutes=10))
    _record(config, "passerby", 14, now - timedelta(minutes=5))
    store = open_store(config)
    clips = store.list_clips()
    store.close()
    assert len(clips) == 2, clips
    visitor, passerby = clips
    assert visitor.end is not None
    assert visitor.end < passerby.start

    # 2. the agent runs on (empty scene, real time) and escrows its epoch keys
    agent = Agent.from_config(
        _config(config, scene="empty", realtime=True),
        clock=ManualClock(datetime.now(UTC).replace(microsecond=0)),
        simulated=True,
    )
    runner = threading.Thread(target=agent.run, kwargs={"duration_s": 600}, daemon=True)
    runner.start()
    try:
        outbox = agent.store.escrow_outbox
        wait_until("the cloud's escrow-ack", lambda: outbox.pending() == [])

        # 3. a warrant for a window holding the visitor and not the passer-by
        window_end = visitor.end + (passerby.start - visitor.end) / 2
        window = {
            "start": format_time(visitor.start - timedelta(minutes=1)),
            "end": format_time(window_end.replace(microsecond=0) + timedelta(seconds=1)),
        }
        wait_until(
            "the window to be in the past",
            lambda: datetime.now(UTC) > window_end + timedelta(seconds=2),
        )
        agency = cloud.principal("agency")
        reviewer = cloud.principal("reviewer", org="court-liaison")
        world = cloud.world(agency, device_id)
        world.now = datetime.now(UTC).replace(microsecond=0)
        submitted = cloud.submit(agency, world.warrant(device_ids=[device_id], window=window))
        assert submitted.status_code in (200, 201), submitted.text
        request_id = submitted.json()["id"]
        approved = cloud.http.post(
            f"/v1/requests/{request_id}/approve",
            json={"reason": "Warrant verified with the issuing court."},
            headers=reviewer.headers,
        ).json()
        assert approved["status"] == "released", approved
        jti = approved["tokens"][0]["jti"]

        # 4. the device executes it and reports
        result = owner.result(jti, timeout=60)
        assert result["status"] == "uploaded", result
        assert result["clips"] == [visitor.id]
        notice = owner.wait(owner.topics.notice, lambda b: b["jti"] == jti, timeout=30)
        assert notice["clips"] == [visitor.id]
        assert notice["basis"] == "warrant"
    finally:
        agent.request_stop()
        runner.join(timeout=60)

    # 5. the agency downloads and opens the evidence
    listing = cloud.http.get(f"/v1/requests/{request_id}/evidence", headers=agency.headers)
    assert listing.status_code == 200, listing.text
    body = listing.json()
    assert len(body["files"]) == 1, body
    identity = public_key_from_hex(
        (cloud.deployment.layout.device_record(device_id) / "identity.pub").read_text().strip()
    )
    manifest = verify_manifest(body["manifests"][jti].encode(), identity)
    assert [c.clip_id for c in manifest.clips] == [visitor.id]
    assert manifest.device == device_id
    download = cloud.http.get(body["files"][0]["download"], headers=agency.headers)
    assert download.status_code == 200
    sealed = tmp_path / "evidence.age"
    sealed.write_bytes(download.content)
    assert manifest.clips[0].sha256 == body["files"][0]["sha256"]
    key = tmp_path / "agency.key"
    key.write_text(f"{agency.identity}\n")
    key.chmod(0o600)
    mp4 = tmp_path / "evidence.mp4"
    subprocess.run(["age", "-d", "-i", str(key), "-o", str(mp4), str(sealed)], check=True)
    probe = json.loads(
        subprocess.run(
            ["ffprobe", "-v", "error", "-show_streams", "-of", "json", str(mp4)],
            check=True,
            capture_output=True,
        ).stdout
    )
    video = [s for s in probe["streams"] if s["codec_type"] == "video"]
    assert video[0]["codec_name"] == "h264"
    assert (video[0]["width"], video[0]["height"]) == (320, 240)

    # 6. once: one upload per clip in the device's audit log, whose chain holds
    log = ReleaseLayout(config.agent.state_dir).audit_log
    verify_log(log)
    uploads = [
        json.loads(line)["data"]["clip"]
        for line in log.read_text().splitlines()
        if json.loads(line)["event"] == "uploaded"
    ]
    assert uploads == [visitor.id]
    results = [r for r in owner.results() if r["jti"] == jti]
    assert [r["status"] for r in results] == ["uploaded"]
