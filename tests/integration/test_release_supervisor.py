"""A release side that cannot start never stops the agent; the release side publishes the
vault's own escrow outbox.

The real agent runs on the simulated camera against a real mosquitto with a broken file
in its release setup. It keeps recording and sealing clips; its status (status.json, the
control socket, the retained MQTT status) says the release side is unavailable and why;
the log says so once. Repairing the file brings the release side up without a restart.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyrage
import pytest

from device.agent import Agent
from device.button.control import send_command
from device.clock import ManualClock
from device.config import AgentConfig
from device.release.supervisor import ReleaseSupervisor, SetupBackoff
from device.release.vaultview import StoreVault
from device.status_file import read_status
from device.vault import ClipState, open_store
from protocol.messages import EscrowAck
from protocol.topics import DeviceTopics
from tests.fixtures.broker import Broker, Inbox, publish, subscribe
from tests.fixtures.deployment import TestDeployment
from tests.fixtures.release import ResultWatcher, make_rig, rig_config
from tests.fixtures.waiting import wait_until

pytestmark = [pytest.mark.broker, pytest.mark.slow]

CAMERA = {
    "width": 320,
    "height": 240,
    "fps": 15,
    "lores_width": 160,
    "lores_height": 120,
    "source": "sim",
    "scene": "visitor",
    "realtime": False,
}
RECORDER = {"pre_roll_s": 2.0, "post_roll_s": 3.0, "bitrate": 200_000}
SUPERVISOR_LOG = "device.release.supervisor"


def _config(deployment: TestDeployment, broker: Broker, state: Path) -> AgentConfig:
    bundle = deployment.enroll_device(deployment.new_device_id("sup"))
    base = rig_config(bundle, state, broker_port=broker.port)
    camera = base.camera.model_copy(update=CAMERA)
    recorder = base.recorder.model_copy(update=RECORDER)
    return base.model_copy(update={"camera": camera, "recorder": recorder})


def _release(status: dict[str, Any]) -> dict[str, Any]:
    report: dict[str, Any] = status.get("services", {}).get("release", {})
    return report


@contextmanager
def _running(config: AgentConfig) -> Iterator[Agent]:
    """The real agent (simulated camera, faster than real time) in a thread."""
    agent = Agent.from_config(
        config, clock=ManualClock(datetime.now(UTC).replace(microsecond=0)), simulated=True
    )
    errors: list[BaseException] = []

    def run() -> None:
        try:
            agent.run(duration_s=3600)
        except BaseException as exc:  # surfaced by the test below
            errors.append(exc)

    thread = threading.Thread(target=run, name="agent-under-test", daemon=True)
    thread.start()
    try:
        yield agent
        assert thread.is_alive(), f"the agent stopped: {errors!r}"
    finally:
        agent.request_stop()
        thread.join(timeout=60)
    assert not thread.is_alive(), "the agent did not stop"
    assert not errors, errors


def test_corrupt_trust_root_keeps_recording_and_repair_brings_release_up(
    deployment: TestDeployment,
    broker: Broker,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    state = tmp_path / "state"
    config = _config(deployment, broker, state)
    root_path = config.release.trust_root
    assert root_path is not None
    good_root = root_path.read_bytes()
    # A trust root damaged on the SD card: cut in the middle of its JSON.
    root_path.write_bytes(good_root[: len(good_root) // 2])
    device_id = config.agent.device_id
    cloud = ResultWatcher(broker, device_id, config.mqtt.prefix)
    caplog.set_level(logging.INFO, logger=SUPERVISOR_LOG)

    with _running(config) as agent:
        # Recording goes on: clips are sealed while the release side is down.
        wait_until("a sealed clip", lambda: agent.status()["clips_sealed"] >= 1)
        report = _release(agent.status())
        assert report["state"] == "unavailable", report
        assert str(root_path) in report["reason"], report
        assert "refused" in report["reason"], report
        assert report["attempts"] >= 1
        assert 0 <= report["retry_in_s"] <= 300

        # status.json and the control socket (`doorbell-agent status`) say the same.
        wait_until("status.json to name the problem", lambda: _release(read_status(state)).get(
            "state") == "unavailable")
        assert str(root_path) in _release(read_status(state))["reason"]
        live = json.loads(send_command(state / "agent.sock", "status"))
        assert _release(live)["state"] == "unavailable"
        assert str(root_path) in _release(live)["reason"]

        # The TLS files are fine, so the link is up and the broker sees why (the MQTT
        # status flattens the health: release.state -> release_state).
        mqtt_status = cloud.wait(
            cloud.topics.status, lambda b: b.get("release_state") == "unavailable"
        )
        assert mqtt_status["state"] == "online"
        assert str(root_path) in mqtt_status["release_reason"]

        # Let the backoff retry at least once more: the log still holds one error.
        wait_until("a second setup attempt",
                   lambda: _release(agent.status()).get("attempts", 0) >= 2)
        errors = [
            r for r in caplog.records if r.name == SUPERVISOR_LOG and r.levelno >= logging.ERROR
        ]
        assert len(errors) == 1, [r.getMessage() for r in errors]
        assert str(root_path) in errors[0].getMessage()

        # Repair the file: the release side comes up without a restart.
        root_path.write_bytes(good_root)
        wait_until("the release side to run",
                   lambda: _release(agent.status())["state"] == "running")
        wait_until("the link to report connected", lambda: _release(agent.status())["connected"])
        online = cloud.wait(
            cloud.topics.status,
            lambda b: b["state"] == "online" and b.get("release_state") == "running",
        )
        # published by the running release service, with its own health
        assert online["release_clock_synchronized"] is True
        assert online["release_jobs_running"] == 0
        assert "up after" in caplog.text
        sealed_while_down = agent.status()["clips_sealed"]
        assert sealed_while_down >= 1

    # After the stop: the retained status is offline, and the clips opened by the owner.
    cloud.wait(cloud.topics.status, lambda b: b["state"] == "offline")
    store = open_store(config)
    try:
        clips = store.list_clips()
        assert clips
        assert all(c.state is ClipState.SEALED for c in clips), clips
        owner = pyrage.x25519.Identity.from_str(deployment.owner.identity)
        plain = pyrage.decrypt(store.sealed_path(clips[0].id).read_bytes(), [owner])
        assert plain[4:8] == b"ftyp"
    finally:
        store.close()


def test_escrow_blobs_leave_the_vaults_own_outbox_on_escrow_ack(
    deployment: TestDeployment, broker: Broker, tmp_path: Path
) -> None:
    """The release service publishes the store's own outbox (`SealedStore.escrow_outbox`)
    and drops a blob only when the cloud acknowledges it on `DeviceTopics.escrow_ack`."""
    rig = make_rig(deployment, tmp_path, broker_port=broker.port)
    cloud = broker.client("cloud")
    inbox = Inbox(cloud)
    topics = DeviceTopics(rig.device_id, rig.config.mqtt.prefix)
    subscribe(cloud, topics.escrow)
    service = rig.service()
    try:
        rig.record(rig.clock.now(), 2.0)
        pending = rig.store.escrow_outbox.pending()
        assert len(pending) == 1
        epoch = pending[0].epoch_id
        service.start()
        blob = inbox.get()
        assert blob.topic == topics.escrow
        assert json.loads(blob.payload)["epoch"] == epoch
        assert rig.store.escrow_outbox.pending() != []  # kept until acknowledged
        publish(cloud, topics.escrow_ack, EscrowAck(epoch).to_bytes(), qos=1)
        wait_until("the acknowledged blob to leave the outbox",
                   lambda: rig.store.escrow_outbox.pending() == [], timeout=20)
    finally:
        service.stop()
        rig.close()


@pytest.mark.parametrize(
    ("what", "damage", "expect"),
    [
        ("client_key", lambda p: p.unlink(), "cannot read [mqtt] client_key"),
        ("identity_key", lambda p: p.write_bytes(b"not a key\n"), "identity_key"),
        ("transport_identity", lambda p: p.write_text("AGE-SECRET-KEY-1XYZ\n"), "transport"),
        # A private key that group or others may read has leaked: refused, as ssh does.
        ("client_key", lambda p: p.chmod(0o644), "client_key refused: "),
        ("identity_key", lambda p: p.chmod(0o640), "identity_key refused: "),
        ("transport_identity", lambda p: p.chmod(0o604), "transport_identity refused: "),
    ],
)
def test_each_broken_setup_file_is_named_and_repair_is_picked_up(
    deployment: TestDeployment,
    tmp_path: Path,
    what: str,
    damage: Callable[[Path], object],
    expect: str,
) -> None:
    """No broker needed: the link connects in the background; what matters is that the
    setup names the file, stays unavailable, and runs once the file is back."""
    rig = make_rig(deployment, tmp_path)
    files = {
        "client_key": rig.config.mqtt.client_key,
        "identity_key": rig.config.keys.identity_key,
        "transport_identity": rig.config.keys.transport_identity,
    }
    path = files[what]
    assert path is not None
    good = path.read_bytes()
    damage(path)
    supervisor = ReleaseSupervisor(
        rig.config,
        StoreVault(rig.store),
        rig.clock,
        escrow_outbox=rig.store.escrow_outbox,
        backoff=SetupBackoff(initial_s=30.0, max_s=60.0, watch_s=0.05),
    )
    try:
        supervisor.start()
        wait_until("the failed attempt",
                   lambda: supervisor.service_report()["state"] == "unavailable")
        report = supervisor.service_report()
        assert expect in report["reason"], report
        assert str(path) in report["reason"], report
        if "refused: " in expect:  # the mode, and the fix, are named
            assert f"mode {path.stat().st_mode & 0o777:04o}" in report["reason"], report
            assert f"chmod 0600 {path}" in report["reason"], report
        assert supervisor.service is None
        path.write_bytes(good)
        path.chmod(0o600)
        # The next attempt is 30 s away; the changed file brings it forward.
        wait_until("the release side to run",
                   lambda: supervisor.service_report()["state"] == "running", timeout=10)
        service = supervisor.service
        assert service is not None
        assert service.alive()
    finally:
        supervisor.stop()
        rig.close()
    assert supervisor.service_report()["state"] == "stopped"
