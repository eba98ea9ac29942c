"""`doorbell-owner` against a real mosquitto configured as the deployment's broker.

The owner holds the owner bundle enrolment wrote; the device publishes its notices
(QoS 1, retained) and status with its own certificate, as the agent does. Proved here:
a persistent session gets the owner every notice published while offline, where the
retained topic alone gives only the last; hostile payloads are reported and never
stored; the ledger holds each notice once however often it is delivered; status; and
every failure names its cause and exits 1.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from cloud_stub.provision.owner import issue_owner_credential
from protocol.bundle import OwnerBundleLayout
from protocol.messages import DeviceState, StatusMessage
from tests.fixtures.broker import Broker, Inbox, publish, running_broker, subscribe
from tests.fixtures.deployment import ClientCredentials, TestDeployment
from tests.fixtures.owner import OwnerMachine, notice, owner_machine

pytestmark = pytest.mark.broker
SCRIPT = Path(sys.executable).parent / "doorbell-owner"
HANG_GUARD_S = 60.0


@pytest.fixture
def home(broker: Broker, deployment: TestDeployment, tmp_path: Path) -> OwnerMachine:
    return owner_machine(broker, deployment, tmp_path)


def _ledger_jtis(home: OwnerMachine) -> list[str]:
    lines = home.ledger.read_text(encoding="utf-8").splitlines()
    return [json.loads(line)["notice"]["jti"] for line in lines]


def _json_notices(out: str) -> dict[str, bool]:
    """jti -> new, from `notices --json` output."""
    return {item["jti"]: item["new"] for item in map(json.loads, out.splitlines())}


def test_notices_published_while_the_owner_is_offline_all_arrive(home: OwnerMachine) -> None:
    """The owner connects once, goes offline; the device publishes two notices; the next
    run gets both (the broker queued them in the owner's session), and a run after that
    stores neither again although the retained copy is delivered again.

    Control: a clean-session client with the same owner certificate, subscribing after
    the two publishes, gets only the retained last one: a later live notice reaches it
    next, so the first cannot be on its way."""
    first = home.run("notices")
    assert first.code == 0, first.err
    assert "first connection" in first.err
    assert "no release notices" in first.out
    device = home.device()
    for jti in ("rel-1", "rel-2"):
        publish(device, home.topics.notice, notice(jti), retain=True)

    inbox = Inbox()
    owner = OwnerBundleLayout(home.bundle)
    plain = home.broker.client(f"owner.{home.device_id}", inbox=inbox, credentials=(
        ClientCredentials(owner.ca_cert, owner.mqtt_cert, owner.mqtt_key)))
    subscribe(plain, home.topics.notice)
    assert json.loads(inbox.get().payload)["jti"] == "rel-2"
    publish(device, home.topics.notice, notice("rel-3"), retain=True)
    assert json.loads(inbox.get().payload)["jti"] == "rel-3"
    assert inbox.drain() == []
    plain.disconnect()

    second = home.run("notices", "--json")
    assert second.code == 0, second.err
    assert _json_notices(second.out) == {"rel-1": True, "rel-2": True, "rel-3": True}
    assert second.err == ""  # the session was there: no warning
    third = home.run("notices")
    assert third.code == 0, third.err
    assert "NEW" not in third.out
    assert third.out.count("warrant: released to an agency under a court warrant") == 3
    assert _ledger_jtis(home) == ["rel-1", "rel-2", "rel-3"]


def test_readable_notice_names_basis_case_window_clips_and_times(home: OwnerMachine) -> None:
    assert home.run("notices").code == 0
    publish(home.device(), home.topics.notice,
            notice("rel-9", docket="INC-77", basis="emergency", clips=("clip-a", "clip-b")),
            retain=True)
    result = home.run("notices")
    assert result.code == 0, result.err
    assert result.out.splitlines() == [
        "NEW emergency: released to an agency under an emergency certification",
        "    incident INC-77, agency demo-district-court (request req-rel-9)",
        "    footage 2026-03-02T07:30:00Z to 2026-03-02T08:30:00Z",
        "    clips (2): clip-a, clip-b",
        result.out.splitlines()[4],
        f"    token rel-9, warrant or certification sha256 {'ab' * 32}",
    ]
    assert result.out.splitlines()[4].startswith(
        "    released 2026-03-02T09:30:00Z, received here ")


HOSTILE = {
    "not JSON": b"\xff\xfe not json",
    "an unknown member": notice("h-1")[:-1] + b',"extra":1}',
    "a duplicate member": notice("h-2")[:-1] + b',"jti":"h-x"}',
    "a basis that does not exist": notice("h-3").replace(b'"warrant"', b'"voluntary"'),
    "a window that ends before it starts": notice("h-4").replace(
        b'"end":"2026-03-02T08:30:00Z"', b'"end":"2026-03-01T08:30:00Z"'),
    "an escape sequence": notice("h-5").replace(b"2026-CR-0042", b"\\u001b[2J"),
    "an oversized payload": notice("h-6")[:-1] + b',"pad":"' + b"x" * (256 * 1024) + b'"}',
    "a version 2 notice": notice("h-7").replace(b'"v":1', b'"v":2'),
    "a C1 terminal control (CSI)": notice("h-8").replace(b"2026-CR-0042", b"A\\u009b2JB"),
    "a bidirectional override": notice("h-9").replace(b"2026-CR-0042", b"A\\u202eB"),
}


def test_hostile_payloads_are_reported_and_not_stored(home: OwnerMachine) -> None:
    """Attack: a compromised device (the only writer of the notice topic) sends payloads
    that are not notices, to crash the owner's application, fill its ledger, or paint
    its terminal. Each is reported in one line naming the problem and never stored;
    the valid notice after them is (the positive control)."""
    assert home.run("notices").code == 0
    device = home.device()
    for payload in HOSTILE.values():
        publish(device, home.topics.notice, payload)
    publish(device, home.topics.notice, notice("good-1"), retain=True)

    result = home.run("notices", "--json")
    assert result.code == 0, result.err
    assert _json_notices(result.out) == {"good-1": True}
    assert _ledger_jtis(home) == ["good-1"]
    refused = [line for line in result.err.splitlines() if "refused a payload" in line]
    assert len(refused) == len(HOSTILE), result.err
    assert all(home.topics.notice in line and "not stored" in line for line in refused)
    assert "cap is" in refused[6]  # oversized, named as such
    assert "basis must be one of" in refused[3]
    assert "\x1b" not in result.err
    assert "U+009B" in refused[8]
    assert "U+202E" in refused[9]
    assert "\x9b" not in result.err
    assert "\u202e" not in result.err


def test_a_different_notice_under_a_stored_jti_is_reported_and_the_first_kept(
    home: OwnerMachine,
) -> None:
    """Attack: the device sends a second notice for a token already recorded, to rewrite
    what the owner was told."""
    assert home.run("notices").code == 0
    device = home.device()
    publish(device, home.topics.notice, notice("same", docket="FIRST"))
    publish(device, home.topics.notice, notice("same", docket="SECOND"), retain=True)
    result = home.run("notices")
    assert result.code == 0
    assert "a different notice arrived for token same" in result.err
    assert "docket FIRST" in result.out
    assert "SECOND" not in home.ledger.read_text(encoding="utf-8")


def test_status_reads_the_retained_status(home: OwnerMachine) -> None:
    missing = home.run("status")
    assert missing.code == 1
    assert f"no status on {home.topics.status}" in missing.err
    status = StatusMessage(state=DeviceState.online,
                           health={"release_state": "running", "storage_free_mb": 812})
    publish(home.device(), home.topics.status, status.to_bytes(), retain=True)

    text = home.run("status")
    assert text.code == 0, text.err
    assert text.out.splitlines() == [f"device {home.device_id}: online",
                                     "  release_state    running",
                                     "  storage_free_mb  812"]
    as_json = home.run("status", "--json")
    assert json.loads(as_json.out) == {"device": home.device_id, "state": "online",
                                       "health": {"release_state": "running",
                                                  "storage_free_mb": 812}}
    publish(home.device(), home.topics.status, b'{"v":1,"state":"sleeping"}', retain=True)
    bad = home.run("status")
    assert bad.code == 1
    assert "state must be 'online' or 'offline'" in bad.err


@pytest.mark.parametrize("name", ["device-id", "mqtt.pem", "mqtt.key", "ca.pem", "owner.toml"])
def test_a_missing_bundle_file_is_named(home: OwnerMachine, name: str) -> None:
    (home.bundle / name).unlink()
    for command in ("notices", "status"):
        result = home.run(command)
        assert result.code == 1
        assert f"{name} is missing" in result.err
    assert not home.ledger.exists()


def test_a_broken_bundle_is_named(home: OwnerMachine, deployment: TestDeployment) -> None:
    config = OwnerBundleLayout(home.bundle).config
    original = config.read_text(encoding="utf-8")
    config.write_text(original + "\nverbose = true\n", encoding="utf-8")
    assert "owner.toml: unknown key topics.verbose" in home.run("status").err  # [topics]
    config.write_text(original.replace("/notice", "/release"), encoding="utf-8")
    result = home.run("status")
    assert result.code == 1
    assert f"topics.notice '{home.topics.release}' is not device" in result.err
    config.write_text(original, encoding="utf-8")
    # the device's certificate in place of the owner's: not this device's owner
    device_bundle = deployment.layout.device_bundle(home.device_id)
    shutil.copy(device_bundle.mqtt_cert, home.bundle / "mqtt.pem")
    result = home.run("status")
    assert result.code == 1
    assert f"issued to '{home.device_id}', not to owner.{home.device_id}" in result.err


def test_the_enrolled_bundle_loads_as_written(deployment: TestDeployment) -> None:
    """Control for the test bundles' rewritten port: enrolment's own owner.toml loads."""
    from owner_app.bundle import load_bundle

    device_id = deployment.new_device_id("as-written")
    deployment.enroll_device(device_id)
    bundle = load_bundle(deployment.layout.owner_bundle(device_id).root)
    assert (bundle.host, bundle.port, bundle.device_id) == ("localhost", 8883, device_id)
    assert bundle.session_id().startswith(f"owner.{device_id}.")


def test_broker_down_names_host_and_port(home: OwnerMachine) -> None:
    home.broker.stop()
    for command in ("notices", "status"):
        result = home.run(command)
        assert result.code == 1
        assert f"broker {home.broker.host}:{home.broker.port} is unreachable" in result.err


def _self_signed_ca(path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "impostor CA")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def test_a_broker_the_bundles_ca_does_not_vouch_for_is_refused(home: OwnerMachine) -> None:
    """Attack: someone else's broker at the address (the bundle's CA is not its issuer).
    Control: with the genuine CA the same command connects."""
    genuine = (home.bundle / "ca.pem").read_bytes()
    _self_signed_ca(home.bundle / "ca.pem")
    result = home.run("status")
    assert result.code == 1
    assert f"TLS to the broker at {home.broker.host}:{home.broker.port} failed" in result.err
    assert "not vouched for by the bundle's CA" in result.err
    (home.bundle / "ca.pem").write_bytes(genuine)
    assert "TLS" not in home.run("status").err


def test_a_replaced_owner_certificate_is_refused_with_the_way_out(
    fresh_deployment: TestDeployment, tmp_path: Path
) -> None:
    """The operator replaced the owner credential (`devices owner-cert --replace`); the
    old bundle is refused at the TLS handshake once the broker restarted, and the error
    says so. Control: the same bundle connects before the replacement."""
    with running_broker(fresh_deployment, tmp_path / "broker") as broker:
        home = owner_machine(broker, fresh_deployment, tmp_path)
        before = home.run("notices")
        assert before.code == 0, before.err
        issue_owner_credential(fresh_deployment.layout, home.device_id, replace=True,
                               now=dt.datetime.now(dt.UTC))
        broker.restart()
        for command in ("notices", "status"):
            result = home.run(command)
            assert result.code == 1
            assert "refused the owner certificate" in result.err, result.err
            assert "may have been revoked or replaced" in result.err
            assert "devices owner-cert <device> --replace" in result.err


def test_usage_errors_exit_2(home: OwnerMachine) -> None:
    for argv in ([str(SCRIPT)], [str(SCRIPT), "--bundle", str(home.bundle)],
                 [str(SCRIPT), "--bundle", str(home.bundle), "notices", "--nope"]):
        result = subprocess.run(argv, capture_output=True, text=True, timeout=HANG_GUARD_S,
                                check=False)
        assert result.returncode == 2, argv


@pytest.fixture
def follower(home: OwnerMachine) -> Iterator[subprocess.Popen[str]]:
    process = subprocess.Popen(
        [str(SCRIPT), "--bundle", str(home.bundle), "notices", "--follow", "--json",
         "--state", str(home.state)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=HANG_GUARD_S)


def test_the_console_script_follows_until_sigterm(
    home: OwnerMachine, follower: subprocess.Popen[str]
) -> None:
    """The installed `doorbell-owner`, as a real process: `notices --follow --json` prints
    each notice as it arrives and ends with 0 on SIGTERM; then the one-shot run finds
    both in the ledger and prints them as not new."""
    assert follower.stderr is not None
    assert "first connection" in follower.stderr.readline()  # connected and subscribed
    assert follower.stdout is not None
    device = home.device()
    publish(device, home.topics.notice, notice("live-1"), retain=True)
    assert json.loads(follower.stdout.readline())["jti"] == "live-1"
    publish(device, home.topics.notice, notice("live-2"), retain=True)
    line = json.loads(follower.stdout.readline())
    assert (line["jti"], line["new"], line["clips"]) == ("live-2", True, ["c-1", "c-2"])
    follower.send_signal(signal.SIGTERM)
    assert follower.wait(timeout=HANG_GUARD_S) == 0

    result = subprocess.run(
        [str(SCRIPT), "--bundle", str(home.bundle), "notices", "--json",
         "--state", str(home.state)], capture_output=True, text=True, timeout=HANG_GUARD_S,
        check=False)
    assert result.returncode == 0, result.stderr
    assert _json_notices(result.stdout) == {"live-1": False, "live-2": False}


def test_a_second_reader_of_the_same_ledger_is_refused(
    home: OwnerMachine, follower: subprocess.Popen[str]
) -> None:
    """Two readers would take the MQTT session from each other; the second is stopped
    before it connects. Control: it runs once the first has ended."""
    assert follower.stderr is not None
    assert "first connection" in follower.stderr.readline()
    result = home.run("notices")
    assert result.code == 1
    assert "another doorbell-owner is reading notices" in result.err
    follower.send_signal(signal.SIGINT)
    assert follower.wait(timeout=HANG_GUARD_S) == 0
    assert home.run("notices").code == 0
